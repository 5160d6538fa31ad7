/*
 * mirrord-capture: the end of namespace-level capture (container.capture = namespace).
 *
 * iptables in the sidecar's network namespace REDIRECTs every outgoing TCP connection of the user's
 * container to this program's loopback port. For each one it reads the destination the program
 * asked for (SO_ORIGINAL_DST) and connect()s to it itself; it runs with the mirrord layer
 * preloaded, so that connect goes through the intproxy and leaves from the target's network. This
 * reaches programs the layer cannot (statically linked ones, raw system calls). Bytes are copied
 * both ways, half-closes passed on. Its own connections are exempt from the redirect by its uid.
 *
 * Usage: mirrord-capture        prints its port on stdout ("PORT\n"), then serves until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h> clash with glibc's headers;
   both options have the same number. */
#define ORIGINAL_DST 80

struct conn {
    int client;
    int family;
};

static void copy_loop(int a, int b)
{
    char buf[65536];
    struct pollfd p[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
    int open_dirs = 2;
    while (open_dirs > 0) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            int from = i == 0 ? a : b, to = i == 0 ? b : a;
            ssize_t n = read(from, buf, sizeof buf);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n <= 0) {
                /* EOF (or reset) one way: pass the half-close on and keep the other way open. */
                shutdown(to, SHUT_WR);
                p[i].fd = -1;
                open_dirs--;
                if (n < 0) return;
                continue;
            }
            for (ssize_t off = 0; off < n;) {
                ssize_t w = write(to, buf + off, (size_t)(n - off));
                if (w < 0) {
                    if (errno == EINTR) continue;
                    return;
                }
                off += w;
            }
        }
    }
}

static void *serve(void *arg)
{
    struct conn c = *(struct conn *)arg;
    free(arg);
    struct sockaddr_storage dst;
    socklen_t len = sizeof dst;
    int level = c.family == AF_INET ? SOL_IP : SOL_IPV6;
    int out = -1;
    if (getsockopt(c.client, level, ORIGINAL_DST, &dst, &len) != 0) {
        fprintf(stderr, "mirrord-capture: no original destination: %s\n", strerror(errno));
    } else {
        out = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (out >= 0 && connect(out, (struct sockaddr *)&dst, len) != 0) {
            close(out);
            out = -1;
        }
    }
    if (out < 0) {
        /* A reset, so the program sees a refused connection rather than an empty answer. */
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(c.client, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    } else {
        copy_loop(c.client, out);
        close(out);
    }
    close(c.client);
    return NULL;
}

static int listen_on(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
        sa->sin_family = AF_INET;
        sa->sin_port = htons((uint16_t)port);
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *sa;
    } else {
        struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&ss;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        sa->sin6_family = AF_INET6;
        sa->sin6_port = htons((uint16_t)port);
        sa->sin6_addr = in6addr_loopback;
        len = sizeof *sa;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 512) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *accept_loop(void *arg)
{
    int lfd = (int)(long)arg;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(lfd, (struct sockaddr *)&ss, &len);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
            perror("mirrord-capture: accept");
            exit(1);
        }
        struct conn *c = malloc(sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->client = fd;
        c->family = ss.ss_family;
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        if (pthread_create(&t, &attr, serve, c) != 0) {
            close(fd);
            free(c);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int v4 = listen_on(AF_INET, 0);
    if (v4 < 0) {
        perror("mirrord-capture: listen");
        return 1;
    }
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    getsockname(v4, (struct sockaddr *)&sa, &len);
    int port = ntohs(sa.sin_port);
    /* IPv6 on the same port when the namespace has it; without it IPv4 alone is captured. */
    int v6 = listen_on(AF_INET6, port);
    printf("%d %s\n", port, v6 >= 0 ? "ipv6" : "ipv4-only");
    fflush(stdout);
    if (v6 >= 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, accept_loop, (void *)(long)v6) != 0) return 1;
    }
    accept_loop((void *)(long)v4);
    return 0;
}
