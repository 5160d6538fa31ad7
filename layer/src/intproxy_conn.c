/*
 * The per-process intproxy connection. One mutex serialises whole request/response exchanges;
 * the socket is non-blocking and every wait goes through poll() with one deadline, so a dead
 * intproxy cannot hang the program and a retried EINTR never extends the timeout.
 *
 * Interruptible calls (intproxy_call_intr: connect, reads of remote files) give up with EINTR when a
 * signal handler without SA_RESTART interrupts the wait for the answer, as the kernel would. The
 * request is then abandoned, not cancelled: its answer still arrives later, and the next exchange
 * skips it by id (ids only grow on a connection), so the link never desynchronises. Only calls
 * without lasting effect in the intproxy are interruptible (a read; a connect whose one-shot
 * listener the intproxy drops when nobody dials it).
 */
#define _GNU_SOURCE
#include "intproxy_conn.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
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
static int conn_fd = -1; /* read without the lock by close()/dup2(): atomics */
static pid_t conn_pid;   /* process that opened conn_fd (vfork/clone without atfork) */
static ino_t conn_ino;   /* proves conn_fd is still our socket before each use */
static uint32_t next_id = 1;
static pid_t parent_pid; /* set in a forked child: its HELLO names the parent */
static pid_t forking_pid;
static bool warned;        /* "intproxy unreachable" is an error once, debug afterwards */
static uint32_t abandoned; /* requests sent whose answers nobody waits for any more */

/*
 * poll() cannot say which signal interrupted it, so the layer asks whether the program handles
 * any signal without SA_RESTART: a program that wants interrupted calls (alarm() around a
 * connect) has such a handler; one whose handlers all restart expects the call to go on.
 */
static bool handler_wants_eintr(void)
{
    for (int sig = 1; sig < NSIG; sig++) {
        /* Fault signals (sanitizers' and runtimes' SIGSEGV handlers) never interrupt a wait. */
        if (sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL ||
            sig == SIGTRAP || sig == SIGSYS || sig == SIGABRT)
            continue;
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) < 0) continue;
        bool handled = (sa.sa_flags & SA_SIGINFO) ? sa.sa_sigaction != NULL
                                                  : (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
        if (handled && !(sa.sa_flags & SA_RESTART)) return true;
    }
    return false;
}

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

/* Waits for `events` until `deadline`; with `intr`, an interruption that the program wants to
 * see ends the wait with EINTR. */
static int wait_for_intr(int fd, short events, const struct timespec *deadline, bool intr)
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
        if (intr && handler_wants_eintr()) {
            errno = EINTR;
            return -1;
        }
    }
}

static int wait_for(int fd, short events, const struct timespec *deadline)
{
    return wait_for_intr(fd, events, deadline, false);
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

/* With `intr`, only the wait before the first byte may end in EINTR: a frame half read would
 * leave the rest in the stream. */
static int recv_all(int fd, uint8_t *buf, size_t len, const struct timespec *deadline, bool intr)
{
    bool started = false;
    while (len > 0) {
        ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            started = true;
        } else if (n == 0) {
            errno = ECONNRESET;
            return -1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_for_intr(fd, POLLIN, deadline, intr && !started) < 0) return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static void drop_connection(void)
{
    abandoned = 0;
    int fd = __atomic_exchange_n(&conn_fd, -1, __ATOMIC_ACQ_REL);
    if (fd >= 0 && real_close_fn()) real_close_fn()(fd);
}

/* Reads one whole frame into `frame` and decodes it. */
static int read_frame(uint8_t *frame, struct lp_msg *resp, const struct timespec *deadline, bool intr)
{
    if (recv_all(conn_fd, frame, 4, deadline, intr) < 0) return -1;
    size_t size = lp_frame_size(frame);
    if (size == 0 || recv_all(conn_fd, frame + 4, size - 4, deadline, false) < 0 || lp_decode(frame, size, resp) < 0) {
        if (errno == 0 || size == 0) errno = EPROTO;
        return -1;
    }
    return 0;
}

/* One exchange on the open connection; the lock is held. */
static int exchange(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp, bool intr)
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
    for (;;) {
        errno = 0;
        if (read_frame(frame, resp, &deadline, intr) < 0) {
            if (errno == EINTR) {
                abandoned++;
                layer_log(LOG_DEBUG, "request %u interrupted by a signal: its answer will be skipped",
                          (unsigned)req->id);
            }
            return -1;
        }
        /* Ids only grow on one connection: an older id is an answer nobody waits for. */
        if (resp->id != req->id && abandoned > 0 && (int32_t)(req->id - resp->id) > 0) {
            abandoned--;
            layer_log(LOG_DEBUG, "skipped the answer to abandoned request %u", (unsigned)resp->id);
            continue;
        }
        if (resp->id != req->id || resp->type != (req->type | LP_RESPONSE)) {
            errno = EPROTO;
            return -1;
        }
        return 0;
    }
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
        .type = LP_HELLO,
        .version = LP_VERSION,
        .pid = (uint32_t)conn_pid,
        .ppid = (uint32_t)getppid(),
        .parent_pid = (uint32_t)parent_pid,
        .exe = { exe, (uint16_t)(n > 0 ? n : 0) },
    };
    struct lp_msg resp;
    if (exchange(&hello, frame, &resp, false) < 0) {
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

static int call(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp, bool intr)
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
        abandoned = 0;
    }
    int r = 0;
    if (conn_fd < 0) {
        errno = 0;
        next_id = 1;
        r = open_connection(frame);
    }
    bool interrupted = false;
    if (r == 0) {
        r = exchange(req, frame, resp, intr);
        interrupted = r < 0 && errno == EINTR;
        if (r < 0 && !interrupted) {
            int saved = errno;
            drop_connection();
            errno = saved;
        }
    }
    if (r < 0 && !interrupted) {
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
    return interrupted ? INTPROXY_INTERRUPTED : r;
}

int intproxy_call(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp) { return call(req, frame, resp, false); }

int intproxy_call_intr(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp) { return call(req, frame, resp, true); }

pid_t intproxy_parent_pid(void) { return parent_pid; }

void intproxy_set_parent_pid(pid_t pid) { parent_pid = pid; }

bool intproxy_is_own_fd(int fd) { return fd >= 0 && fd == __atomic_load_n(&conn_fd, __ATOMIC_ACQUIRE); }

void intproxy_move_off(int fd)
{
    pthread_mutex_lock(&lock);
    if (fd == conn_fd) {
        /* The program's dup2 closes `fd` atomically; our socket lives on under a new number. */
        int moved = fcntl(fd, F_DUPFD_CLOEXEC, fd < HIGH_FD ? HIGH_FD : fd + 1);
        __atomic_store_n(&conn_fd, moved, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lock);
}

void intproxy_fork_prepare(void)
{
    pthread_mutex_lock(&lock);
    forking_pid = getpid();
}

void intproxy_fork_release(bool in_child)
{
    if (in_child) {
        /* Sharing the parent's socket would interleave two processes' frames: the child opens
         * its own connection on first use and says whose session it continues. */
        int fd = __atomic_exchange_n(&conn_fd, -1, __ATOMIC_ACQ_REL);
        if (fd >= 0 && real_close_fn()) real_close_fn()(fd);
        parent_pid = forking_pid;
        next_id = 1;
        abandoned = 0;
        warned = false;
    }
    pthread_mutex_unlock(&lock);
}
