/*
 * epoll_ctl: remembers registrations of inet sockets that are not connected yet, the only ones
 * the fast path can swap (fdpass.c). A registration belongs to the open file, not the number, so
 * after dup3 the set would watch the old socket, or nothing; nginx registers before connect().
 * libuv, Go, asyncio and libevent register after it, so most programs never fill this table.
 */
#define _GNU_SOURCE
#include "fdpass.h"
#include "layer.h"
#include "socket.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

LAYER_REAL(int, epoll_ctl, (int, int, int, struct epoll_event *))

struct reg {
    int epfd, fd;
    ino_t ep_ino, fd_ino; /* a number closed and reused is not the registration we saw */
    struct epoll_event ev;
};

struct fdpass_epoll_saved {
    unsigned n;
    struct reg regs[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct reg *regs;
static unsigned nregs, cap;

static ino_t ino_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

static bool unconnected_inet(int fd)
{
    if (socket_tcp_family(fd) == 0 && socket_udp_family(fd) == 0) return false;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    return getpeername(fd, (struct sockaddr *)&ss, &len) < 0 && errno == ENOTCONN;
}

static int find(int epfd, int fd)
{
    for (unsigned i = 0; i < nregs; i++)
        if (regs[i].epfd == epfd && regs[i].fd == fd) return (int)i;
    return -1;
}

static void forget(unsigned i) { regs[i] = regs[__atomic_sub_fetch(&nregs, 1, __ATOMIC_RELEASE)]; }

static void record(int epfd, int op, int fd, const struct epoll_event *ev)
{
    /* MOD and DEL are hot in event loops: only entries we hold need them. */
    if (op != EPOLL_CTL_ADD) {
        if (!__atomic_load_n(&nregs, __ATOMIC_ACQUIRE)) return;
        pthread_mutex_lock(&lock);
        int i = find(epfd, fd);
        if (i >= 0 && op == EPOLL_CTL_DEL) forget((unsigned)i);
        else if (i >= 0 && ev) regs[i].ev = *ev;
        pthread_mutex_unlock(&lock);
        return;
    }
    /* Only sessions that may swap sockets need the table. */
    if (!ev || !layer_config()->enabled || !fdpass_offer(fd) || !unconnected_inet(fd)) return;
    struct reg r = { .epfd = epfd, .fd = fd, .ep_ino = ino_of(epfd), .fd_ino = ino_of(fd), .ev = *ev };
    pthread_mutex_lock(&lock);
    int i = find(epfd, fd);
    if (i < 0 && nregs == cap) {
        unsigned ncap = cap ? cap * 2 : 16;
        struct reg *n = realloc(regs, ncap * sizeof *n);
        if (!n) goto out;
        regs = n;
        cap = ncap;
    }
    if (i < 0) i = (int)__atomic_add_fetch(&nregs, 1, __ATOMIC_RELEASE) - 1;
    regs[i] = r;
out:
    pthread_mutex_unlock(&lock);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    layer_init();
    if (!real_epoll_ctl_fn()) {
        errno = ENOSYS;
        return -1;
    }
    int r = real_epoll_ctl_fn()(epfd, op, fd, ev);
    if (r == 0 && !layer_inside()) {
        int saved = errno;
        layer_enter();
        record(epfd, op, fd, ev);
        layer_leave();
        errno = saved;
    }
    return r;
}

int fdpass_epoll_detach(int fd, struct fdpass_epoll_saved **out)
{
    *out = NULL;
    ino_t ino = ino_of(fd);
    pthread_mutex_lock(&lock);
    unsigned count = 0;
    for (unsigned i = 0; i < nregs; i++)
        if (regs[i].fd == fd) count++;
    struct fdpass_epoll_saved *s = count ? malloc(sizeof *s + count * sizeof s->regs[0]) : NULL;
    if (s) s->n = 0;
    for (unsigned i = 0; i < nregs;) {
        if (regs[i].fd != fd) {
            i++;
            continue;
        }
        struct reg r = regs[i];
        forget(i);
        if (r.fd_ino != ino || r.ep_ino != ino_of(r.epfd) || !s) continue;
        if (real_epoll_ctl_fn()(r.epfd, EPOLL_CTL_DEL, fd, NULL) == 0) s->regs[s->n++] = r;
    }
    pthread_mutex_unlock(&lock);
    *out = s;
    return s ? (int)s->n : 0;
}

/* After the swap, or after a failed one: then the old socket goes back into the sets it was in. */
void fdpass_epoll_attach(int fd, struct fdpass_epoll_saved *saved)
{
    if (!saved) return;
    for (unsigned i = 0; i < saved->n; i++) {
        struct epoll_event ev = saved->regs[i].ev;
        if (real_epoll_ctl_fn()(saved->regs[i].epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            layer_log(LOG_ERROR, "epoll set %d lost socket %d on the fast path: %s", saved->regs[i].epfd, fd,
                      strerror(errno));
    }
    free(saved);
}
