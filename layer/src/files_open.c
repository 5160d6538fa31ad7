/*
 * Remote files, the open family: open / open64 / openat / openat64, the _FORTIFY_SOURCE
 * __open*_2 entry points, creat / creat64, and fopen / fopen64 (a remote FILE reads through
 * cookie functions calling our read/write/lseek, as stdio uses glibc-internal calls).
 */
#define _GNU_SOURCE
#include "files_internal.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* glibc symbols the headers do not always declare. */
int __open_2(const char *, int);
int __open64_2(const char *, int);
int __openat_2(int, const char *, int);
int __openat64_2(int, const char *, int);

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

detour_t files_open_detour(int dirfd, const char *path, int flags, mode_t mode, int *fd)
{
    layer_init();
    if (layer_inside() || !files_enabled() || !path || (flags & O_PATH)) return detour_bypass();
    char abs[PATH_MAX];
    if (!files_abs_path(dirfd, path, abs, sizeof abs) || !files_should_ask(abs)) return detour_bypass();
    int saved = errno;
    detour_t d = files_open_remote(abs, flags, mode, fd);
    if (d.kind == DETOUR_BYPASS) errno = saved;
    return d;
}

static mode_t va_mode(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

#define OPEN_SHIM(name)                                                          \
    int name(const char *path, int flags, ...)                                   \
    {                                                                            \
        va_list ap;                                                              \
        va_start(ap, flags);                                                     \
        mode_t mode = va_mode(flags, ap);                                        \
        va_end(ap);                                                              \
        int fd = -1;                                                             \
        detour_t d = files_open_detour(AT_FDCWD, path, flags, mode, &fd);        \
        return DETOUR_APPLY(d, fd, -1, REAL_OR_ENOSYS(name, path, flags, mode)); \
    }
OPEN_SHIM(open)
OPEN_SHIM(open64)

#define OPENAT_SHIM(name)                                                               \
    int name(int dirfd, const char *path, int flags, ...)                               \
    {                                                                                   \
        va_list ap;                                                                     \
        va_start(ap, flags);                                                            \
        mode_t mode = va_mode(flags, ap);                                               \
        va_end(ap);                                                                     \
        int fd = -1;                                                                    \
        detour_t d = files_open_detour(dirfd, path, flags, mode, &fd);                  \
        return DETOUR_APPLY(d, fd, -1, REAL_OR_ENOSYS(name, dirfd, path, flags, mode)); \
    }
OPENAT_SHIM(openat)
OPENAT_SHIM(openat64)

#define FORTIFY_OPEN(name, args, dirfd_expr, ...)                          \
    int name args                                                          \
    {                                                                      \
        int fd = -1;                                                       \
        detour_t d = files_open_detour(dirfd_expr, path, flags, 0, &fd);   \
        return DETOUR_APPLY(d, fd, -1, REAL_OR_ENOSYS(name, __VA_ARGS__)); \
    }
FORTIFY_OPEN(__open_2, (const char *path, int flags), AT_FDCWD, path, flags)
FORTIFY_OPEN(__open64_2, (const char *path, int flags), AT_FDCWD, path, flags)
FORTIFY_OPEN(__openat_2, (int dirfd, const char *path, int flags), dirfd, dirfd, path, flags)
FORTIFY_OPEN(__openat64_2, (int dirfd, const char *path, int flags), dirfd, dirfd, path, flags)

int creat(const char *path, mode_t mode)
{
    int fd = -1;
    detour_t d = files_open_detour(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, &fd);
    return DETOUR_APPLY(d, fd, -1, REAL_OR_ENOSYS(creat, path, mode));
}

int creat64(const char *path, mode_t mode)
{
    int fd = -1;
    detour_t d = files_open_detour(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode, &fd);
    return DETOUR_APPLY(d, fd, -1, REAL_OR_ENOSYS(creat64, path, mode));
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

static detour_t fopen_detour(const char *path, const char *mode, FILE **out)
{
    int flags = mode ? fopen_flags(mode) : -1;
    if (flags < 0) return detour_bypass();
    int fd = -1;
    detour_t d = files_open_detour(AT_FDCWD, path, flags, 0666, &fd);
    if (d.kind != DETOUR_HANDLED) return d;
    cookie_io_functions_t io = { cookie_read, cookie_write, cookie_seek, cookie_close };
    FILE *fp = fopencookie((void *)(intptr_t)fd, mode, io);
    if (!fp) {
        int err = errno;
        close(fd);
        return detour_fail(err);
    }
    fp->_fileno = fd; /* fileno(fp) names the program's descriptor (I/O still goes through io) */
    *out = fp;
    return detour_handled();
}

#define FOPEN_SHIM(name)                                                                                           \
    FILE *name(const char *path, const char *mode)                                                                 \
    {                                                                                                              \
        FILE *fp = NULL;                                                                                           \
        detour_t d = fopen_detour(path, mode, &fp);                                                                \
        return DETOUR_APPLY(d, fp, NULL,                                                                           \
                            real_##name##_fn() ? real_##name##_fn()(path, mode) : (errno = ENOSYS, (FILE *)NULL)); \
    }
FOPEN_SHIM(fopen)
FOPEN_SHIM(fopen64)
