/*
 * The layer's side of the socket helper (agent/sockhelper/sockhelper.c, docs/fast-path.md): one
 * SOCK_SEQPACKET connection per process, opened on the first socket it takes (a program that never
 * connects anything remote never opens it) and again after a fork, since a connection shared
 * with the parent would interleave both processes' answers.
 */
#define _GNU_SOURCE
#include "fdpass.h"
#include "layer.h"
#include "socket.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Above the intproxy connection's (intproxy_conn.c): out of the way of dense descriptor numbers. */
#define HIGH_FD 410
#define HELPER_TIMEOUT_MS 2000

LAYER_REAL(int, connect, (int, const struct sockaddr *, socklen_t))
LAYER_REAL(int, close, (int))
LAYER_REAL(int, dup3, (int, int, int))

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int helper_fd = -1;
static pid_t helper_pid;
static ino_t helper_ino;
/* The helper failed this process (no socket, wrong token, another kernel): stream from now on. */
static pid_t disabled_pid;

/* Read once: epoll_ctl asks on every ADD. */
static pthread_once_t configured_once = PTHREAD_ONCE_INIT;
static bool configured_value;
static void read_configured(void)
{
    const char *sock = layer_setting("MIRRORD_FDPASS_SOCK");
    const char *token = layer_setting("MIRRORD_FDPASS_TOKEN");
    configured_value = sock && *sock && token && *token;
}
static bool configured(void)
{
    pthread_once(&configured_once, read_configured);
    return configured_value;
}

bool fdpass_offer(int fd)
{
    if (!configured() || __atomic_load_n(&disabled_pid, __ATOMIC_ACQUIRE) == getpid()) return false;
    /* A socket bound to a specific address or port chose where it sends from: a socket of the
     * target cannot keep that promise, the stream can (the program's own socket connects). */
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        return in->sin_port == 0 && in->sin_addr.s_addr == htonl(INADDR_ANY);
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        return in6->sin6_port == 0 && IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
    }
    return false;
}

bool fdpass_can_take(void) { return configured() && __atomic_load_n(&disabled_pid, __ATOMIC_ACQUIRE) != getpid(); }

static int wait_for(int fd, short events)
{
    struct pollfd p = { .fd = fd, .events = events };
    for (;;) {
        int r = poll(&p, 1, HELPER_TIMEOUT_MS);
        if (r > 0) return 0;
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR) return -1;
    }
}

/* One packet, with at most one descriptor (`*passed`, -1 when none came). */
static ssize_t recv_packet(int fd, char *buf, size_t n, int *passed)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = { .iov_base = buf, .iov_len = n - 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    *passed = -1;
    if (wait_for(fd, POLLIN) < 0) return -1;
    ssize_t r;
    do r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    buf[r] = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(passed, CMSG_DATA(c), sizeof(int));
    }
    if (r == 0) errno = ECONNRESET;
    return r == 0 ? -1 : r;
}

static int send_packet(int fd, const char *text)
{
    if (wait_for(fd, POLLOUT) < 0) return -1;
    ssize_t r;
    do r = send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 0;
}

static void drop_connection(void)
{
    if (helper_fd >= 0) real_close_fn()(helper_fd);
    helper_fd = -1;
}

static bool same_kernel(const char *boot_id)
{
    char own[64] = "";
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, own, sizeof own - 1);
    real_close_fn()(fd);
    if (n <= 0) return false;
    own[n] = 0;
    own[strcspn(own, "\n")] = 0;
    return strcmp(own, boot_id) == 0;
}

