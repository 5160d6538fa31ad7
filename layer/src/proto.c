/*
 * The per-process intproxy connection. One mutex serialises whole request/response exchanges;
 * the socket is non-blocking and every wait goes through poll() with one deadline, so EINTR is
 * retried without ever extending the timeout and a dead intproxy cannot hang the program.
 */
#define _GNU_SOURCE
#include "proto.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* High enough to stay out of the way of programs that expect small, dense descriptor numbers. */
#define HIGH_FD 400

LAYER_REAL(int, connect, (int, const struct sockaddr *, socklen_t))
LAYER_REAL(int, close, (int))

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int conn_fd = -1;       /* read without the lock by close()/dup2(): atomics */
static pid_t conn_pid;         /* process that opened conn_fd (vfork/clone without atfork) */
static ino_t conn_ino;         /* proves conn_fd is still our socket before each use */
static uint32_t next_id = 1;
static pid_t parent_pid;       /* set in a forked child: its HELLO names the parent */
static pid_t forking_pid;
static bool warned;            /* "intproxy unreachable" is an error once, debug afterwards */

static struct timespec deadline_after(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static int wait_for(int fd, short events, const struct timespec *deadline)
{
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (deadline->tv_sec - now.tv_sec) * 1000L + (deadline->tv_nsec - now.tv_nsec) / 1000000L;
        if (ms <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, (int)ms);
        if (r > 0) return 0;
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR) return -1;
    }
}

static int send_all(int fd, const uint8_t *buf, size_t len, const struct timespec *deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_for(fd, POLLOUT, deadline) < 0) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static int recv_all(int fd, uint8_t *buf, size_t len, const struct timespec *deadline)
{
    while (len > 0) {
        ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n == 0) {
            errno = ECONNRESET;
            return -1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_for(fd, POLLIN, deadline) < 0) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static void drop_connection(void)
{
    int fd = __atomic_exchange_n(&conn_fd, -1, __ATOMIC_ACQ_REL);
    if (fd >= 0 && real_close_fn()) real_close_fn()(fd);
}

/* One exchange on the open connection; the lock is held. */
static int exchange(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp)
{
    const struct layer_config *cfg = layer_config();
    struct timespec deadline = deadline_after(cfg->timeout_ms);
    req->id = next_id++;
    size_t len = lp_encode(req, frame, LP_MAX_FRAME);
    if (len == 0) {
        errno = EMSGSIZE;
        return -1;
    }
    if (send_all(conn_fd, frame, len, &deadline) < 0) return -1;
    if (recv_all(conn_fd, frame, 4, &deadline) < 0) return -1;
    size_t size = lp_frame_size(frame);
    if (size == 0 || recv_all(conn_fd, frame + 4, size - 4, &deadline) < 0 ||
        lp_decode(frame, size, resp) < 0 || resp->id != req->id ||
        resp->type != (req->type | LP_RESPONSE)) {
        if (errno == 0 || size == 0) errno = EPROTO;
        return -1;
    }
    return 0;
}

static int open_connection(uint8_t *frame)
{
    const struct layer_config *cfg = layer_config();
    if (!real_connect_fn() || !real_close_fn()) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    struct timespec deadline = deadline_after(cfg->timeout_ms);
    int r = real_connect_fn()(fd, (const struct sockaddr *)&cfg->intproxy, sizeof cfg->intproxy);
    if (r < 0 && (errno == EINPROGRESS || errno == EINTR)) {
        int err = 0;
        socklen_t elen = sizeof err;
        if (wait_for(fd, POLLOUT, &deadline) == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0) {
            r = err ? -1 : 0;
            errno = err;
        }
    }
    if (r < 0) {
        int saved = errno;
        real_close_fn()(fd);
        errno = saved;
        return -1;
    }
    int high = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD);
    if (high >= 0) {
        real_close_fn()(fd);
        fd = high;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct stat st;
    conn_ino = fstat(fd, &st) == 0 ? st.st_ino : 0;
    conn_pid = getpid();
    __atomic_store_n(&conn_fd, fd, __ATOMIC_RELEASE);

    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe);
    struct lp_msg hello = {
        .type = LP_HELLO, .version = LP_VERSION, .pid = (uint32_t)conn_pid,
        .ppid = (uint32_t)getppid(), .parent_pid = (uint32_t)parent_pid,
        .exe = { exe, (uint16_t)(n > 0 ? n : 0) },
    };
    struct lp_msg resp;
    if (exchange(&hello, frame, &resp) < 0) {
        int saved = errno;
        drop_connection();
        errno = saved;
        return -1;
    }
    if (resp.status != 0) {
        layer_log(LOG_ERROR, "intproxy refused this process (status %d)", (int)resp.status);
        drop_connection();
        errno = ECONNREFUSED;
        return -1;
    }
    layer_log(LOG_DEBUG, "connected to the intproxy on fd %d (parent_pid %d)", fd, (int)parent_pid);
    return 0;
}

