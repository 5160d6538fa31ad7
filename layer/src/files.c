/*
 * Remote files (see files.h): open family, read/pread/readv, write/pwrite/writev, lseek, the stat
 * family (stat/lstat/fstat/fstatat/statx and the old __xstat symbols), access/faccessat,
 * readlink/readlinkat, mkdir/unlink/rmdir/rename, fopen, and refusals for copy_file_range/sendfile
 * from a remote descriptor (their callers fall back to read/write).
 */
#define _GNU_SOURCE
#include "files.h"
#include "errors.h"
#include "layer.h"
#include "intproxy_conn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

/* glibc symbols the headers do not always declare. */
int __open_2(const char *, int);
int __open64_2(const char *, int);
int __openat_2(int, const char *, int);
int __openat64_2(int, const char *, int);
int __xstat(int, const char *, struct stat *);
int __lxstat(int, const char *, struct stat *);
int __fxstat(int, int, struct stat *);
int __fxstatat(int, int, const char *, struct stat *, int);
int __xstat64(int, const char *, struct stat64 *);
int __lxstat64(int, const char *, struct stat64 *);
int __fxstat64(int, int, struct stat64 *);
int __fxstatat64(int, int, const char *, struct stat64 *, int);

LAYER_REAL(int, close, (int))
LAYER_REAL(int, open, (const char *, int, ...))
LAYER_REAL(int, open64, (const char *, int, ...))
LAYER_REAL(int, openat, (int, const char *, int, ...))
LAYER_REAL(int, openat64, (int, const char *, int, ...))
LAYER_REAL(int, __open_2, (const char *, int))
LAYER_REAL(int, __open64_2, (const char *, int))
LAYER_REAL(int, __openat_2, (int, const char *, int))
LAYER_REAL(int, __openat64_2, (int, const char *, int))
LAYER_REAL(int, creat, (const char *, mode_t))
LAYER_REAL(int, creat64, (const char *, mode_t))
LAYER_REAL(FILE *, fopen, (const char *, const char *))
LAYER_REAL(FILE *, fopen64, (const char *, const char *))
LAYER_REAL(ssize_t, read, (int, void *, size_t))
LAYER_REAL(ssize_t, pread, (int, void *, size_t, off_t))
LAYER_REAL(ssize_t, pread64, (int, void *, size_t, off64_t))
LAYER_REAL(ssize_t, readv, (int, const struct iovec *, int))
LAYER_REAL(ssize_t, preadv, (int, const struct iovec *, int, off_t))
LAYER_REAL(ssize_t, preadv64, (int, const struct iovec *, int, off64_t))
LAYER_REAL(ssize_t, write, (int, const void *, size_t))
LAYER_REAL(ssize_t, pwrite, (int, const void *, size_t, off_t))
LAYER_REAL(ssize_t, pwrite64, (int, const void *, size_t, off64_t))
LAYER_REAL(ssize_t, writev, (int, const struct iovec *, int))
LAYER_REAL(off_t, lseek, (int, off_t, int))
LAYER_REAL(off64_t, lseek64, (int, off64_t, int))
LAYER_REAL(int, stat, (const char *, struct stat *))
LAYER_REAL(int, lstat, (const char *, struct stat *))
LAYER_REAL(int, fstat, (int, struct stat *))
LAYER_REAL(int, fstatat, (int, const char *, struct stat *, int))
LAYER_REAL(int, stat64, (const char *, struct stat64 *))
LAYER_REAL(int, lstat64, (const char *, struct stat64 *))
LAYER_REAL(int, fstat64, (int, struct stat64 *))
LAYER_REAL(int, fstatat64, (int, const char *, struct stat64 *, int))
LAYER_REAL(int, statx, (int, const char *, int, unsigned, struct statx *))
LAYER_REAL(int, __xstat, (int, const char *, struct stat *))
LAYER_REAL(int, __lxstat, (int, const char *, struct stat *))
LAYER_REAL(int, __fxstat, (int, int, struct stat *))
LAYER_REAL(int, __fxstatat, (int, int, const char *, struct stat *, int))
LAYER_REAL(int, __xstat64, (int, const char *, struct stat64 *))
LAYER_REAL(int, __lxstat64, (int, const char *, struct stat64 *))
LAYER_REAL(int, __fxstat64, (int, int, struct stat64 *))
LAYER_REAL(int, __fxstatat64, (int, int, const char *, struct stat64 *, int))
LAYER_REAL(int, access, (const char *, int))
LAYER_REAL(int, faccessat, (int, const char *, int, int))
LAYER_REAL(ssize_t, readlink, (const char *, char *, size_t))
LAYER_REAL(ssize_t, readlinkat, (int, const char *, char *, size_t))
LAYER_REAL(int, mkdir, (const char *, mode_t))
LAYER_REAL(int, mkdirat, (int, const char *, mode_t))
LAYER_REAL(int, unlink, (const char *))
LAYER_REAL(int, unlinkat, (int, const char *, int))
LAYER_REAL(int, rmdir, (const char *))
LAYER_REAL(int, rename, (const char *, const char *))
LAYER_REAL(int, renameat, (int, const char *, int, const char *))
LAYER_REAL(ssize_t, copy_file_range, (int, off64_t *, int, off64_t *, size_t, unsigned))
LAYER_REAL(ssize_t, sendfile, (int, int, off_t *, size_t))
LAYER_REAL(ssize_t, sendfile64, (int, int, off64_t *, size_t))

/* ---- settings: MIRRORD_FS, MIRRORD_FS_LOCAL, MIRRORD_FS_ASK (set by the CLI) --------------- */

#define MAX_PREFIXES 256
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;
static bool enabled;
/* Static, not strdup'ed: the first hooked call may come from inside an allocator's own start-up
 * (jemalloc reads /etc/malloc.conf with readlink), where calling malloc deadlocks. */
