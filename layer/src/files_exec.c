/*
 * exec with remote descriptors open (`sh -c 'cmd < /srv/in > /srv/out'`): the new image has no
 * layer state for them, only the placeholder memfds. So just before exec, for every remote file
 * the new image inherits (no FD_CLOEXEC):
 *  - opened for reading: its content is copied into the placeholder and the placeholder's offset
 *    set to the program's, so the new image reads it natively (up to MATERIALIZE_MAX bytes);
 *  - opened for writing: the descriptor becomes the write end of a pipe whose other end a helper
 *    process (forked from this one, so it continues its remote files) copies to the remote file
 *    until the new image closes it.
 * Directories are left alone. Nothing is done in a clone(CLONE_VM) child (it shares the parent's
 * memory, and the layer's connection state with it): posix_spawn is prepared in the parent, and
 * vfork is a fork (exec.c, whose hooks call files_prepare_exec).
 */
#define _GNU_SOURCE
#include "files.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MATERIALIZE_MAX (256ull << 20)

static pid_t own_pid; /* this memory's process: differs from getpid() in a clone(CLONE_VM) child */

/* ---- a private connection ----------------------------------------------------------------- */
/* Used where the process's own connection (intproxy_conn.c) must not be touched: in a clone(CLONE_VM) child, which
 * shares the parent's memory, and in the write helper. Its HELLO names `holder`, a process whose
 * connection holds the handles, so the intproxy lets this connection use them too. Blocking, with
 * the layer's timeout; raw system calls only (the hooks are not re-entered). */
struct pconn {
    int fd;
    uint32_t next_id;
    uint8_t *frame;
};

