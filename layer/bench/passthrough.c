/* passthrough FILE...: the cost of hooked calls the layer passes to libc, in ns per call (the best of
 * a few batches: the least disturbed one). bench/layer.ts runs it with and without the layer.
 * One line per operation: "NAME NS". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCHES 7

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* read(1 byte) from a pipe the batch filled first (the filling is not counted). */
static double pipe_read(void)
{
    enum { N = 32768 };
    static char fill[N];
    int p[2];
    if (pipe(p) < 0) return -1;
    double best = 1e30;
    for (int b = 0; b < BATCHES; b++) {
        if (write(p[1], fill, N) != N) return -1;
        char c;
        double t0 = now_ns();
        for (int i = 0; i < N; i++)
            if (read(p[0], &c, 1) != 1) return -1;
        double per = (now_ns() - t0) / N;
        if (per < best) best = per;
    }
    close(p[0]);
    close(p[1]);
    return best;
}

/* socket + connect to a loopback listener of this process + accept + close both: the connect
 * stays local (the intproxy answers "bypass" for 127.0.0.1 with ignore_localhost). */
static double loopback_connect(void)
{
    enum { N = 500 };
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 64) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) < 0)
        return -1;
    struct linger lg = { .l_onoff = 1, .l_linger = 0 }; /* RST: no TIME_WAIT piling up */
    double best = 1e30;
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (int i = 0; i < N; i++) {
            int c = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(c, (struct sockaddr *)&a, sizeof a) < 0) return -1;
            int s = accept(l, NULL, NULL);
            setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(s);
            close(c);
        }
        double per = (now_ns() - t0) / N;
        if (per < best) best = per;
    }
    close(l);
    return best;
}

static double open_close(const char *path)
{
    enum { N = 2000 };
    double best = 1e30;
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (int i = 0; i < N; i++) {
            int fd = open(path, O_RDONLY);
            if (fd < 0) return -1;
            close(fd);
        }
        double per = (now_ns() - t0) / N;
        if (per < best) best = per;
    }
    return best;
}

static double resolve_localhost(void)
{
    enum { N = 300 };
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
    double best = 1e30;
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_ns();
        for (int i = 0; i < N; i++) {
            struct addrinfo *res = NULL;
            if (getaddrinfo("localhost", "80", &hints, &res) != 0) return -1;
            freeaddrinfo(res);
        }
        double per = (now_ns() - t0) / N;
        if (per < best) best = per;
    }
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    printf("pipe_read %.0f\n", pipe_read());
    printf("loopback_connect %.0f\n", loopback_connect());
    for (int i = 1; i < argc; i++) printf("open_close:%s %.0f\n", argv[i], open_close(argv[i]));
    printf("getaddrinfo_localhost %.0f\n", resolve_localhost());
    return 0;
}