#define SETTINGS_MAX 65536
static char local_buf[SETTINGS_MAX], ask_buf[SETTINGS_MAX];
static const char *local_dirs[MAX_PREFIXES], *ask_prefixes[MAX_PREFIXES];
static size_t n_local, n_ask;

static size_t split(char *text, const char **out)
{
    size_t n = 0;
    for (char *save = NULL, *tok = text ? strtok_r(text, ":", &save) : NULL; tok && n < MAX_PREFIXES;
         tok = strtok_r(NULL, ":", &save))
        out[n++] = tok;
    return n;
}

/* Copies a ':'-list into `buf`; a list too long keeps its whole leading entries only (the caller
 * makes sure that losing the rest is safe). */
static char *copy_list(char *buf, const char *text)
{
    if (!text) return NULL;
    size_t n = strlen(text);
    if (n >= SETTINGS_MAX) {
        n = SETTINGS_MAX - 1;
        while (n > 0 && text[n] != ':') n--;
    }
    memcpy(buf, text, n);
    buf[n] = '\0';
    return buf;
}

static void settings_load(void)
{
    const char *mode = getenv("MIRRORD_FS");
    enabled = layer_config()->enabled && mode && strcmp(mode, "on") == 0;
    const char *l = getenv("MIRRORD_FS_LOCAL"), *a = getenv("MIRRORD_FS_ASK");
    n_local = split(copy_list(local_buf, l), local_dirs);
    n_ask = split(copy_list(ask_buf, a), ask_prefixes);
    /* A dropped "ask" entry could turn a remote path local: with an ask list too long to hold,
     * keep no local hints at all (every path is then asked about, slower but never wrong). */
    if (a && strlen(a) >= SETTINGS_MAX) n_local = 0;
}

bool files_enabled(void)
{
    pthread_once(&settings_once, settings_load);
    return enabled;
}

static bool under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/') return true;
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

bool files_should_ask(const char *abs)
{
    if (!files_enabled()) return false;
    for (size_t i = 0; i < n_ask; i++)
        if (strncmp(abs, ask_prefixes[i], strlen(ask_prefixes[i])) == 0) return true;
    for (size_t i = 0; i < n_local; i++) {
        const char *d = local_dirs[i];
        if (d[0] == '=' ? strcmp(abs, d + 1) == 0 : under(abs, d)) return false;
    }
    return true;
}

/* ---- paths --------------------------------------------------------------------------------- */

/* Appends `rel` to `out` (which holds an absolute directory), dropping "." and empty components. */
static bool join(char *out, size_t cap, const char *rel)
{
    size_t len = strlen(out);
    while (*rel) {
        const char *end = strchrnul(rel, '/');
        size_t n = (size_t)(end - rel);
        if (n > 0 && !(n == 1 && rel[0] == '.')) {
            if (len > 1) {
                if (len + 1 >= cap) return false;
                out[len++] = '/';
            }
            if (len + n >= cap) return false;
            memcpy(out + len, rel, n);
            len += n;
            out[len] = '\0';
        }
        rel = *end ? end + 1 : end;
    }
    return true;
}

bool files_abs_path(int dirfd, const char *path, char *out, size_t cap)
{
    if (!path || cap < 2) return false;
    if (path[0] == '/') {
        strcpy(out, "/");
    } else if (dirfd == AT_FDCWD) {
        if (!getcwd(out, cap)) return false;
    } else {
        struct file_obj *d = files_get(dirfd);
        if (d) {
            bool ok = strlen(d->path) < cap;
            if (ok) strcpy(out, d->path);
            fdtable_put(&d->obj);
            if (!ok) return false;
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
            ssize_t n = real_readlink_fn() ? real_readlink_fn()(link, out, cap - 1) : -1;
            if (n <= 0 || out[0] != '/') return false;
            out[n] = '\0';
        }
    }
    return join(out, cap, path);
}

/* ---- the intproxy ---------------------------------------------------------------------------- */

bool files_call(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp)
{
    if (intproxy_call(req, frame, resp) < 0) {
        errno = EIO;
        return false;
    }
    return true;
}

/* A read waits like a read of a slow device: a signal handler may interrupt it (EINTR). */
static bool files_call_intr(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp)
{
    int r = intproxy_call_intr(req, frame, resp);
    if (r < 0) errno = r == INTPROXY_INTERRUPTED ? EINTR : EIO;
    return r == 0;
}

/* A status < 0 as errno (a broken intproxy's nonsense: EIO). */
static int status_errno(int32_t status) { return errors_connect_errno(status); }

/* ---- the descriptor kind ------------------------------------------------------------------- */

static void file_destroy(struct fd_obj *obj)
{
    struct file_obj *f = (struct file_obj *)obj;
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (frame) {
        struct lp_msg req = { .type = LP_FS_CLOSE, .handle = f->handle }, resp;
        if (intproxy_call(&req, frame, &resp) == 0 && resp.status < 0)
            layer_log(LOG_DEBUG, "close %s: %s", f->path, strerror(status_errno(resp.status)));
        free(frame);
    }
    pthread_mutex_destroy(&f->lock);
    free(f->buf);
    free(f);
}

/* A remote file made a program's standard input (`cmd < /srv/file` in a shell that vforks, where
 * the exec hook cannot act): its content goes into the placeholder now (files_exec.c). */
static void file_after_dup2(int to, struct fd_obj *obj)
{
    struct file_obj *f = (struct file_obj *)obj;
    if (to == STDIN_FILENO && !f->is_dir && (f->flags & O_ACCMODE) == O_RDONLY && !layer_inside()) files_materialize(to, f);
}

static const struct fd_kind_ops file_ops = { .destroy = file_destroy, .after_dup2 = file_after_dup2 };

void files_register(void)
{
    fdtable_register(FD_KIND_FILE, &file_ops);
    files_exec_register();
}