static int pconn_io(int fd, uint8_t *buf, size_t len, bool sending)
{
    while (len > 0) {
        ssize_t n = sending ? (ssize_t)syscall(SYS_sendto, fd, buf, len, MSG_NOSIGNAL, NULL, 0)
                            : (ssize_t)syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int pconn_call(struct pconn *c, struct lp_msg *req, struct lp_msg *resp)
{
    req->id = c->next_id++;
    size_t len = lp_encode(req, c->frame, LP_MAX_FRAME);
    if (len == 0 || pconn_io(c->fd, c->frame, len, true) < 0 || pconn_io(c->fd, c->frame, 4, false) < 0) return -1;
    size_t size = lp_frame_size(c->frame);
    if (size == 0 || pconn_io(c->fd, c->frame + 4, size - 4, false) < 0 || lp_decode(c->frame, size, resp) < 0 ||
        resp->id != req->id || resp->type != (req->type | LP_RESPONSE))
        return -1;
    return 0;
}

static void pconn_close(struct pconn *c)
{
    if (c->fd >= 0) syscall(SYS_close, c->fd);
    free(c->frame);
    c->fd = -1;
    c->frame = NULL;
}

static int pconn_open(struct pconn *c, pid_t holder)
{
    const struct layer_config *cfg = layer_config();
    c->next_id = 1;
    c->frame = malloc(LP_MAX_FRAME);
    c->fd = (int)syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!c->frame || c->fd < 0) {
        pconn_close(c);
        return -1;
    }
    struct timeval tv = { .tv_sec = cfg->timeout_ms / 1000, .tv_usec = (cfg->timeout_ms % 1000) * 1000 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct lp_msg hello = { .type = LP_HELLO,
                            .version = LP_VERSION,
                            .pid = (uint32_t)getpid(),
                            .ppid = (uint32_t)getppid(),
                            .parent_pid = (uint32_t)holder,
                            .exe = { "", 0 } },
                  resp;
    if (syscall(SYS_connect, c->fd, &cfg->intproxy, sizeof cfg->intproxy) < 0 || pconn_call(c, &hello, &resp) < 0 ||
        resp.status != 0) {
        pconn_close(c);
        return -1;
    }
    return 0;
}

static void after_fork_child(void) { own_pid = getpid(); }

void files_exec_register(void)
{
    own_pid = getpid();
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* One chunk at `off` through the private connection: bytes, 0 at the end, -1. */
static ssize_t pconn_read(struct pconn *c, struct file_obj *f, uint8_t *dst, uint64_t off)
{
    struct lp_msg req = { .type = LP_FS_READ, .handle = f->handle, .offset = off, .len = LP_FS_MAX_IO }, resp;
    if (pconn_call(c, &req, &resp) < 0 || resp.status < 0) return -1;
    memcpy(dst, resp.data, resp.data_len);
    return (ssize_t)resp.data_len;
}

void files_materialize(int fd, struct file_obj *f)
{
    if (__atomic_exchange_n(&f->materialized, true, __ATOMIC_ACQ_REL)) {
        syscall(SYS_lseek, fd, (off_t)f->pos, SEEK_SET);
        return;
    }
    /* In a clone(CLONE_VM) child the process's own connection is the parent's: use a private one. */
    bool private = getpid() != own_pid;
    struct pconn c = { .fd = -1 };
    if (private && pconn_open(&c, own_pid) < 0) {
        layer_log(LOG_ERROR, "cannot reach the intproxy to hand %s to the new program", f->path);
        return;
    }
    uint8_t *buf = malloc(LP_FS_MAX_IO);
    uint64_t off = 0;
    while (buf && off < MATERIALIZE_MAX) {
        ssize_t n = private ? pconn_read(&c, f, buf, off) : files_read(f, buf, LP_FS_MAX_IO, &off);
        /* A read the program's signal handler interrupted: the copy must still be whole. */
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (syscall(SYS_pwrite64, fd, buf, (size_t)n, (off_t)off) != n) break;
        off += (uint64_t)n;
    }
    free(buf);
    if (private) pconn_close(&c);
    syscall(SYS_lseek, fd, (off_t)f->pos, SEEK_SET);
    layer_log(LOG_DEBUG, "exec: %s copied into fd %d (%llu bytes)", f->path, fd, (unsigned long long)off);
}

/* The helper: copies the pipe to the remote file, then exits. It first proves (one request) that
 * its own connection holds the handle, and says so on `ready`, before the parent may exec. */
static void forward_loop(int in, int ready, struct file_obj *f, int limit, pid_t holder)
{
    for (int i = 0; i < limit; i++)
        if (i != in && i != ready) syscall(SYS_close, i);
    struct pconn c = { .fd = -1 };
    char ok = pconn_open(&c, holder) == 0 ? 'y' : 'n';
    syscall(SYS_write, ready, &ok, 1);
    syscall(SYS_close, ready);
    uint8_t *buf = malloc(LP_FS_MAX_IO);
    uint64_t pos = f->pos;
    while (ok == 'y' && buf) {
        ssize_t n = (ssize_t)syscall(SYS_read, in, buf, LP_FS_MAX_IO);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t done = 0; done < n;) {
            struct lp_msg req = { .type = LP_FS_WRITE,
                                  .handle = f->handle,
                                  .data = buf + done,
                                  .data_len = (uint32_t)(n - done),
                                  .offset = (f->flags & O_APPEND) ? LP_FS_APPEND : pos },
                          resp;
            if (pconn_call(&c, &req, &resp) < 0 || resp.status < 0 || resp.written == 0) _exit(1);
            done += resp.written;
            pos = resp.offset;
        }
    }
    /* Closing the connection releases the handle (the intproxy counts this connection's share). */
    _exit(0);
}

static void forward_writes(int fd, struct file_obj *f)
{
    int p[2], r[2];
    if (pipe2(p, O_CLOEXEC) < 0) return;
    if (pipe2(r, O_CLOEXEC) < 0) {
        syscall(SYS_close, p[0]);
        syscall(SYS_close, p[1]);
        return;
    }
    int limit = fdtable_limit() > 1024 ? fdtable_limit() : 1024;
    /* The process whose connection holds the handle: this one (asked once so that it does, in a
     * forked child that never talked to the intproxy), or in a clone(CLONE_VM) child the parent. */
    pid_t holder = own_pid;
    if (getpid() == own_pid) files_refresh(f);
    pid_t mid = fork();
    if (mid == 0) {
        /* Double fork: the helper is nobody's child in the new image (its wait() must not see it). */
        signal(SIGHUP, SIG_IGN);
        if (fork() == 0) forward_loop(p[0], r[1], f, limit, holder);
        _exit(0);
    }
    syscall(SYS_close, p[0]);
    syscall(SYS_close, r[1]);
    if (mid > 0) {
        while (waitpid(mid, NULL, 0) < 0 && errno == EINTR) {}
        char ok = 'n';
        struct pollfd pfd = { .fd = r[0], .events = POLLIN };
        if (poll(&pfd, 1, layer_config()->timeout_ms) == 1) syscall(SYS_read, r[0], &ok, 1);
        if (ok != 'y') layer_log(LOG_ERROR, "exec: no helper for writes to %s", f->path);
        /* The program's number now names the pipe (without close-on-exec); the memfd goes. */
        syscall(SYS_dup3, p[1], fd, 0);
        layer_log(LOG_DEBUG, "exec: writes to fd %d go to %s through a helper", fd, f->path);
    }
    syscall(SYS_close, p[1]);
    syscall(SYS_close, r[0]);
}

void files_prepare_exec(void)
{
    if (!files_enabled() || !fdtable_any() || layer_inside()) return;
    int saved = errno;
    int limit = fdtable_limit();
    for (int fd = 0; fd < limit; fd++) {
        struct file_obj *f = files_get(fd);
        if (!f) continue;
        int fdflags = (int)syscall(SYS_fcntl, fd, F_GETFD);
        if (!f->is_dir && fdflags >= 0 && !(fdflags & FD_CLOEXEC)) {
            if ((f->flags & O_ACCMODE) == O_RDONLY) files_materialize(fd, f);
            else forward_writes(fd, f);
        }
        fdtable_put(&f->obj);
    }
    errno = saved;
}

pid_t files_exec_own_pid(void) { return own_pid; }
