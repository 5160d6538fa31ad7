/*
 * Remote files, the stat family: stat / lstat / fstat / fstatat (and their 64 forms), statx, the
 * old __xstat symbols, syscall(SYS_statx) (libuv asks the kernel directly), and access /
 * faccessat.
 */
#define _GNU_SOURCE
#include "files_internal.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* glibc symbols the headers do not always declare. */
int __xstat(int, const char *, struct stat *);
int __lxstat(int, const char *, struct stat *);
int __fxstat(int, int, struct stat *);
int __fxstatat(int, int, const char *, struct stat *, int);
int __xstat64(int, const char *, struct stat64 *);
int __lxstat64(int, const char *, struct stat64 *);
int __fxstat64(int, int, struct stat64 *);
int __fxstatat64(int, int, const char *, struct stat64 *, int);

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

int files_fstat_remote(struct file_obj *f, struct lp_stat *out)
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
            errno = files_status_errno(resp.status);
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
    return files_fstat_remote(f, &st);
}

/* Every stat by path (AT_EMPTY_PATH: of the descriptor `dirfd`): HANDLED with *out filled. */
static detour_t stat_detour(int dirfd, const char *path, int flags, struct lp_stat *out)
{
    layer_init();
    if (layer_inside() || !files_enabled()) return detour_bypass();
    if ((flags & AT_EMPTY_PATH) && path && path[0] == '\0') {
        struct file_obj *f = files_get(dirfd);
        if (!f) return detour_bypass();
        detour_t d = detour_of(files_fstat_remote(f, out));
        fdtable_put(&f->obj);
        return d;
    }
    char abs[PATH_MAX];
    if (!path || !path[0] || !files_abs_path(dirfd, path, abs, sizeof abs) || !files_should_ask(abs))
        return detour_bypass();
    int saved = errno;
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) return detour_bypass();
    struct lp_msg req = { .type = LP_FS_STAT,
                          .path = { abs, (uint16_t)strlen(abs) },
                          .flags = (uint32_t)(flags & AT_SYMLINK_NOFOLLOW) },
                  resp;
    detour_t d;
    if (!files_call(&req, frame, &resp)) d = detour_fail(errno);
    else if (resp.status == LP_STATUS_BYPASS) d = detour_bypass(), errno = saved;
    else if (resp.status < 0) d = detour_fail(files_status_errno(resp.status));
    else d = detour_handled(), *out = resp.st;
    free(frame);
    return d;
}

static detour_t fstat_detour(int fd, struct lp_stat *out)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) return detour_bypass();
    detour_t d = detour_of(files_fstat_remote(f, out));
    fdtable_put(&f->obj);
    return d;
}

/* One stat shim: `detour` fills `ls`, HANDLED converts it into the program's buffer `b`. */
#define STAT_SHIM(ret_decl, detour, real_call)                         \
    ret_decl                                                           \
    {                                                                  \
        struct lp_stat ls;                                             \
        detour_t dt = detour;                                          \
        if (dt.kind == DETOUR_HANDLED) to_stat(&ls, (struct stat *)b); \
        return DETOUR_APPLY(dt, 0, -1, real_call);                     \
    }

#define NOFOLLOW AT_SYMLINK_NOFOLLOW
STAT_SHIM(int stat(const char *p, struct stat *b), stat_detour(AT_FDCWD, p, 0, &ls), REAL_OR_ENOSYS(stat, p, b))
STAT_SHIM(int lstat(const char *p, struct stat *b), stat_detour(AT_FDCWD, p, NOFOLLOW, &ls),
          REAL_OR_ENOSYS(lstat, p, b))
STAT_SHIM(int fstat(int fd, struct stat *b), fstat_detour(fd, &ls), REAL_OR_ENOSYS(fstat, fd, b))
STAT_SHIM(int fstatat(int d, const char *p, struct stat *b, int fl), stat_detour(d, p, fl, &ls),
          REAL_OR_ENOSYS(fstatat, d, p, b, fl))