struct file_obj *files_get(int fd)
{
    if (fd < 0 || !fdtable_any()) return NULL;
    return (struct file_obj *)fdtable_get(fd, FD_KIND_FILE);
}

/* The placeholder the program holds: an empty memfd, close-on-exec if the program asked. */
static int placeholder(const char *path, int flags)
{
    char name[64];
    snprintf(name, sizeof name, "mirrord:%s", path);
    return memfd_create(name, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
}

int files_open_remote(const char *abs, int flags, mode_t mode)
{
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) {
        errno = ENOMEM;
        return -1;
    }
    struct lp_msg req = { .type = LP_FS_OPEN, .path = { abs, (uint16_t)strlen(abs) }, .flags = (uint32_t)flags,
                          .mode = (uint32_t)mode }, resp;
    if (!files_call(&req, frame, &resp)) {
        free(frame);
        return -1;
    }
    free(frame);
    if (resp.status == LP_STATUS_BYPASS) return -2;
    if (resp.status != LP_STATUS_OK) {
        errno = status_errno(resp.status);
        layer_log(LOG_DEBUG, "open %s remotely: %s", abs, strerror(errno));
        return -1;
    }
    size_t plen = strlen(abs);
    struct file_obj *f = calloc(1, sizeof *f + plen + 1);
    int fd = f ? placeholder(abs, flags) : -1;
    if (fd < 0) {
        int err = f ? errno : ENOMEM;
        free(f);
        struct lp_msg close_req = { .type = LP_FS_CLOSE, .handle = resp.handle }, close_resp;
        uint8_t *fr = malloc(LP_MAX_FRAME);
        if (fr) intproxy_call(&close_req, fr, &close_resp);
        free(fr);
        errno = err;
        return -1;
    }
    fdtable_obj_init(&f->obj, FD_KIND_FILE, fd);
    pthread_mutex_init(&f->lock, NULL);
    f->handle = resp.handle;
    f->st = resp.st;
    f->is_dir = S_ISDIR(resp.st.mode);
    f->flags = flags;
    memcpy(f->path, abs, plen + 1);
    if (fdtable_set(fd, &f->obj) < 0) {
        int err = errno;
        if (real_close_fn()) real_close_fn()(fd);
        errno = err;
        return -1;
    }
    layer_log(LOG_DEBUG, "open %s remotely: fd %d (handle %u)", abs, fd, (unsigned)f->handle);
    return fd;
}

/* ---- open family ----------------------------------------------------------------------------- */

/* The shared decision for every open: -2 = call libc. */
static int open_common(int dirfd, const char *path, int flags, mode_t mode)
{
    layer_init();
    if (layer_inside() || !files_enabled() || !path || (flags & O_PATH)) return -2;
    char abs[PATH_MAX];
    if (!files_abs_path(dirfd, path, abs, sizeof abs) || !files_should_ask(abs)) return -2;
    int saved = errno;
    int r = files_open_remote(abs, flags, mode);
    if (r == -2) errno = saved;
    return r;
}

static mode_t va_mode(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

#define OPEN_SHIM(name, realcall)                                                                  \
    int name(const char *path, int flags, ...)                                                     \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode_t mode = va_mode(flags, ap);                                                          \
        va_end(ap);                                                                                \
        int r = open_common(AT_FDCWD, path, flags, mode);                                          \
        if (r != -2) return r;                                                                     \
        if (!real_##name##_fn()) {                                                                 \
            errno = ENOSYS;                                                                        \
            return -1;                                                                             \
        }                                                                                          \
        return realcall;                                                                           \
    }
OPEN_SHIM(open, real_open_fn()(path, flags, mode))
OPEN_SHIM(open64, real_open64_fn()(path, flags, mode))

#define OPENAT_SHIM(name)                                                                          \
    int name(int dirfd, const char *path, int flags, ...)                                          \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode_t mode = va_mode(flags, ap);                                                          \
        va_end(ap);                                                                                \
        int r = open_common(dirfd, path, flags, mode);                                             \
        if (r != -2) return r;                                                                     \
        if (!real_##name##_fn()) {                                                                 \
            errno = ENOSYS;                                                                        \
            return -1;                                                                             \
        }                                                                                          \
        return real_##name##_fn()(dirfd, path, flags, mode);                                       \
    }
OPENAT_SHIM(openat)
OPENAT_SHIM(openat64)

#define FORTIFY_OPEN(name, args, dirfd_expr, call)                                                 \
    int name args                                                                                  \
    {                                                                                              \
        int r = open_common(dirfd_expr, path, flags, 0);                                           \
        if (r != -2) return r;                                                                     \
        if (!real_##name##_fn()) {                                                                 \
            errno = ENOSYS;                                                                        \
            return -1;                                                                             \
        }                                                                                          \
        return call;                                                                               \
    }
FORTIFY_OPEN(__open_2, (const char *path, int flags), AT_FDCWD, real___open_2_fn()(path, flags))
FORTIFY_OPEN(__open64_2, (const char *path, int flags), AT_FDCWD, real___open64_2_fn()(path, flags))
FORTIFY_OPEN(__openat_2, (int dirfd, const char *path, int flags), dirfd, real___openat_2_fn()(dirfd, path, flags))
FORTIFY_OPEN(__openat64_2, (int dirfd, const char *path, int flags), dirfd, real___openat64_2_fn()(dirfd, path, flags))

int creat(const char *path, mode_t mode)
{
    int r = open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
    if (r != -2) return r;
    return real_creat_fn() ? real_creat_fn()(path, mode) : (errno = ENOSYS, -1);
}

int creat64(const char *path, mode_t mode)
{
    int r = open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
    if (r != -2) return r;
    return real_creat64_fn() ? real_creat64_fn()(path, mode) : (errno = ENOSYS, -1);
}

/* ---- reading ----------------------------------------------------------------------------- */

