/*
 * mirrord-fd-probe SOCKET_PATH (token in MIRRORD_FDPASS_TOKEN): the CLI's test connection to the
 * agent's socket helper before it enables the fast path (src/session/fd-pass.ts). Node cannot speak
 * SOCK_SEQPACKET or receive descriptors, hence this program. Prints "ok BOOT_ID" when the helper
 * took the token and handed over a working TCP socket; else one line saying what failed, exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(const char *what)
{
    printf("%s: %s\n", what, errno ? strerror(errno) : "unexpected answer");
    return 1;
}

static ssize_t recv_answer(int fd, char *buf, size_t n, int *passed)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = { .iov_base = buf, .iov_len = n - 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    struct pollfd p = { .fd = fd, .events = POLLIN };
    *passed = -1;
    if (poll(&p, 1, 3000) != 1) {
        errno = ETIMEDOUT;
        return -1;
    }
    ssize_t r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (r <= 0) {
        if (r == 0) errno = ECONNRESET;
        return -1;
    }
    buf[r] = 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(passed, CMSG_DATA(c), sizeof(int));
    return r;
}

int main(int argc, char **argv)
{
    const char *token = getenv("MIRRORD_FDPASS_TOKEN");
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (argc != 2 || !token || strlen(argv[1]) >= sizeof sun.sun_path) {
        fprintf(stderr, "usage: MIRRORD_FDPASS_TOKEN=... mirrord-fd-probe SOCKET_PATH\n");
        return 2;
    }
    strcpy(sun.sun_path, argv[1]);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("socket");
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) return fail("connect to the socket helper");
    char buf[600];
    int passed;
    snprintf(buf, sizeof buf, "HELLO %s", token);
    errno = 0;
    if (send(fd, buf, strlen(buf), MSG_NOSIGNAL) < 0) return fail("hello");
    if (recv_answer(fd, buf, sizeof buf, &passed) < 0 || strncmp(buf, "OK ", 3) != 0)
        return fail("the helper refused the token");
    char boot_id[64];
    snprintf(boot_id, sizeof boot_id, "%.63s", buf + 3);
    snprintf(buf, sizeof buf, "SOCKET %d %d %d", AF_INET, SOCK_STREAM, IPPROTO_TCP);
    errno = 0;
    if (send(fd, buf, strlen(buf), MSG_NOSIGNAL) < 0) return fail("socket request");
    if (recv_answer(fd, buf, sizeof buf, &passed) < 0 || strcmp(buf, "OK") != 0 || passed < 0)
        return fail("no socket from the helper");
    struct stat st;
    int type = 0;
    socklen_t len = sizeof type;
    if (fstat(passed, &st) < 0 || !S_ISSOCK(st.st_mode) || getsockopt(passed, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        type != SOCK_STREAM)
        return fail("the helper's descriptor is not a TCP socket");
    printf("ok %s\n", boot_id);
    return 0;
}
