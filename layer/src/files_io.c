/*
 * Remote files, I/O on an open remote descriptor: read / pread / readv / preadv, write / pwrite /
 * writev, lseek, and refusals for copy_file_range / sendfile from or to one (their callers fall
 * back to read/write). A descriptor not in the table is not ours: BYPASS.
 */
#define _GNU_SOURCE
#include "files_internal.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

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
LAYER_REAL(ssize_t, copy_file_range, (int, off64_t *, int, off64_t *, size_t, unsigned))
LAYER_REAL(ssize_t, sendfile, (int, int, off_t *, size_t))
LAYER_REAL(ssize_t, sendfile64, (int, int, off64_t *, size_t))

/* The remote file behind `fd` (with a reference: fdtable_put), or BYPASS: not ours. */
static detour_t io_file(int fd, struct file_obj **f)
{
    *f = layer_inside() ? NULL : files_get(fd);
    return *f ? detour_handled() : detour_bypass();
}

/* The layer's result `r` as the detour, taken before the reference goes (a last put may close). */
static detour_t io_done(struct file_obj *f, long r)
{
    detour_t d = detour_of(r);
    fdtable_put(&f->obj);
    return d;
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
    struct lp_msg req = { .type = LP_FS_READ,
                          .handle = f->handle,
                          .offset = off,
                          .len = direct ? (uint32_t)(n < LP_FS_MAX_IO ? n : LP_FS_MAX_IO) : FILES_READ_AHEAD },
                  resp;
    if (!files_call_intr(&req, frame, &resp)) {
        free(frame);
        return -1;
    }
    if (resp.status < 0) {
        free(frame);
        errno = files_status_errno(resp.status);
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

/* Every read hook: at the shared offset (`at` NULL) or at *at (< 0: EINVAL); iov when not NULL. */
static detour_t read_detour(int fd, void *buf, size_t n, const struct iovec *iov, int cnt, const off64_t *at,
                            ssize_t *out)
{
    struct file_obj *f;
    if (io_file(fd, &f).kind == DETOUR_BYPASS) return detour_bypass();
    uint64_t pos = at && *at > 0 ? (uint64_t)*at : 0;
    if (at && *at < 0) errno = EINVAL, *out = -1;
    else if (iov) *out = file_readv(f, iov, cnt, at ? &pos : NULL);
    else *out = file_read(f, buf, n, at ? &pos : NULL);
    return io_done(f, *out);
}

ssize_t read(int fd, void *buf, size_t n)
{
    ssize_t len = -1;
    detour_t d = read_detour(fd, buf, n, NULL, 0, NULL, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(read, fd, buf, n));
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    ssize_t len = -1;
    off64_t at = off;
    detour_t d = read_detour(fd, buf, n, NULL, 0, &at, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(pread, fd, buf, n, off));
}

ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
    ssize_t len = -1;
    detour_t d = read_detour(fd, buf, n, NULL, 0, &off, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(pread64, fd, buf, n, off));
}

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    ssize_t len = -1;
    detour_t d = read_detour(fd, NULL, 0, iov, cnt, NULL, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(readv, fd, iov, cnt));
}

ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t len = -1;
    off64_t at = off;
    detour_t d = read_detour(fd, NULL, 0, iov, cnt, &at, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(preadv, fd, iov, cnt, off));
}