/* Reads at `off` (lock held): from the read-ahead block, else one request (filling the block for
 * small reads so line-by-line reading costs one round trip per FILES_READ_AHEAD bytes). */
static ssize_t read_at(struct file_obj *f, void *dst, size_t n, uint64_t off)
{
    if (f->is_dir) {
        errno = EISDIR;
        return -1;
    }
    if ((f->flags & O_ACCMODE) == O_WRONLY) {
        errno = EBADF;
        return -1;
    }
    if (n == 0) return 0;
    if (f->buf && off >= f->buf_off && off < f->buf_off + f->buf_len) {
        size_t k = (size_t)(f->buf_off + f->buf_len - off);
        if (k > n) k = n;
        memcpy(dst, f->buf + (off - f->buf_off), k);
        return (ssize_t)k;
    }
    bool direct = n >= FILES_READ_AHEAD;
    if (!direct && !f->buf && !(f->buf = malloc(FILES_READ_AHEAD))) direct = true;
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) {
        errno = ENOMEM;
        return -1;
    }
    struct lp_msg req = { .type = LP_FS_READ, .handle = f->handle, .offset = off,
                          .len = direct ? (uint32_t)(n < LP_FS_MAX_IO ? n : LP_FS_MAX_IO) : FILES_READ_AHEAD }, resp;
    if (!files_call_intr(&req, frame, &resp)) {
        free(frame);
        return -1;
    }
    if (resp.status < 0) {
        free(frame);
        errno = status_errno(resp.status);
        return -1;
    }
    size_t got = resp.data_len;
    if (direct) {
        if (got > n) got = n;
        memcpy(dst, resp.data, got);
    } else {
        memcpy(f->buf, resp.data, got);
        f->buf_off = off;
        f->buf_len = (uint32_t)got;
        if (got > n) got = n;
        memcpy(dst, f->buf, got);
    }
    free(frame);
    return (ssize_t)got;
}

static ssize_t file_read(struct file_obj *f, void *dst, size_t n, const uint64_t *at)
{
    pthread_mutex_lock(&f->lock);
    ssize_t r = read_at(f, dst, n, at ? *at : f->pos);
    if (r > 0 && !at) f->pos += (uint64_t)r;
    pthread_mutex_unlock(&f->lock);
    return r;
}

/* Fills the iovecs in order; stops at a short read (end of file). */
static ssize_t file_readv(struct file_obj *f, const struct iovec *iov, int cnt, const uint64_t *at)
{
    ssize_t total = 0;
    uint64_t off = at ? *at : 0;
    for (int i = 0; i < cnt; i++) {
        size_t done = 0;
        while (done < iov[i].iov_len) {
            uint64_t pos = off + (uint64_t)total;
            ssize_t r = file_read(f, (uint8_t *)iov[i].iov_base + done, iov[i].iov_len - done, at ? &pos : NULL);
            if (r < 0) return total > 0 ? total : -1;
            if (r == 0) return total;
            done += (size_t)r;
            total += r;
        }
    }
    return total;
}

ssize_t files_read(struct file_obj *f, void *dst, size_t n, const uint64_t *at) { return file_read(f, dst, n, at); }

ssize_t read(int fd, void *buf, size_t n)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) return real_read_fn() ? real_read_fn()(fd, buf, n) : (errno = ENOSYS, -1);
    ssize_t r = file_read(f, buf, n, NULL);
    fdtable_put(&f->obj);
    return r;
}

static ssize_t pread_common(int fd, void *buf, size_t n, off64_t off, bool is64)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) {
        if (is64) return real_pread64_fn() ? real_pread64_fn()(fd, buf, n, off) : (errno = ENOSYS, -1);
        return real_pread_fn() ? real_pread_fn()(fd, buf, n, (off_t)off) : (errno = ENOSYS, -1);
    }
    ssize_t r;
    if (off < 0) {
        errno = EINVAL;
        r = -1;
    } else {
        uint64_t at = (uint64_t)off;
        r = file_read(f, buf, n, &at);
    }
    fdtable_put(&f->obj);
    return r;
}

ssize_t pread(int fd, void *buf, size_t n, off_t off) { return pread_common(fd, buf, n, off, false); }
ssize_t pread64(int fd, void *buf, size_t n, off64_t off) { return pread_common(fd, buf, n, off, true); }

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) return real_readv_fn() ? real_readv_fn()(fd, iov, cnt) : (errno = ENOSYS, -1);
    ssize_t r = file_readv(f, iov, cnt, NULL);
    fdtable_put(&f->obj);
    return r;
}

static ssize_t preadv_common(int fd, const struct iovec *iov, int cnt, off64_t off, bool is64)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) {
        if (is64) return real_preadv64_fn() ? real_preadv64_fn()(fd, iov, cnt, off) : (errno = ENOSYS, -1);
        return real_preadv_fn() ? real_preadv_fn()(fd, iov, cnt, (off_t)off) : (errno = ENOSYS, -1);
    }
    uint64_t at = (uint64_t)off;
    ssize_t r = off < 0 ? (errno = EINVAL, -1) : file_readv(f, iov, cnt, &at);
    fdtable_put(&f->obj);
    return r;
}

ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off) { return preadv_common(fd, iov, cnt, off, false); }
ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off64_t off) { return preadv_common(fd, iov, cnt, off, true); }

/* ---- writing ----------------------------------------------------------------------------- */

