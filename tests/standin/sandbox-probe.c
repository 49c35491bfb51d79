/*
 * Test-only probe for what the game unit's sandbox enforces (VM scenario
 * s22). Built twice, 64-bit and i386, and run inside the unit:
 *   sandbox-probe af       creates an AF_ALG socket, a family the unit's
 *                          RestrictAddressFamilies= does not list, through
 *                          libc's socket() and, on i386, through the
 *                          multiplexed socketcall(2) as well
 *   sandbox-probe ptrace   a forked child asks to be traced (what breakpad
 *                          needs to write a crash dump)
 *   sandbox-probe dlopen LIB  loads LIB, e.g. one that asks for an executable
 *                          stack, which glibc 2.41 refuses unless
 *                          GLIBC_TUNABLES=glibc.rtld.execstack=2
 * Prints one "NAME: ok" or "NAME: <errno text> (errno N)" line per attempt.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_ALG
#define AF_ALG 38
#endif

static void report(const char *what, long rc)
{
    if (rc >= 0)
        printf("%s: ok\n", what);
    else
        printf("%s: %s (errno %d)\n", what, strerror(errno), errno);
}

int main(int argc, char **argv)
{
    const char *bits = sizeof(void *) == 4 ? "i386" : "native";
    if (argc == 2 && !strcmp(argv[1], "af")) {
        char what[64];
        snprintf(what, sizeof what, "%s socket(AF_ALG)", bits);
        report(what, socket(AF_ALG, SOCK_SEQPACKET, 0));
#ifdef SYS_socketcall
        long args[3] = {AF_ALG, SOCK_SEQPACKET, 0};
        snprintf(what, sizeof what, "%s socketcall(SOCKET, AF_ALG)", bits);
        report(what, syscall(SYS_socketcall, 1 /* SYS_SOCKET */, args));
#endif
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "ptrace")) {
        pid_t pid = fork();
        if (pid == 0) {
            char what[64];
            snprintf(what, sizeof what, "%s ptrace(TRACEME)", bits);
            report(what, ptrace(PTRACE_TRACEME, 0, NULL, NULL));
            fflush(stdout);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "dlopen")) {
        if (dlopen(argv[2], RTLD_NOW))
            printf("%s dlopen: ok\n", bits);
        else
            printf("%s dlopen: %s\n", bits, dlerror());
        return 0;
    }
    fprintf(stderr, "usage: sandbox-probe af|ptrace|dlopen LIB\n");
    return 2;
}
