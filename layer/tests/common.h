/* Helpers shared by the C test programs: they print what they saw, one fact per line, and the
 * TypeScript tests (test/layer/) assert on that output and on what the fake intproxy received. */
#ifndef MIRRORD_TEST_COMMON_H
#define MIRRORD_TEST_COMMON_H
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static inline const char *errname(int e)
{
    const char *n = strerrorname_np(e);
    return n ? n : "E?";
}

/* "10.0.0.1:80" or "[::ffff:10.0.0.1]:80" */
static inline const char *fmt_sa(const struct sockaddr *sa, char *buf, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(buf, n, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(buf, n, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(buf, n, "family-%d", sa->sa_family);
    }
    return buf;
}

static inline const char *peer_of(int fd, char *buf, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(buf, n, "error:%s", errname(errno));
        return buf;
    }
    return fmt_sa((struct sockaddr *)&ss, buf, n);
}

/* Reads the local test server's greeting line (it proves where the socket really went). */
static inline const char *read_line(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got + 1 < n) {
        ssize_t r = read(fd, buf + got, 1);
        if (r <= 0 || buf[got] == '\n') break;
        got++;
    }
    buf[got] = '\0';
    return buf;
}

/* Connects a TCP socket of `family` to ip:port (ip numeric); prints nothing. */
static inline int connect_to(int family, const char *ip, int port, int *err)
{
    int fd = socket(family, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, ip, &in->sin_addr);
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, ip, &in6->sin6_addr) != 1) {
            /* a dotted quad for an IPv6 socket: the IPv4-mapped form */
            char mapped[64];
            snprintf(mapped, sizeof mapped, "::ffff:%s", ip);
            inet_pton(AF_INET6, mapped, &in6->sin6_addr);
        }
        len = sizeof *in6;
    }
    *err = 0;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) *err = errno;
    return fd;
}
#endif