static ssize_t file_write(struct file_obj *f, const void *src, size_t n, const uint64_t *at)
{
    if (f->is_dir || (f->flags & O_ACCMODE) == O_RDONLY) {
        errno = EBADF;
        return -1;
    }
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) {
        errno = ENOMEM;
        return -1;
    }
    pthread_mutex_lock(&f->lock);
    f->buf_len = 0; /* the read-ahead block may now be wrong */
    f->st_stale = true;
    size_t done = 0;
    ssize_t result = 0;
    while (done < n || n == 0) {
        size_t k = n - done < LP_FS_MAX_IO ? n - done : LP_FS_MAX_IO;
        uint64_t off = at ? *at + done : (f->flags & O_APPEND) ? LP_FS_APPEND : f->pos;
        struct lp_msg req = { .type = LP_FS_WRITE, .handle = f->handle, .offset = off,
                              .data = (const uint8_t *)src + done, .data_len = (uint32_t)k }, resp;
        if (!files_call(&req, frame, &resp)) {
            result = -1;
            break;
        }
        if (resp.status < 0) {
            errno = status_errno(resp.status);
            result = -1;
            break;
        }
        done += resp.written;
        if (!at) f->pos = resp.offset;
        if (resp.written < k || n == 0) break;
    }
    pthread_mutex_unlock(&f->lock);
    free(frame);
    if (result < 0 && done == 0) return -1;
    return (ssize_t)done;
}

ssize_t files_write(struct file_obj *f, const void *src, size_t n, const uint64_t *at) { return file_write(f, src, n, at); }

ssize_t write(int fd, const void *buf, size_t n)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) return real_write_fn() ? real_write_fn()(fd, buf, n) : (errno = ENOSYS, -1);
    ssize_t r = file_write(f, buf, n, NULL);
    fdtable_put(&f->obj);
    return r;
}

static ssize_t pwrite_common(int fd, const void *buf, size_t n, off64_t off, bool is64)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) {
        if (is64) return real_pwrite64_fn() ? real_pwrite64_fn()(fd, buf, n, off) : (errno = ENOSYS, -1);
        return real_pwrite_fn() ? real_pwrite_fn()(fd, buf, n, (off_t)off) : (errno = ENOSYS, -1);
    }
    uint64_t at = (uint64_t)off;
    ssize_t r = off < 0 ? (errno = EINVAL, -1) : file_write(f, buf, n, &at);
    fdtable_put(&f->obj);
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) { return pwrite_common(fd, buf, n, off, false); }
ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) { return pwrite_common(fd, buf, n, off, true); }

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) return real_writev_fn() ? real_writev_fn()(fd, iov, cnt) : (errno = ENOSYS, -1);
    ssize_t total = 0;
    for (int i = 0; i < cnt; i++) {
        ssize_t r = file_write(f, iov[i].iov_base, iov[i].iov_len, NULL);
        if (r < 0) {
            if (total == 0) total = -1;
            break;
        }
        total += r;
        if ((size_t)r < iov[i].iov_len) break;
    }
    fdtable_put(&f->obj);
    return total;
}

/* ---- stat family --------------------------------------------------------------------------- */

static void to_stat(const struct lp_stat *s, struct stat *out)
{
    memset(out, 0, sizeof *out);
    out->st_dev = (dev_t)s->dev;
    out->st_ino = (ino_t)s->ino;
    out->st_mode = s->mode;
    out->st_nlink = s->nlink;
    out->st_uid = s->uid;
    out->st_gid = s->gid;
    out->st_rdev = (dev_t)s->rdev;
    out->st_size = (off_t)s->size;
    out->st_blksize = (blksize_t)s->blksize;
    out->st_blocks = (blkcnt_t)s->blocks;
    out->st_atim.tv_sec = s->atime_sec;
    out->st_atim.tv_nsec = s->atime_nsec;
    out->st_mtim.tv_sec = s->mtime_sec;
    out->st_mtim.tv_nsec = s->mtime_nsec;
    out->st_ctim.tv_sec = s->ctime_sec;
    out->st_ctim.tv_nsec = s->ctime_nsec;
}

static void to_statx(const struct lp_stat *s, struct statx *out)
{
    memset(out, 0, sizeof *out);
    out->stx_mask = STATX_BASIC_STATS;
    out->stx_blksize = s->blksize;
    out->stx_nlink = s->nlink;
    out->stx_uid = s->uid;
    out->stx_gid = s->gid;
    out->stx_mode = (uint16_t)s->mode;
    out->stx_ino = s->ino;
    out->stx_size = (uint64_t)s->size;
    out->stx_blocks = (uint64_t)s->blocks;
    out->stx_atime.tv_sec = s->atime_sec;
    out->stx_atime.tv_nsec = s->atime_nsec;
    out->stx_mtime.tv_sec = s->mtime_sec;
    out->stx_mtime.tv_nsec = s->mtime_nsec;
    out->stx_ctime.tv_sec = s->ctime_sec;
    out->stx_ctime.tv_nsec = s->ctime_nsec;
    out->stx_rdev_major = major(s->rdev);
    out->stx_rdev_minor = minor(s->rdev);
    out->stx_dev_major = major(s->dev);
    out->stx_dev_minor = minor(s->dev);
}

/* stat of a remote descriptor: the open-time answer until a write makes it stale. */
static int fstat_remote(struct file_obj *f, struct lp_stat *out)
{
    pthread_mutex_lock(&f->lock);
    int r = 0;
    if (f->st_stale) {
        uint8_t *frame = malloc(LP_MAX_FRAME);
        struct lp_msg req = { .type = LP_FS_STAT, .path = { "", 0 }, .handle = f->handle }, resp;
        if (!frame) {
            errno = ENOMEM;
            r = -1;
        } else if (!files_call(&req, frame, &resp)) {
            r = -1;
        } else if (resp.status < 0) {
            errno = status_errno(resp.status);
            r = -1;
        } else {
            f->st = resp.st;
            f->st_stale = false;
        }
        free(frame);
    }
    *out = f->st;
    pthread_mutex_unlock(&f->lock);
    return r;
}

int files_refresh(struct file_obj *f)
{
    struct lp_stat st;
    pthread_mutex_lock(&f->lock);
    f->st_stale = true;
    pthread_mutex_unlock(&f->lock);
    return fstat_remote(f, &st);
}

