/*
 * Test-only foreign process for the ports scenario (issue 22): a userspace
 * UDP port forwarder, like docker-proxy (moby's cmd/docker-proxy, the UDP
 * proxy a published container port runs on the host): it holds LISTEN_PORT
 * on every IPv4 address and relays each datagram to 127.0.0.1:TARGET_PORT
 * and the answer back. A game server behind it answers A2S_INFO on
 * LISTEN_PORT naming its own game port, TARGET_PORT.
 *   udp-proxy LISTEN_PORT TARGET_PORT
 * One datagram at a time (A2S is request/answer); an answer that does not
 * come within 2 s is given up. Like srcds, no SO_REUSEADDR: a server that
 * wants LISTEN_PORT finds it taken.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: udp-proxy LISTEN_PORT TARGET_PORT\n");
        return 2;
    }
    int listen_port = atoi(argv[1]), target_port = atoi(argv[2]);
    int in = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons((uint16_t)listen_port);
    if (in < 0 || bind(in, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "udp-proxy: bind %d: %s\n", listen_port, strerror(errno));
        return 1;
    }
    struct sockaddr_in target;
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    target.sin_port = htons((uint16_t)target_port);
    fprintf(stderr, "udp-proxy: %d -> 127.0.0.1:%d\n", listen_port, target_port);
    for (;;) {
        uint8_t buf[2048];
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(in, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        int out = socket(AF_INET, SOCK_DGRAM, 0);
        if (out < 0 || connect(out, (struct sockaddr *)&target, sizeof target) != 0 ||
            send(out, buf, (size_t)n, 0) != n) {
            if (out >= 0)
                close(out);
            continue;
        }
        struct pollfd p = {.fd = out, .events = POLLIN};
        if (poll(&p, 1, 2000) == 1) {
            ssize_t m = recv(out, buf, sizeof buf, 0);
            if (m > 0)
                sendto(in, buf, (size_t)m, 0, (struct sockaddr *)&peer, plen);
        }
        close(out);
    }
}