ssize_t preadv64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
    ssize_t len = -1;
    detour_t d = read_detour(fd, NULL, 0, iov, cnt, &off, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(preadv64, fd, iov, cnt, off));
}

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
        struct lp_msg req = { .type = LP_FS_WRITE,
                              .handle = f->handle,
                              .offset = off,
                              .data = (const uint8_t *)src + done,
                              .data_len = (uint32_t)k },
                      resp;
        if (!files_call(&req, frame, &resp)) {
            result = -1;
            break;
        }
        if (resp.status < 0) {
            errno = files_status_errno(resp.status);
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

ssize_t files_write(struct file_obj *f, const void *src, size_t n, const uint64_t *at)
{
    return file_write(f, src, n, at);
}

/* Fills the file from the iovecs in order; stops at a short write. */
static ssize_t file_writev(struct file_obj *f, const struct iovec *iov, int cnt)
{
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
    return total;
}

/* Every write hook: at the shared offset (`at` NULL) or at *at (< 0: EINVAL); iov when not NULL. */
static detour_t write_detour(int fd, const void *buf, size_t n, const struct iovec *iov, int cnt, const off64_t *at,
                             ssize_t *out)
{
    struct file_obj *f;
    if (io_file(fd, &f).kind == DETOUR_BYPASS) return detour_bypass();
    uint64_t pos = at && *at > 0 ? (uint64_t)*at : 0;
    if (at && *at < 0) errno = EINVAL, *out = -1;
    else if (iov) *out = file_writev(f, iov, cnt);
    else *out = file_write(f, buf, n, at ? &pos : NULL);
    return io_done(f, *out);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    ssize_t len = -1;
    detour_t d = write_detour(fd, buf, n, NULL, 0, NULL, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(write, fd, buf, n));
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    ssize_t len = -1;
    off64_t at = off;
    detour_t d = write_detour(fd, buf, n, NULL, 0, &at, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(pwrite, fd, buf, n, off));
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    ssize_t len = -1;
    detour_t d = write_detour(fd, buf, n, NULL, 0, &off, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(pwrite64, fd, buf, n, off));
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    ssize_t len = -1;
    detour_t d = write_detour(fd, NULL, 0, iov, cnt, NULL, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(writev, fd, iov, cnt));
}

/* ---- lseek ------------------------------------------------------------------------------- */

static off64_t file_seek(struct file_obj *f, off64_t off, int whence)
{
    struct lp_stat st;
    if ((whence == SEEK_END || whence == SEEK_DATA || whence == SEEK_HOLE) && files_fstat_remote(f, &st) < 0) return -1;
    pthread_mutex_lock(&f->lock);
    int64_t base;
    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)f->pos; break;
    case SEEK_END: base = st.size; break;
    case SEEK_DATA:
        base = 0;
        if (off >= st.size) {
            pthread_mutex_unlock(&f->lock);
            errno = ENXIO;
            return -1;
        }
        break;
    case SEEK_HOLE:
        base = 0;
        if (off >= st.size) {
            pthread_mutex_unlock(&f->lock);
            errno = ENXIO;
            return -1;
        }
        off = st.size;
        break;
    default:
        pthread_mutex_unlock(&f->lock);
        errno = EINVAL;
        return -1;
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

static detour_t seek_detour(int fd, off64_t off, int whence, off64_t *out)
{
    struct file_obj *f;
    if (io_file(fd, &f).kind == DETOUR_BYPASS) return detour_bypass();
    *out = file_seek(f, off, whence);
    return io_done(f, *out);
}

off_t lseek(int fd, off_t off, int whence)
{
    off64_t to = -1;
    detour_t d = seek_detour(fd, off, whence, &to);
    return DETOUR_APPLY(d, (off_t)to, -1, REAL_OR_ENOSYS(lseek, fd, off, whence));
}

off64_t lseek64(int fd, off64_t off, int whence)
{
    off64_t to = -1;
    detour_t d = seek_detour(fd, off, whence, &to);
    return DETOUR_APPLY(d, to, -1, REAL_OR_ENOSYS(lseek64, fd, off, whence));
}

/* ---- copy_file_range / sendfile from a remote descriptor: refuse, callers fall back ---------- */

static detour_t refuse_remote(int in, int out, int err)
{
    struct file_obj *f;
    if (io_file(in, &f).kind == DETOUR_BYPASS && io_file(out, &f).kind == DETOUR_BYPASS) return detour_bypass();
    fdtable_put(&f->obj);
    return detour_fail(err);
}

ssize_t copy_file_range(int in, off64_t *oin, int out, off64_t *oout, size_t n, unsigned fl)
{
    detour_t d = refuse_remote(in, out, EXDEV);
    return DETOUR_APPLY(d, -1, -1, REAL_OR_ENOSYS(copy_file_range, in, oin, out, oout, n, fl));
}

ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
    detour_t d = refuse_remote(in, out, EINVAL);
    return DETOUR_APPLY(d, -1, -1, REAL_OR_ENOSYS(sendfile, out, in, off, n));
}

ssize_t sendfile64(int out, int in, off64_t *off, size_t n)
{
    detour_t d = refuse_remote(in, out, EINVAL);
    return DETOUR_APPLY(d, -1, -1, REAL_OR_ENOSYS(sendfile64, out, in, off, n));
}
