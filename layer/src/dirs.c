/*
 * Remote directories: opendir / fdopendir / readdir / readdir64 / closedir / dirfd / rewinddir /
 * scandir / scandir64. glibc's own DIR reads with internal getdents calls the layer cannot see,
 * so a remote directory gets the layer's own DIR (struct rdir, told apart by its first word: a
 * glibc DIR starts with its descriptor, never this value). Entries come from the intproxy in
 * batches (GETDENTS); "." and ".." are added first, as the kernel lists them.
 */
#define _GNU_SOURCE
#include "detour.h"
#include "files.h"
#include "layer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

LAYER_REAL(DIR *, opendir, (const char *))
LAYER_REAL(DIR *, fdopendir, (int))
LAYER_REAL(struct dirent *, readdir, (DIR *))
LAYER_REAL(struct dirent64 *, readdir64, (DIR *))
LAYER_REAL(int, closedir, (DIR *))
LAYER_REAL(int, dirfd, (DIR *))
LAYER_REAL(void, rewinddir, (DIR *))
LAYER_REAL(int, scandir,
           (const char *, struct dirent ***, int (*)(const struct dirent *),
            int (*)(const struct dirent **, const struct dirent **)))
LAYER_REAL(int, scandir64,
           (const char *, struct dirent64 ***, int (*)(const struct dirent64 *),
            int (*)(const struct dirent64 **, const struct dirent64 **)))

#define RDIR_MAGIC 0xfffffffe4d495252ull /* low word read as an int: negative, never a descriptor */

struct rdir {
    uint64_t magic;
    int fd;             /* the program's descriptor (placeholder), closed by closedir */
    struct file_obj *f; /* a reference */
    uint8_t *batch;     /* raw GETDENTS entries of the current batch */
    size_t batch_len, pos;
    unsigned dots; /* "." and ".." handed out so far */
    bool eof;
    union {
        struct dirent64 d;
        char space[offsetof(struct dirent64, d_name) + NAME_MAX + 1];
    } ent;
};

static struct rdir *ours(DIR *d)
{
    struct rdir *r = (struct rdir *)d;
    return r && r->magic == RDIR_MAGIC ? r : NULL;
}

static DIR *rdir_new(int fd, struct file_obj *f)
{
    struct rdir *r = calloc(1, sizeof *r);
    if (!r) {
        errno = ENOMEM;
        return NULL;
    }
    r->magic = RDIR_MAGIC;
    r->fd = fd;
    r->f = f;
    return (DIR *)r;
}

/* A stable, non-zero stand-in inode (some programs skip entries whose d_ino is 0). */
static uint64_t name_ino(const char *name, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)name[i]) * 1099511628211ull;
    return h ? h : 1;
}

static bool fill(struct rdir *r)
{
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) return false;
    struct lp_msg req = { .type = LP_FS_GETDENTS, .handle = r->f->handle }, resp;
    bool ok = files_call(&req, frame, &resp);
    if (ok && resp.status < 0) {
        errno = (int)-resp.status;
        ok = false;
    }
    if (ok) {
        free(r->batch);
        r->batch = malloc(resp.dents_len ? resp.dents_len : 1);
        if (!r->batch) {
            free(frame);
            errno = ENOMEM;
            return false;
        }
        memcpy(r->batch, resp.dents, resp.dents_len);
        r->batch_len = resp.dents_len;
        r->pos = 0;
        if (resp.dent_count == 0) r->eof = true;
    }
    free(frame);
    return ok;
}