/* struct stat64 is struct stat on 64-bit Linux. */
STAT_SHIM(int stat64(const char *p, struct stat64 *b), stat_detour(AT_FDCWD, p, 0, &ls), REAL_OR_ENOSYS(stat64, p, b))
STAT_SHIM(int lstat64(const char *p, struct stat64 *b), stat_detour(AT_FDCWD, p, NOFOLLOW, &ls),
          REAL_OR_ENOSYS(lstat64, p, b))
STAT_SHIM(int fstat64(int fd, struct stat64 *b), fstat_detour(fd, &ls), REAL_OR_ENOSYS(fstat64, fd, b))
STAT_SHIM(int fstatat64(int d, const char *p, struct stat64 *b, int fl), stat_detour(d, p, fl, &ls),
          REAL_OR_ENOSYS(fstatat64, d, p, b, fl))
STAT_SHIM(int __xstat(int v, const char *p, struct stat *b), stat_detour(AT_FDCWD, p, 0, &ls),
          REAL_OR_ENOSYS(__xstat, v, p, b))
STAT_SHIM(int __lxstat(int v, const char *p, struct stat *b), stat_detour(AT_FDCWD, p, NOFOLLOW, &ls),
          REAL_OR_ENOSYS(__lxstat, v, p, b))
STAT_SHIM(int __fxstat(int v, int fd, struct stat *b), fstat_detour(fd, &ls), REAL_OR_ENOSYS(__fxstat, v, fd, b))
STAT_SHIM(int __fxstatat(int v, int d, const char *p, struct stat *b, int fl), stat_detour(d, p, fl, &ls),
          REAL_OR_ENOSYS(__fxstatat, v, d, p, b, fl))
STAT_SHIM(int __xstat64(int v, const char *p, struct stat64 *b), stat_detour(AT_FDCWD, p, 0, &ls),
          REAL_OR_ENOSYS(__xstat64, v, p, b))
STAT_SHIM(int __lxstat64(int v, const char *p, struct stat64 *b), stat_detour(AT_FDCWD, p, NOFOLLOW, &ls),
          REAL_OR_ENOSYS(__lxstat64, v, p, b))
STAT_SHIM(int __fxstat64(int v, int fd, struct stat64 *b), fstat_detour(fd, &ls), REAL_OR_ENOSYS(__fxstat64, v, fd, b))
STAT_SHIM(int __fxstatat64(int v, int d, const char *p, struct stat64 *b, int fl), stat_detour(d, p, fl, &ls),
          REAL_OR_ENOSYS(__fxstatat64, v, d, p, b, fl))

int statx(int d, const char *p, int fl, unsigned mask, struct statx *b)
{
    struct lp_stat ls;
    detour_t r = stat_detour(d, p, fl, &ls);
    if (r.kind == DETOUR_HANDLED) to_statx(&ls, b);
    return DETOUR_APPLY(r, 0, -1, REAL_OR_ENOSYS(statx, d, p, fl, mask, b));
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
    detour_t d = detour_bypass();
    if (number == SYS_statx && !layer_inside() && files_enabled()) {
        struct lp_stat ls;
        d = stat_detour((int)a1, (const char *)a2, (int)a3, &ls);
        if (d.kind == DETOUR_HANDLED) to_statx(&ls, (struct statx *)a5);
    }
    return DETOUR_APPLY(d, 0L, -1L, REAL_OR_ENOSYS(syscall, number, a1, a2, a3, a4, a5, a6));
}

/* ---- access --------------------------------------------------------------------------------- */

static detour_t access_detour(int dirfd, const char *path, int mode)
{
    char abs[PATH_MAX];
    uint8_t *frame;
    struct lp_msg req = { .type = LP_FS_ACCESS, .mode = (uint32_t)mode }, resp;
    detour_t d = files_path_call(&req, dirfd, path, abs, &resp, &frame);
    free(frame);
    return d;
}

int access(const char *path, int mode)
{
    detour_t d = access_detour(AT_FDCWD, path, mode);
    return DETOUR_APPLY(d, 0, -1, REAL_OR_ENOSYS(access, path, mode));
}

int faccessat(int dirfd, const char *path, int mode, int flags)
{
    detour_t d = access_detour(dirfd, path, mode);
    return DETOUR_APPLY(d, 0, -1, REAL_OR_ENOSYS(faccessat, dirfd, path, mode, flags));
}
