/*
 * a2s-query HOST PORT [--timeout S] [--map]
 *
 * Sends a Source A2S_INFO query and prints the server name (or the map
 * with --map). Handles the 2020 challenge variant: an 'A' reply carries a
 * 4-byte challenge that is appended to a repeated query. Exits 0 on an
 * answer, 1 when none came within the timeout, 2 on usage errors.
 * HOST is an IPv4 literal or "localhost": the binary is static, and static
 * glibc cannot use NSS for name resolution.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int usage(void)
{
    fprintf(stderr, "usage: a2s-query HOST PORT [--timeout SECONDS] [--map]\n");
    return 2;
}

/* Copies the NUL-terminated string at *off into out; fails if unterminated. */
static int get_str(const uint8_t *buf, size_t len, size_t *off, char *out, size_t outlen)
{
    const uint8_t *end = memchr(buf + *off, 0, len - *off);
    if (!end)
        return -1;
    size_t n = (size_t)(end - (buf + *off));
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, buf + *off, n);
    out[n] = '\0';
    *off = (size_t)(end - buf) + 1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *host = NULL, *portstr = NULL;
    double timeout = 5.0;
    int want_map = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
            timeout = atof(argv[++i]);
        else if (!strcmp(argv[i], "--map"))
            want_map = 1;
        else if (!host)
            host = argv[i];
        else if (!portstr)
            portstr = argv[i];
        else
            return usage();
    }
    if (!host || !portstr || timeout <= 0)
        return usage();
    int port = atoi(portstr);
    if (port <= 0 || port > 65535)
        return usage();

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (!strcmp(host, "localhost"))
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "a2s-query: %s is not an IPv4 address\n", host);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "a2s-query: socket: %s\n", strerror(errno));
        return 1;
    }

    uint8_t req[64];
    static const uint8_t query[] = "\xff\xff\xff\xffTSource Engine Query";
    size_t reqlen = sizeof query;
    memcpy(req, query, reqlen);

    double deadline = now() + timeout;
    double next_send = 0;
    for (;;) {
        double t = now();
        if (t >= deadline)
            break;
        if (t >= next_send) {
            /* Resend periodically: the server may not be bound yet, and an
             * ICMP port-unreachable only surfaces as ECONNREFUSED on recv. */
            send(fd, req, reqlen, 0);
            next_send = t + 0.25;
        }
        double wait = (next_send < deadline ? next_send : deadline) - t;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(wait * 1000) + 1);
        if (r <= 0)
            continue;
        uint8_t buf[1400];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0)
            continue; /* ECONNREFUSED while nothing listens yet */
        if (n < 5 || memcmp(buf, "\xff\xff\xff\xff", 4) != 0)
            continue;
        if (buf[4] == 'A' && n >= 9) {
            memcpy(req, query, sizeof query);
            memcpy(req + sizeof query, buf + 5, 4);
            reqlen = sizeof query + 4;
            next_send = 0;
            continue;
        }
        if (buf[4] != 'I')
            continue;
        size_t off = 6; /* header byte + protocol byte */
        char name[256], map[256];
        if ((size_t)n < off || get_str(buf, (size_t)n, &off, name, sizeof name) != 0 ||
            get_str(buf, (size_t)n, &off, map, sizeof map) != 0) {
            fprintf(stderr, "a2s-query: malformed A2S_INFO answer\n");
            return 1;
        }
        printf("%s\n", want_map ? map : name);
        return 0;
    }
    fprintf(stderr, "a2s-query: no A2S_INFO answer from %s:%d within %gs\n", host, port, timeout);
    return 1;
}