/* The program may have closed our number behind our back (close_range, a raw syscall) and
 * reused it: never write protocol bytes into someone else's file. */
static bool still_ours(void)
{
    struct stat st;
    return conn_pid == getpid() && fstat(conn_fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == conn_ino;
}

int proto_call(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp)
{
    const struct layer_config *cfg = layer_config();
    int saved_errno = errno, cancel_state;
    /* A thread cancelled while waiting for the intproxy would leave the lock held forever. */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    layer_enter();
    pthread_mutex_lock(&lock);
    if (conn_fd >= 0 && !still_ours()) {
        /* Forget it without closing: that number may now be the program's. */
        layer_log(LOG_DEBUG, "lost the intproxy descriptor %d; reconnecting", conn_fd);
        __atomic_store_n(&conn_fd, -1, __ATOMIC_RELEASE);
    }
    int r = 0;
    if (conn_fd < 0) {
        errno = 0;
        next_id = 1;
        r = open_connection(frame);
    }
    if (r == 0) {
        r = exchange(req, frame, resp);
        if (r < 0) {
            int saved = errno;
            drop_connection();
            errno = saved;
        }
    }
    if (r < 0) {
        int level = warned ? LOG_DEBUG : LOG_ERROR;
        warned = true;
        char ip[16];
        const uint8_t *a = (const uint8_t *)&cfg->intproxy.sin_addr;
        snprintf(ip, sizeof ip, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
        layer_log(level, "intproxy at %s:%u unavailable: %s", ip, (unsigned)ntohs(cfg->intproxy.sin_port),
                  strerror(errno));
    }
    pthread_mutex_unlock(&lock);
    layer_leave();
    pthread_setcancelstate(cancel_state, NULL);
    errno = saved_errno;
    return r;
}

bool proto_is_own_fd(int fd)
{
    return fd >= 0 && fd == __atomic_load_n(&conn_fd, __ATOMIC_ACQUIRE);
}

void proto_move_off(int fd)
{
    pthread_mutex_lock(&lock);
    if (fd == conn_fd) {
        /* The program's dup2 closes `fd` atomically; our socket lives on under a new number. */
        int moved = fcntl(fd, F_DUPFD_CLOEXEC, fd < HIGH_FD ? HIGH_FD : fd + 1);
        __atomic_store_n(&conn_fd, moved, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lock);
}

void proto_fork_prepare(void)
{
    pthread_mutex_lock(&lock);
    forking_pid = getpid();
}

void proto_fork_release(bool in_child)
{
    if (in_child) {
        /* Sharing the parent's socket would interleave two processes' frames: the child opens
         * its own connection on first use and says whose session it continues. */
        int fd = __atomic_exchange_n(&conn_fd, -1, __ATOMIC_ACQ_REL);
        if (fd >= 0 && real_close_fn()) real_close_fn()(fd);
        parent_pid = forking_pid;
        next_id = 1;
        warned = false;
    }
    pthread_mutex_unlock(&lock);
}