static struct dirent64 *rdir_next(struct rdir *r)
{
    struct dirent64 *d = &r->ent.d;
    if (r->dots < 2) {
        r->dots++;
        memset(d, 0, offsetof(struct dirent64, d_name));
        strcpy(d->d_name, r->dots == 1 ? "." : "..");
        d->d_ino = r->dots;
        d->d_type = DT_DIR;
        d->d_reclen = (unsigned short)sizeof r->ent;
        d->d_off = r->dots;
        return d;
    }
    int saved = errno;
    for (;;) {
        if (r->pos < r->batch_len) {
            struct lp_msg view = { .dents = r->batch, .dents_len = r->batch_len };
            uint64_t ino;
            uint8_t type;
            struct lp_str name;
            if (lp_dent_next(&view, &r->pos, &ino, &type, &name) < 0 || name.len > NAME_MAX) {
                r->pos = r->batch_len;
                continue;
            }
            memset(d, 0, offsetof(struct dirent64, d_name));
            memcpy(d->d_name, name.ptr, name.len);
            d->d_name[name.len] = '\0';
            d->d_ino = ino ? ino : name_ino(name.ptr, name.len);
            d->d_type = type;
            d->d_reclen = (unsigned short)sizeof r->ent;
            d->d_off = (off64_t)(r->dots++);
            return d;
        }
        if (r->eof || !fill(r)) {
            if (r->eof) errno = saved; /* the end is not an error */
            return NULL;
        }
    }
}

/* A DIR the layer made (HANDLED, *r set), or glibc's (BYPASS). */
static detour_t rdir_of(DIR *d, struct rdir **r)
{
    *r = ours(d);
    return *r ? detour_handled() : detour_bypass();
}

/* A remote directory `abs` opened as the layer's DIR (as opendir would). */
static detour_t rdir_open(const char *abs, DIR **out)
{
    int saved = errno, fd = -1;
    detour_t d = files_open_remote(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, &fd);
    if (d.kind == DETOUR_BYPASS) errno = saved;
    if (d.kind != DETOUR_HANDLED) return d;
    struct file_obj *f = files_get(fd);
    *out = f ? rdir_new(fd, f) : NULL;
    if (*out) return detour_handled();
    int err = errno;
    if (f) fdtable_put(&f->obj);
    close(fd);
    return detour_fail(err);
}

static detour_t opendir_detour(const char *path, DIR **out)
{
    layer_init();
    if (layer_inside() || !files_enabled()) return detour_bypass();
    char abs[PATH_MAX];
    if (!files_abs_path(AT_FDCWD, path, abs, sizeof abs) || !files_should_ask(abs)) return detour_bypass();
    return rdir_open(abs, out);
}

DIR *opendir(const char *path)
{
    DIR *dir = NULL;
    detour_t d = opendir_detour(path, &dir);
    return DETOUR_APPLY(d, dir, NULL, real_opendir_fn() ? real_opendir_fn()(path) : (errno = ENOSYS, (DIR *)NULL));
}

static detour_t fdopendir_detour(int fd, DIR **out)
{
    struct file_obj *f = layer_inside() ? NULL : files_get(fd);
    if (!f) return detour_bypass();
    if (!f->is_dir) {
        fdtable_put(&f->obj);
        return detour_fail(ENOTDIR);
    }
    *out = rdir_new(fd, f);
    if (*out) return detour_handled();
    fdtable_put(&f->obj);
    return detour_fail(ENOMEM);
}

DIR *fdopendir(int fd)
{
    DIR *dir = NULL;
    detour_t d = fdopendir_detour(fd, &dir);
    return DETOUR_APPLY(d, dir, NULL, real_fdopendir_fn() ? real_fdopendir_fn()(fd) : (errno = ENOSYS, (DIR *)NULL));
}

/* readdir's NULL (the end, or an error with errno) is a handled answer like any entry. */
struct dirent64 *readdir64(DIR *d)
{
    struct rdir *r;
    if (rdir_of(d, &r).kind == DETOUR_BYPASS)
        return real_readdir64_fn() ? real_readdir64_fn()(d) : (errno = ENOSYS, NULL);
    return rdir_next(r);
}

/* struct dirent and struct dirent64 have the same layout on 64-bit Linux. */
struct dirent *readdir(DIR *d)
{
    struct rdir *r;
    if (rdir_of(d, &r).kind == DETOUR_BYPASS) return real_readdir_fn() ? real_readdir_fn()(d) : (errno = ENOSYS, NULL);
    return (struct dirent *)rdir_next(r);
}