/* 1: not ours (call libc); 0: answered into *out; -1: failed with errno. */
static int stat_common(int dirfd, const char *path, int flags, struct lp_stat *out)
{
    layer_init();
    if (layer_inside() || !files_enabled()) return 1;
    if ((flags & AT_EMPTY_PATH) && path && path[0] == '\0') {
        struct file_obj *f = files_get(dirfd);
        if (!f) return 1;
        int r = fstat_remote(f, out);
        fdtable_put(&f->obj);
        return r;
    }
    char abs[PATH_MAX];
    if (!path || !path[0] || !files_abs_path(dirfd, path, abs, sizeof abs) || !files_should_ask(abs)) return 1;
    int saved = errno;
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) return 1;
    struct lp_msg req = { .type = LP_FS_STAT, .path = { abs, (uint16_t)strlen(abs) },
                          .flags = (uint32_t)(flags & AT_SYMLINK_NOFOLLOW) }, resp;
    int r;
    if (!files_call(&req, frame, &resp)) r = -1;
    else if (resp.status == LP_STATUS_BYPASS) r = 1, errno = saved;
    else if (resp.status < 0) r = -1, errno = status_errno(resp.status);
    else r = 0, *out = resp.st;
    free(frame);
    return r;
}

static int fstat_common(int fd, struct lp_stat *out)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) return 1;
    int r = fstat_remote(f, out);
    fdtable_put(&f->obj);
    return r;
}

#define STAT_BODY(call_real, stat_call, out_conv)                                                  \
    struct lp_stat ls;                                                                             \
    int r = stat_call;                                                                             \
    if (r == 1) return call_real;                                                                  \
    if (r == 0) out_conv;                                                                          \
    return r;

#define REAL_OR_ENOSYS(name, ...) (real_##name##_fn() ? real_##name##_fn()(__VA_ARGS__) : (errno = ENOSYS, -1))

int stat(const char *p, struct stat *b) { STAT_BODY(REAL_OR_ENOSYS(stat, p, b), stat_common(AT_FDCWD, p, 0, &ls), to_stat(&ls, b)) }
int lstat(const char *p, struct stat *b) { STAT_BODY(REAL_OR_ENOSYS(lstat, p, b), stat_common(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, &ls), to_stat(&ls, b)) }
int fstat(int fd, struct stat *b) { STAT_BODY(REAL_OR_ENOSYS(fstat, fd, b), fstat_common(fd, &ls), to_stat(&ls, b)) }
int fstatat(int d, const char *p, struct stat *b, int fl) { STAT_BODY(REAL_OR_ENOSYS(fstatat, d, p, b, fl), stat_common(d, p, fl, &ls), to_stat(&ls, b)) }
/* struct stat64 is struct stat on 64-bit Linux. */
int stat64(const char *p, struct stat64 *b) { STAT_BODY(REAL_OR_ENOSYS(stat64, p, b), stat_common(AT_FDCWD, p, 0, &ls), to_stat(&ls, (struct stat *)b)) }
int lstat64(const char *p, struct stat64 *b) { STAT_BODY(REAL_OR_ENOSYS(lstat64, p, b), stat_common(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, &ls), to_stat(&ls, (struct stat *)b)) }
int fstat64(int fd, struct stat64 *b) { STAT_BODY(REAL_OR_ENOSYS(fstat64, fd, b), fstat_common(fd, &ls), to_stat(&ls, (struct stat *)b)) }
int fstatat64(int d, const char *p, struct stat64 *b, int fl) { STAT_BODY(REAL_OR_ENOSYS(fstatat64, d, p, b, fl), stat_common(d, p, fl, &ls), to_stat(&ls, (struct stat *)b)) }
int __xstat(int v, const char *p, struct stat *b) { STAT_BODY(REAL_OR_ENOSYS(__xstat, v, p, b), stat_common(AT_FDCWD, p, 0, &ls), to_stat(&ls, b)) }
int __lxstat(int v, const char *p, struct stat *b) { STAT_BODY(REAL_OR_ENOSYS(__lxstat, v, p, b), stat_common(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, &ls), to_stat(&ls, b)) }
int __fxstat(int v, int fd, struct stat *b) { STAT_BODY(REAL_OR_ENOSYS(__fxstat, v, fd, b), fstat_common(fd, &ls), to_stat(&ls, b)) }
int __fxstatat(int v, int d, const char *p, struct stat *b, int fl) { STAT_BODY(REAL_OR_ENOSYS(__fxstatat, v, d, p, b, fl), stat_common(d, p, fl, &ls), to_stat(&ls, b)) }
int __xstat64(int v, const char *p, struct stat64 *b) { STAT_BODY(REAL_OR_ENOSYS(__xstat64, v, p, b), stat_common(AT_FDCWD, p, 0, &ls), to_stat(&ls, (struct stat *)b)) }
int __lxstat64(int v, const char *p, struct stat64 *b) { STAT_BODY(REAL_OR_ENOSYS(__lxstat64, v, p, b), stat_common(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, &ls), to_stat(&ls, (struct stat *)b)) }
int __fxstat64(int v, int fd, struct stat64 *b) { STAT_BODY(REAL_OR_ENOSYS(__fxstat64, v, fd, b), fstat_common(fd, &ls), to_stat(&ls, (struct stat *)b)) }
int __fxstatat64(int v, int d, const char *p, struct stat64 *b, int fl) { STAT_BODY(REAL_OR_ENOSYS(__fxstatat64, v, d, p, b, fl), stat_common(d, p, fl, &ls), to_stat(&ls, (struct stat *)b)) }

int statx(int d, const char *p, int fl, unsigned mask, struct statx *b)
{
    struct lp_stat ls;
    int r = stat_common(d, p, fl, &ls);
    if (r == 1) return REAL_OR_ENOSYS(statx, d, p, fl, mask, b);
    if (r == 0) to_statx(&ls, b);
    return r;
}

/* ---- access, readlink ------------------------------------------------------------------------ */