static int open_connection(void)
{
    const char *path = layer_setting("MIRRORD_FDPASS_SOCK");
    const char *token = layer_setting("MIRRORD_FDPASS_TOKEN");
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (!path || !token || strlen(path) >= sizeof sun.sun_path || !real_connect_fn() || !real_close_fn()) return -1;
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    if (real_connect_fn()(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        layer_log(LOG_DEBUG, "socket helper %s: %s", path, strerror(errno));
        real_close_fn()(fd);
        return -1;
    }
    int high = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD);
    if (high >= 0) {
        real_close_fn()(fd);
        fd = high;
    }
    char hello[600], answer[128];
    int passed;
    snprintf(hello, sizeof hello, "HELLO %s", token);
    if (send_packet(fd, hello) < 0 || recv_packet(fd, answer, sizeof answer, &passed) < 0 ||
        strncmp(answer, "OK ", 3) != 0) {
        layer_log(LOG_ERROR, "the socket helper refused this process (%s): using the stream", strerror(errno));
        real_close_fn()(fd);
        return -1;
    }
    if (passed >= 0) real_close_fn()(passed);
    if (!same_kernel(answer + 3)) {
        layer_log(LOG_DEBUG, "the socket helper runs on another kernel (boot id %s): using the stream", answer + 3);
        real_close_fn()(fd);
        return -1;
    }
    struct stat st;
    helper_ino = fstat(fd, &st) == 0 ? st.st_ino : 0;
    helper_pid = getpid();
    helper_fd = fd;
    layer_log(LOG_DEBUG, "connected to the socket helper on fd %d", fd);
    return 0;
}

static bool still_ours(void)
{
    struct stat st;
    return helper_pid == getpid() && fstat(helper_fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == helper_ino;
}

/* One request answered with a descriptor ("OK" + SCM_RIGHTS), or -1. Caller holds the lock. */
static int request_fd(const char *req)
{
    if (helper_fd >= 0 && !still_ours()) {
        /* Inherited over fork (or our number was taken): forget it without closing, it may now be
         * the program's; the parent keeps its own. */
        helper_fd = -1;
    }
    if (helper_fd < 0 && open_connection() < 0) {
        __atomic_store_n(&disabled_pid, getpid(), __ATOMIC_RELEASE);
        return -1;
    }
    char answer[64];
    int passed = -1;
    if (send_packet(helper_fd, req) < 0 || recv_packet(helper_fd, answer, sizeof answer, &passed) < 0) {
        layer_log(LOG_DEBUG, "socket helper: %s; reconnecting next time", strerror(errno));
        drop_connection();
        return -1;
    }
    if (strcmp(answer, "OK") != 0 || passed < 0) {
        layer_log(LOG_DEBUG, "socket helper answered %s", answer);
        if (passed >= 0) real_close_fn()(passed);
        return -1;
    }
    return passed;
}

/* A fresh socket from the helper, or -1. Caller holds the lock. */
static int ask(int domain, int type, int protocol)
{
    char req[64];
    snprintf(req, sizeof req, "SOCKET %d %d %d", domain, type, protocol);
    return request_fd(req);
}

/* ---- the swap ---------------------------------------------------------------------------- */

struct opt {
    int level, name;
    bool stream_only;
    bool doubled; /* the kernel reports twice what was set (buffer sizes) */
};

/* What a program sets before connect() and expects to keep; never SO_BINDTODEVICE or SO_MARK
 * (they name the program's host, not the target). */
static const struct opt opts[] = {
    { SOL_SOCKET, SO_KEEPALIVE, false, false },
    { SOL_SOCKET, SO_SNDBUF, false, true },
    { SOL_SOCKET, SO_RCVBUF, false, true },
    { SOL_SOCKET, SO_REUSEADDR, false, false },
    { SOL_SOCKET, SO_BROADCAST, false, false },
    { SOL_SOCKET, SO_PRIORITY, false, false },
    { SOL_SOCKET, SO_OOBINLINE, false, false },
    { IPPROTO_TCP, TCP_NODELAY, true, false },
    { IPPROTO_TCP, TCP_KEEPIDLE, true, false },
    { IPPROTO_TCP, TCP_KEEPINTVL, true, false },
    { IPPROTO_TCP, TCP_KEEPCNT, true, false },
    { IPPROTO_TCP, TCP_USER_TIMEOUT, true, false },
    { IPPROTO_TCP, TCP_SYNCNT, true, false },
    { IPPROTO_TCP, TCP_QUICKACK, true, false },
    { IPPROTO_TCP, TCP_FASTOPEN_CONNECT, true, false },
};

static void copy_int_opt(int from, int to, const struct opt *o)
{
    int a = 0, b = 0;
    socklen_t la = sizeof a, lb = sizeof b;
    if (getsockopt(from, o->level, o->name, &a, &la) < 0 || getsockopt(to, o->level, o->name, &b, &lb) < 0 || a == b)
        return;
    int v = o->doubled ? a / 2 : a;
    if (setsockopt(to, o->level, o->name, &v, sizeof v) < 0)
        layer_log(LOG_DEBUG, "socket option %d/%d not copied: %s", o->level, o->name, strerror(errno));
}

/* buffers: also the buffer sizes (setting one turns the kernel's autotuning off: never for a
 * connection that already carries traffic). */
static void copy_options(int from, int to, int domain, int type, bool buffers)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        if (opts[i].stream_only && type != SOCK_STREAM) continue;
        if (opts[i].doubled && !buffers) continue;
        copy_int_opt(from, to, &opts[i]);
    }
    struct linger lg;
    socklen_t len = sizeof lg;
    if (getsockopt(from, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && lg.l_onoff)
        setsockopt(to, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    struct timeval tv;
    len = sizeof tv;
    if (getsockopt(from, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) == 0 && (tv.tv_sec || tv.tv_usec))
        setsockopt(to, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    len = sizeof tv;
    if (getsockopt(from, SOL_SOCKET, SO_SNDTIMEO, &tv, &len) == 0 && (tv.tv_sec || tv.tv_usec))
        setsockopt(to, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (domain == AF_INET) {
        copy_int_opt(from, to, &(struct opt){ IPPROTO_IP, IP_TOS, false, false });
        copy_int_opt(from, to, &(struct opt){ IPPROTO_IP, IP_TTL, false, false });
    } else {
        copy_int_opt(from, to, &(struct opt){ IPPROTO_IPV6, IPV6_V6ONLY, false, false });
        copy_int_opt(from, to, &(struct opt){ IPPROTO_IPV6, IPV6_TCLASS, false, false });
    }
}

int fdpass_take(int fd)
{
    int domain = 0, type = 0, protocol = 0;
    socklen_t len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) return -1;
    len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return -1;
    len = sizeof protocol;
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) < 0) return -1;
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0 || !real_dup3_fn()) return -1;

    int saved_errno = errno, cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    layer_enter();
    pthread_mutex_lock(&lock);
    int fresh = ask(domain, type, protocol);
    pthread_mutex_unlock(&lock);
    int r = -1;
    if (fresh >= 0) {
        copy_options(fd, fresh, domain, type, true);
        if (fcntl(fresh, F_SETFL, fl) < 0) layer_log(LOG_DEBUG, "file status flags not copied: %s", strerror(errno));
        /* dup3 alone would leave an epoll set watching the old socket (or nothing at all): take the
         * registrations out first and put them back on the new one. */
        struct fdpass_epoll_saved *saved = NULL;
        fdpass_epoll_detach(fd, &saved);
        r = real_dup3_fn()(fresh, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0);
        fdpass_epoll_attach(fd, saved);
        real_close_fn()(fresh);
    }
    layer_leave();
    pthread_setcancelstate(cancel_state, NULL);
    errno = saved_errno;
    return r < 0 ? -1 : 0;
}

