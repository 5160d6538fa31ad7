/* Per-descriptor state of the layer (see fdtable.h). One mutex; callbacks that do I/O (destroy)
 * run after it is released. */
#define _GNU_SOURCE
#include "fdtable.h"
#include "layer.h"
#include "intproxy_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fd_obj **table;
static size_t table_size;
static size_t live; /* entries in use: lets close()/read() skip the lock in programs with none */
static const struct fd_kind_ops *kinds[FD_KIND_MAX];

void fdtable_register(int kind, const struct fd_kind_ops *ops)
{
    if (kind > 0 && kind < FD_KIND_MAX) __atomic_store_n(&kinds[kind], ops, __ATOMIC_RELEASE);
}

/* The raw system call: fstat() itself is hooked for remote files, and this runs inside hooks. */
static ino_t inode_of(int fd)
{
    struct stat st;
    return syscall(SYS_fstat, fd, &st) == 0 ? st.st_ino : 0;
}

void fdtable_obj_init(struct fd_obj *obj, int kind, int fd)
{
    obj->kind = kind;
    obj->refs = 1;
    obj->ino = fd >= 0 ? inode_of(fd) : 0;
}

bool fdtable_any(void) { return __atomic_load_n(&live, __ATOMIC_ACQUIRE) != 0; }

int fdtable_limit(void)
{
    pthread_mutex_lock(&table_lock);
    int n = (int)table_size;
    pthread_mutex_unlock(&table_lock);
    return n;
}