/* Path requests whose answer is a status: 1 = not ours; otherwise the hook's return value. */
static int path_call(struct lp_msg *req, int dirfd, const char *path, char *abs, struct lp_msg *resp, uint8_t **frame)
{
    layer_init();
    *frame = NULL;
    if (layer_inside() || !files_enabled() || !path || !path[0]) return 1;
    if (!files_abs_path(dirfd, path, abs, PATH_MAX) || !files_should_ask(abs)) return 1;
    int saved = errno;
    req->path = (struct lp_str){ abs, (uint16_t)strlen(abs) };
    if (!(*frame = malloc(LP_MAX_FRAME))) return 1;
    if (!files_call(req, *frame, resp)) return -1;
    if (resp->status == LP_STATUS_BYPASS) {
        errno = saved;
        return 1;
    }
    if (resp->status < 0) {
        errno = status_errno(resp->status);
        return -1;
    }
    return 0;
}

static int access_common(int dirfd, const char *path, int mode)
{
    char abs[PATH_MAX];
    uint8_t *frame;
    struct lp_msg req = { .type = LP_FS_ACCESS, .mode = (uint32_t)mode }, resp;
    int r = path_call(&req, dirfd, path, abs, &resp, &frame);
    free(frame);
    return r;
}

int access(const char *path, int mode)
{
    int r = access_common(AT_FDCWD, path, mode);
    return r == 1 ? REAL_OR_ENOSYS(access, path, mode) : r;
}

int faccessat(int dirfd, const char *path, int mode, int flags)
{
    int r = access_common(dirfd, path, mode);
    return r == 1 ? REAL_OR_ENOSYS(faccessat, dirfd, path, mode, flags) : r;
}

static ssize_t readlink_common(int dirfd, const char *path, char *buf, size_t n)
{
    char abs[PATH_MAX];
    uint8_t *frame;
    struct lp_msg req = { .type = LP_FS_READLINK }, resp;
    int r = path_call(&req, dirfd, path, abs, &resp, &frame);
    ssize_t out = r;
    if (r == 0) {
        size_t k = resp.path.len < n ? resp.path.len : n;
        memcpy(buf, resp.path.ptr, k);
        out = (ssize_t)k;
    }
    free(frame);
    return out;
}

ssize_t readlink(const char *path, char *buf, size_t n)
{
    ssize_t r = readlink_common(AT_FDCWD, path, buf, n);
    return r == 1 ? REAL_OR_ENOSYS(readlink, path, buf, n) : r;
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t n)
{
    ssize_t r = readlink_common(dirfd, path, buf, n);
    return r == 1 ? REAL_OR_ENOSYS(readlinkat, dirfd, path, buf, n) : r;
}

/* ---- mkdir, unlink, rmdir, rename (remote only in write mode / read_write rules) ------------ */

static int simple_call(int type, int dirfd, const char *path, uint32_t mode, uint32_t flags)
{
    char abs[PATH_MAX];
    uint8_t *frame;
    struct lp_msg req = { .type = (uint16_t)type, .mode = mode, .flags = flags }, resp;
    int r = path_call(&req, dirfd, path, abs, &resp, &frame);
    free(frame);
    return r;
}

int mkdir(const char *p, mode_t m) { int r = simple_call(LP_FS_MKDIR, AT_FDCWD, p, m, 0); return r == 1 ? REAL_OR_ENOSYS(mkdir, p, m) : r; }
int mkdirat(int d, const char *p, mode_t m) { int r = simple_call(LP_FS_MKDIR, d, p, m, 0); return r == 1 ? REAL_OR_ENOSYS(mkdirat, d, p, m) : r; }
int unlink(const char *p) { int r = simple_call(LP_FS_UNLINK, AT_FDCWD, p, 0, 0); return r == 1 ? REAL_OR_ENOSYS(unlink, p) : r; }
int unlinkat(int d, const char *p, int fl) { int r = simple_call(LP_FS_UNLINK, d, p, 0, (uint32_t)(fl & AT_REMOVEDIR)); return r == 1 ? REAL_OR_ENOSYS(unlinkat, d, p, fl) : r; }
int rmdir(const char *p) { int r = simple_call(LP_FS_UNLINK, AT_FDCWD, p, 0, AT_REMOVEDIR); return r == 1 ? REAL_OR_ENOSYS(rmdir, p) : r; }

static int rename_common(int d1, const char *p1, int d2, const char *p2)
{
    layer_init();
    if (layer_inside() || !files_enabled() || !p1 || !p2) return 1;
    char a1[PATH_MAX], a2[PATH_MAX];
    if (!files_abs_path(d1, p1, a1, sizeof a1) || !files_abs_path(d2, p2, a2, sizeof a2)) return 1;
    if (!files_should_ask(a1) && !files_should_ask(a2)) return 1;
    int saved = errno;
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) return 1;
    struct lp_msg req = { .type = LP_FS_RENAME, .path = { a1, (uint16_t)strlen(a1) }, .path2 = { a2, (uint16_t)strlen(a2) } }, resp;
    int r;
    if (!files_call(&req, frame, &resp)) r = -1;
    else if (resp.status == LP_STATUS_BYPASS) r = 1, errno = saved;
    else if (resp.status < 0) r = -1, errno = status_errno(resp.status);
    else r = 0;
    free(frame);
    return r;
}

int rename(const char *a, const char *b) { int r = rename_common(AT_FDCWD, a, AT_FDCWD, b); return r == 1 ? REAL_OR_ENOSYS(rename, a, b) : r; }
int renameat(int da, const char *a, int db, const char *b) { int r = rename_common(da, a, db, b); return r == 1 ? REAL_OR_ENOSYS(renameat, da, a, db, b) : r; }

/* ---- lseek ------------------------------------------------------------------------------- */

