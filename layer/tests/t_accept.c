/* t_accept MODE: a listener whose accepted connection may be a stolen one (test/layer/fd-pass.test.ts).
 *   accept   blocking accept()
 *   accept4  accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)
 *   epoll    non-blocking listener in an epoll set; accept4(SOCK_NONBLOCK) when it is readable,
 *            then the connection read when epoll says so
 * Binds 127.0.0.1 port 0, prints "listening PORT", accepts one connection and prints what the
 * program sees of it (the accept address, getpeername, flags, whether its local port is the
 * listener's, i.e. it is still the connection that was dialled in), reads one line and answers
 * "pong <line>". */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/epoll.h>

static void wait_readable(int ep, int fd)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd }, got;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    while (epoll_wait(ep, &got, 1, 10000) < 0 && errno == EINTR) {}
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    const char *mode = argv[1];
    bool ep_mode = !strcmp(mode, "epoll");
    int l = socket(AF_INET, SOCK_STREAM | (ep_mode ? SOCK_NONBLOCK : 0), 0);
    struct sockaddr_in in = { .sin_family = AF_INET };
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    if (bind(l, (struct sockaddr *)&in, sizeof in) < 0 || listen(l, 8) < 0) return 3;
    socklen_t len = sizeof in;
    getsockname(l, (struct sockaddr *)&in, &len);
    unsigned lport = ntohs(in.sin_port);
    printf("listening %u\n", lport);
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    int c;
    if (!strcmp(mode, "accept")) {
        c = accept(l, (struct sockaddr *)&sa, &salen);
    } else if (!strcmp(mode, "accept4")) {
        c = accept4(l, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } else if (ep_mode) {
        wait_readable(ep, l);
        c = accept4(l, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK);
    } else {
        return 2;
    }
    if (c < 0) {
        printf("accept=%s\n", errname(errno));
        return 0;
    }
    char a[128], p[128];
    struct sockaddr_storage pe, me;
    socklen_t plen = sizeof pe, mlen = sizeof me;
    getpeername(c, (struct sockaddr *)&pe, &plen);
    getsockname(c, (struct sockaddr *)&me, &mlen);
    unsigned mport = me.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&me)->sin_port)
                                             : ntohs(((struct sockaddr_in6 *)&me)->sin6_port);
    printf("addr=%s len=%u peer=%s\n", fmt_sa((struct sockaddr *)&sa, a, sizeof a), (unsigned)salen,
           fmt_sa((struct sockaddr *)&pe, p, sizeof p));
    printf("nonblock=%d cloexec=%d placeholder=%d\n", (fcntl(c, F_GETFL) & O_NONBLOCK) != 0,
           (fcntl(c, F_GETFD) & FD_CLOEXEC) != 0, mport == lport);
    fflush(stdout);
    char buf[256];
    size_t got = 0;
    while (got < sizeof buf - 1) {
        if (fcntl(c, F_GETFL) & O_NONBLOCK) {
            if (ep_mode) wait_readable(ep, c);
            else {
                struct pollfd pf = { .fd = c, .events = POLLIN };
                poll(&pf, 1, 10000);
            }
        }
        ssize_t n = read(c, buf + got, sizeof buf - 1 - got);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) break;
        got += (size_t)n;
        if (memchr(buf, '\n', got)) break;
    }
    buf[got] = 0;
    buf[strcspn(buf, "\n")] = 0;
    printf("read=%s\n", buf);
    char out[300];
    int n = snprintf(out, sizeof out, "pong %s\n", buf);
    if (write(c, out, (size_t)n) < 0) printf("write=%s\n", errname(errno));
    close(c);
    return 0;
}