int fdpass_take_stolen(int fd, const char *id)
{
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0 || !real_dup3_fn() || strlen(id) > 64) return -1;
    int saved_errno = errno, cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    layer_enter();
    char req[80];
    snprintf(req, sizeof req, "TAKE %s", id);
    pthread_mutex_lock(&lock);
    int stolen = request_fd(req);
    pthread_mutex_unlock(&lock);
    int r = -1;
    if (stolen >= 0) {
        int domain = 0;
        socklen_t len = sizeof domain;
        getsockopt(stolen, SOL_SOCKET, SO_DOMAIN, &domain, &len);
        /* What the accepted socket inherited from the listener (and nothing the agent set). */
        copy_options(fd, stolen, domain, SOCK_STREAM, false);
        /* The open file is the agent's too, which made it non-blocking: the program's flags. */
        if (fcntl(stolen, F_SETFL, fl) < 0) layer_log(LOG_DEBUG, "file status flags not copied: %s", strerror(errno));
        /* The placeholder was just accepted: no epoll set can know it yet. */
        r = real_dup3_fn()(stolen, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0);
        if (r < 0) layer_log(LOG_ERROR, "dup3 of a stolen connection onto fd %d: %s", fd, strerror(errno));
        real_close_fn()(stolen);
    }
    layer_leave();
    pthread_setcancelstate(cancel_state, NULL);
    errno = saved_errno;
    return r < 0 ? -1 : 0;
}
