/* ld-probe.so: a library the VM boundary test (s13) names in LD_PRELOAD.
 * When the dynamic loader maps it into a process, it appends one line
 * "euid=N pid=N exe=PATH" to /var/tmp/left4me-probe/log; the test fails if any
 * line has euid=0. It does nothing else, so a process that loads it runs on. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void left4me_probe(void)
{
    char exe[256] = "?", line[400];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0)
        exe[n] = '\0';
    int len = snprintf(line, sizeof line, "euid=%u pid=%d exe=%s\n",
                       (unsigned)geteuid(), (int)getpid(), exe);
    int fd = open("/var/tmp/left4me-probe/log", O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return;
    if (len > 0 && write(fd, line, (size_t)len) < 0) {
        /* nothing to do: the probe must never disturb its host process */
    }
    close(fd);
}