int closedir(DIR *d)
{
    struct rdir *r;
    if (rdir_of(d, &r).kind == DETOUR_BYPASS) return REAL_OR_ENOSYS(closedir, d);
    r->magic = 0;
    fdtable_put(&r->f->obj);
    int rc = close(r->fd);
    free(r->batch);
    free(r);
    return rc;
}

int dirfd(DIR *d)
{
    struct rdir *r;
    if (rdir_of(d, &r).kind == DETOUR_BYPASS) return REAL_OR_ENOSYS(dirfd, d);
    return r->fd;
}

void rewinddir(DIR *d)
{
    struct rdir *r;
    if (rdir_of(d, &r).kind == DETOUR_BYPASS) {
        if (real_rewinddir_fn()) real_rewinddir_fn()(d);
        return;
    }
    /* Re-open remotely: the agent streams a directory once. */
    int fd = -1;
    detour_t o = files_open_remote(r->f->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, &fd);
    struct file_obj *f = o.kind == DETOUR_HANDLED ? files_get(fd) : NULL;
    if (!f) return;
    fdtable_dup(fd, r->fd); /* the program's number now names the fresh handle */
    close(fd);
    fdtable_put(&r->f->obj);
    r->f = f;
    free(r->batch);
    r->batch = NULL;
    r->batch_len = r->pos = 0;
    r->dots = 0;
    r->eof = false;
}

typedef int (*filter64_fn)(const struct dirent64 *);
typedef int (*compar64_fn)(const struct dirent64 **, const struct dirent64 **);

/* scandir over a remote directory: HANDLED with the entry count in *count. */
static detour_t scandir_detour(const char *path, struct dirent64 ***out, filter64_fn filter, compar64_fn compar,
                               int *count)
{
    int saved = errno;
    DIR *d = NULL;
    detour_t o = opendir_detour(path, &d);
    if (o.kind != DETOUR_HANDLED) return o;
    struct dirent64 **list = NULL, *e;
    size_t n = 0, cap = 0;
    int result = 0;
    errno = 0;
    while ((e = readdir64(d))) {
        if (filter && !filter(e)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            struct dirent64 **grown = realloc(list, cap * sizeof *grown);
            if (!grown) {
                result = -1;
                break;
            }
            list = grown;
        }
        size_t size = offsetof(struct dirent64, d_name) + strlen(e->d_name) + 1;
        struct dirent64 *copy = malloc(size);
        if (!copy) {
            result = -1;
            break;
        }
        memcpy(copy, e, size);
        copy->d_reclen = (unsigned short)size;
        list[n++] = copy;
    }
    if (result == 0 && errno != 0) result = -1;
    int err = errno;
    closedir(d);
    if (result < 0) {
        while (n) free(list[--n]);
        free(list);
        return detour_fail(err ? err : ENOMEM);
    }
    if (compar && n > 1) qsort(list, n, sizeof *list, (int (*)(const void *, const void *))compar);
    *out = list;
    errno = saved;
    *count = (int)n;
    return detour_handled();
}

int scandir64(const char *path, struct dirent64 ***out, int (*filter)(const struct dirent64 *),
              int (*compar)(const struct dirent64 **, const struct dirent64 **))
{
    int n = -1;
    detour_t d = scandir_detour(path, out, filter, compar, &n);
    return DETOUR_APPLY(d, n, -1, REAL_OR_ENOSYS(scandir64, path, out, filter, compar));
}

int scandir(const char *path, struct dirent ***out, int (*filter)(const struct dirent *),
            int (*compar)(const struct dirent **, const struct dirent **))
{
    int n = -1;
    detour_t d = scandir_detour(path, (struct dirent64 ***)out, (filter64_fn)(void (*)(void))filter,
                                (compar64_fn)(void (*)(void))compar, &n);
    return DETOUR_APPLY(d, n, -1, REAL_OR_ENOSYS(scandir, path, out, filter, compar));
}