void fdtable_put(struct fd_obj *obj)
{
    if (!obj) return;
    if (__atomic_sub_fetch(&obj->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    const struct fd_kind_ops *ops = __atomic_load_n(&kinds[obj->kind], __ATOMIC_ACQUIRE);
    if (ops && ops->destroy) ops->destroy(obj);
}

/* Removes the entry of `fd` (lock held); returns its object (the table's reference) or NULL. */
static struct fd_obj *take_locked(int fd)
{
    if (fd < 0 || (size_t)fd >= table_size || !table[fd]) return NULL;
    struct fd_obj *obj = table[fd];
    table[fd] = NULL;
    __atomic_sub_fetch(&live, 1, __ATOMIC_RELEASE);
    const struct fd_kind_ops *ops = kinds[obj->kind];
    if (ops && ops->on_close) ops->on_close(fd, obj);
    return obj;
}

static int grow_locked(int fd)
{
    if ((size_t)fd < table_size) return 0;
    size_t n = table_size ? table_size : 64;
    while (n <= (size_t)fd) n *= 2;
    struct fd_obj **grown = realloc(table, n * sizeof *grown);
    if (!grown) return -1;
    memset(grown + table_size, 0, (n - table_size) * sizeof *grown);
    table = grown;
    table_size = n;
    return 0;
}

int fdtable_set(int fd, struct fd_obj *obj)
{
    if (fd < 0) {
        fdtable_put(obj);
        errno = EBADF;
        return -1;
    }
    pthread_mutex_lock(&table_lock);
    if (grow_locked(fd) < 0) {
        pthread_mutex_unlock(&table_lock);
        fdtable_put(obj);
        errno = ENOMEM;
        return -1;
    }
    struct fd_obj *old = take_locked(fd);
    table[fd] = obj;
    __atomic_add_fetch(&live, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&table_lock);
    fdtable_put(old);
    return 0;
}

struct fd_obj *fdtable_get(int fd, int kind)
{
    if (fd < 0 || !fdtable_any()) return NULL;
    struct fd_obj *obj = NULL;
    pthread_mutex_lock(&table_lock);
    if ((size_t)fd < table_size && table[fd] && (kind == 0 || table[fd]->kind == kind)) {
        obj = table[fd];
        __atomic_add_fetch(&obj->refs, 1, __ATOMIC_ACQ_REL);
    }
    pthread_mutex_unlock(&table_lock);
    if (obj && obj->ino != 0 && inode_of(fd) != obj->ino) {
        /* Closed behind our back and reused: forget it (only if it is still the same entry). */
        struct fd_obj *stale = NULL;
        pthread_mutex_lock(&table_lock);
        if ((size_t)fd < table_size && table[fd] == obj) stale = take_locked(fd);
        pthread_mutex_unlock(&table_lock);
        fdtable_put(stale);
        fdtable_put(obj);
        obj = NULL;
    }
    return obj;
}

void fdtable_forget(int fd)
{
    if (fd < 0 || !fdtable_any()) return;
    pthread_mutex_lock(&table_lock);
    struct fd_obj *old = take_locked(fd);
    pthread_mutex_unlock(&table_lock);
    fdtable_put(old);
}

void fdtable_dup(int from, int to)
{
    if (from == to || to < 0 || !fdtable_any()) return;
    struct fd_obj *src = fdtable_get(from, 0);
    pthread_mutex_lock(&table_lock);
    struct fd_obj *old = take_locked(to);
    if (src && grow_locked(to) == 0) {
        table[to] = src; /* the reference from fdtable_get() becomes the table's */
        __atomic_add_fetch(&live, 1, __ATOMIC_RELEASE);
        const struct fd_kind_ops *ops = kinds[src->kind];
        if (ops && ops->on_dup) ops->on_dup(from, to, src);
        src = NULL;
    }
    pthread_mutex_unlock(&table_lock);
    fdtable_put(old);
    fdtable_put(src);
}

void fdtable_fork_prepare(void) { pthread_mutex_lock(&table_lock); }
void fdtable_fork_release(void) { pthread_mutex_unlock(&table_lock); }

/* ---- exported hooks shared by every kind: close, dup, dup2, dup3, fcntl(F_DUPFD*) --------- */

LAYER_REAL(int, close, (int))
LAYER_REAL(int, dup, (int))
LAYER_REAL(int, dup2, (int, int))
LAYER_REAL(int, dup3, (int, int, int))
LAYER_REAL(int, fcntl, (int, int, ...))
LAYER_REAL(int, fcntl64, (int, int, ...))

int close(int fd)
{
    if (intproxy_is_own_fd(fd)) {
        layer_log(LOG_DEBUG, "refusing to close the intproxy descriptor %d", fd);
        return 0;
    }
    if (!real_close_fn()) {
        errno = ENOSYS;
        return -1;
    }
    int saved = errno;
    fdtable_forget(fd); /* may tell the intproxy (last reference to a remote file) */
    errno = saved;
    return real_close_fn()(fd);
}

int dup(int fd)
{
    if (!real_dup_fn()) {
        errno = ENOSYS;
        return -1;
    }
    int r = real_dup_fn()(fd);
    if (r >= 0) fdtable_dup(fd, r);
    return r;
}

static int dup_onto(int oldfd, int newfd, int flags, bool is_dup3)
{
    if (oldfd != newfd && intproxy_is_own_fd(newfd)) intproxy_move_off(newfd);
    int r = is_dup3 ? real_dup3_fn()(oldfd, newfd, flags) : real_dup2_fn()(oldfd, newfd);
    if (r >= 0 && oldfd != newfd) {
        int saved = errno;
        fdtable_dup(oldfd, newfd);
        struct fd_obj *obj = fdtable_get(newfd, 0);
        const struct fd_kind_ops *ops = obj ? __atomic_load_n(&kinds[obj->kind], __ATOMIC_ACQUIRE) : NULL;
        if (ops && ops->after_dup2) ops->after_dup2(newfd, obj);
        fdtable_put(obj);
        errno = saved;
    }
    return r;
}

int dup2(int oldfd, int newfd)
{
    if (!real_dup2_fn()) {
        errno = ENOSYS;
        return -1;
    }
    return dup_onto(oldfd, newfd, 0, false);
}

int dup3(int oldfd, int newfd, int flags)
{
    if (!real_dup3_fn()) {
        errno = ENOSYS;
        return -1;
    }
    return dup_onto(oldfd, newfd, flags, true);
}

/* Every fcntl command takes at most one argument, an int or a pointer: passing it on as a
 * pointer-sized value is what glibc's own wrappers do. */
static int fcntl_common(int (*real)(int, int, ...), int fd, int cmd, void *arg)
{
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    int r = real(fd, cmd, arg);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) {
        int saved = errno;
        fdtable_dup(fd, r);
        errno = saved;
    }
    return r;
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(real_fcntl_fn(), fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(real_fcntl64_fn(), fd, cmd, arg);
}