static off64_t file_seek(struct file_obj *f, off64_t off, int whence)
{
    struct lp_stat st;
    if ((whence == SEEK_END || whence == SEEK_DATA || whence == SEEK_HOLE) && fstat_remote(f, &st) < 0) return -1;
    pthread_mutex_lock(&f->lock);
    int64_t base;
    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)f->pos; break;
    case SEEK_END: base = st.size; break;
    case SEEK_DATA: base = 0; if (off >= st.size) { pthread_mutex_unlock(&f->lock); errno = ENXIO; return -1; } break;
    case SEEK_HOLE: base = 0; if (off >= st.size) { pthread_mutex_unlock(&f->lock); errno = ENXIO; return -1; } off = st.size; break;
    default: pthread_mutex_unlock(&f->lock); errno = EINVAL; return -1;
    }
    int64_t to = base + off;
    if (to < 0) {
        pthread_mutex_unlock(&f->lock);
        errno = EINVAL;
        return -1;
    }
    f->pos = (uint64_t)to;
    pthread_mutex_unlock(&f->lock);
    return to;
}

off_t lseek(int fd, off_t off, int whence)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) return real_lseek_fn() ? real_lseek_fn()(fd, off, whence) : (errno = ENOSYS, -1);
    off_t r = (off_t)file_seek(f, off, whence);
    fdtable_put(&f->obj);
    return r;
}

off64_t lseek64(int fd, off64_t off, int whence)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) return real_lseek64_fn() ? real_lseek64_fn()(fd, off, whence) : (errno = ENOSYS, -1);
    off64_t r = file_seek(f, off, whence);
    fdtable_put(&f->obj);
    return r;
}

/* ---- fopen: stdio reads through glibc-internal calls, so a remote FILE uses our functions ---- */

static ssize_t cookie_read(void *c, char *buf, size_t n) { return read((int)(intptr_t)c, buf, n); }
static ssize_t cookie_write(void *c, const char *buf, size_t n) { return write((int)(intptr_t)c, buf, n); }
static int cookie_seek(void *c, off64_t *off, int whence)
{
    off64_t r = lseek64((int)(intptr_t)c, *off, whence);
    if (r < 0) return -1;
    *off = r;
    return 0;
}
static int cookie_close(void *c) { return close((int)(intptr_t)c); }

static int fopen_flags(const char *mode)
{
    int flags;
    switch (mode[0]) {
    case 'r': flags = O_RDONLY; break;
    case 'w': flags = O_WRONLY | O_CREAT | O_TRUNC; break;
    case 'a': flags = O_WRONLY | O_CREAT | O_APPEND; break;
    default: return -1;
    }
    for (const char *m = mode + 1; *m && *m != ','; m++) {
        if (*m == '+') flags = (flags & ~O_ACCMODE) | O_RDWR;
        else if (*m == 'e') flags |= O_CLOEXEC;
        else if (*m == 'x') flags |= O_EXCL;
    }
    return flags;
}

static FILE *fopen_common(const char *path, const char *mode, bool *handled)
{
    *handled = false;
    int flags = mode ? fopen_flags(mode) : -1;
    if (flags < 0) return NULL;
    int fd = open_common(AT_FDCWD, path, flags, 0666);
    if (fd == -2) return NULL;
    *handled = true;
    if (fd < 0) return NULL;
    cookie_io_functions_t io = { cookie_read, cookie_write, cookie_seek, cookie_close };
    FILE *fp = fopencookie((void *)(intptr_t)fd, mode, io);
    if (!fp) {
        int err = errno;
        close(fd);
        errno = err;
        return NULL;
    }
    fp->_fileno = fd; /* fileno(fp) names the program's descriptor (I/O still goes through io) */
    return fp;
}

FILE *fopen(const char *path, const char *mode)
{
    bool handled;
    FILE *fp = fopen_common(path, mode, &handled);
    if (handled) return fp;
    return real_fopen_fn() ? real_fopen_fn()(path, mode) : (errno = ENOSYS, NULL);
}

FILE *fopen64(const char *path, const char *mode)
{
    bool handled;
    FILE *fp = fopen_common(path, mode, &handled);
    if (handled) return fp;
    return real_fopen64_fn() ? real_fopen64_fn()(path, mode) : (errno = ENOSYS, NULL);
}

/* ---- copy_file_range / sendfile from a remote descriptor: refuse, callers fall back ---------- */

static bool is_remote(int fd)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (f) fdtable_put(&f->obj);
    return f != NULL;
}

ssize_t copy_file_range(int in, off64_t *oin, int out, off64_t *oout, size_t n, unsigned fl)
{
    if (is_remote(in) || is_remote(out)) {
        errno = EXDEV;
        return -1;
    }
    return REAL_OR_ENOSYS(copy_file_range, in, oin, out, oout, n, fl);
}

ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
    if (is_remote(in) || is_remote(out)) {
        errno = EINVAL;
        return -1;
    }
    return REAL_OR_ENOSYS(sendfile, out, in, off, n);
}

ssize_t sendfile64(int out, int in, off64_t *off, size_t n)
{
    if (is_remote(in) || is_remote(out)) {
        errno = EINVAL;
        return -1;
    }
    return REAL_OR_ENOSYS(sendfile64, out, in, off, n);
}

/* ---- syscall(SYS_statx): libuv (Node's fs.stat*) asks the kernel directly ------------------- */

LAYER_REAL(long, syscall, (long, ...))

long syscall(long number, ...)
{
    va_list ap;
    va_start(ap, number);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_statx && !layer_inside() && files_enabled()) {
        struct lp_stat ls;
        int r = stat_common((int)a1, (const char *)a2, (int)a3, &ls);
        if (r == 0) to_statx(&ls, (struct statx *)a5);
        if (r != 1) return r;
    }
    if (!real_syscall_fn()) {
        errno = ENOSYS;
        return -1;
    }
    return real_syscall_fn()(number, a1, a2, a3, a4, a5, a6);
}
