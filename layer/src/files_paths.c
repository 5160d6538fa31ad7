/*
 * Remote files, requests about a path: readlink / readlinkat, mkdir / mkdirat, unlink / unlinkat /
 * rmdir, rename / renameat (the last ones remote only in write mode / read_write rules).
 */
#define _GNU_SOURCE
#include "files_internal.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

LAYER_REAL(ssize_t, readlink, (const char *, char *, size_t))
LAYER_REAL(ssize_t, readlinkat, (int, const char *, char *, size_t))
LAYER_REAL(int, mkdir, (const char *, mode_t))
LAYER_REAL(int, mkdirat, (int, const char *, mode_t))
LAYER_REAL(int, unlink, (const char *))
LAYER_REAL(int, unlinkat, (int, const char *, int))
LAYER_REAL(int, rmdir, (const char *))
LAYER_REAL(int, rename, (const char *, const char *))
LAYER_REAL(int, renameat, (int, const char *, int, const char *))

detour_t files_path_call(struct lp_msg *req, int dirfd, const char *path, char *abs, struct lp_msg *resp,
                         uint8_t **frame)
{
    layer_init();
    *frame = NULL;
    if (layer_inside() || !files_enabled() || !path || !path[0]) return detour_bypass();
    if (!files_abs_path(dirfd, path, abs, PATH_MAX) || !files_should_ask(abs)) return detour_bypass();
    int saved = errno;
    req->path = (struct lp_str){ abs, (uint16_t)strlen(abs) };
    if (!(*frame = malloc(LP_MAX_FRAME))) return detour_bypass();
    if (!files_call(req, *frame, resp)) return detour_fail(errno);
    if (resp->status == LP_STATUS_BYPASS) {
        errno = saved;
        return detour_bypass();
    }
    if (resp->status < 0) return detour_fail(files_status_errno(resp->status));
    return detour_handled();
}

/* ---- readlink: the target's length is the result, so 1 is a length like any other ----------- */

static detour_t readlink_detour(int dirfd, const char *path, char *buf, size_t n, ssize_t *len)
{
    char abs[PATH_MAX];
    uint8_t *frame;
    struct lp_msg req = { .type = LP_FS_READLINK }, resp;
    detour_t d = files_path_call(&req, dirfd, path, abs, &resp, &frame);
    if (d.kind == DETOUR_HANDLED) {
        size_t k = resp.path.len < n ? resp.path.len : n;
        memcpy(buf, resp.path.ptr, k);
        *len = (ssize_t)k;
    }
    free(frame);
    return d;
}

ssize_t readlink(const char *path, char *buf, size_t n)
{
    ssize_t len = -1;
    detour_t d = readlink_detour(AT_FDCWD, path, buf, n, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(readlink, path, buf, n));
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t n)
{
    ssize_t len = -1;
    detour_t d = readlink_detour(dirfd, path, buf, n, &len);
    return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(readlinkat, dirfd, path, buf, n));
}

/* ---- mkdir, unlink, rmdir, rename (remote only in write mode / read_write rules) ------------ */

static detour_t simple_detour(int type, int dirfd, const char *path, uint32_t mode, uint32_t flags)
{
    char abs[PATH_MAX];
    uint8_t *frame;
    struct lp_msg req = { .type = (uint16_t)type, .mode = mode, .flags = flags }, resp;
    detour_t d = files_path_call(&req, dirfd, path, abs, &resp, &frame);
    free(frame);
    return d;
}

int mkdir(const char *p, mode_t m)
{
    detour_t d = simple_detour(LP_FS_MKDIR, AT_FDCWD, p, m, 0);
    return DETOUR_APPLY(d, 0, -1, REAL_OR_ENOSYS(mkdir, p, m));
}

int mkdirat(int dfd, const char *p, mode_t m)
{
    detour_t d = simple_detour(LP_FS_MKDIR, dfd, p, m, 0);
    return DETOUR_APPLY(d, 0, -1, REAL_OR_ENOSYS(mkdirat, dfd, p, m));
}

int unlink(const char *p)
{
    detour_t d = simple_detour(LP_FS_UNLINK, AT_FDCWD, p, 0, 0);
    return DETOUR_APPLY(d, 0, -1, REAL_OR_ENOSYS(unlink, p));
}

int unlinkat(int dfd, const char *p, int fl)
{
    detour_t d = simple_detour(LP_FS_UNLINK, dfd, p, 0, (uint32_t)(fl & AT_REMOVEDIR));
    return DETOUR_APPLY(d, 0, -1, REAL_OR_ENOSYS(unlinkat, dfd, p, fl));
}

int rmdir(const char *p)
{
    detour_t d = simple_detour(LP_FS_UNLINK, AT_FDCWD, p, 0, AT_REMOVEDIR);
    return DETOUR_APPLY(d, 0, -1, REAL_OR_ENOSYS(rmdir, p));
}

static detour_t rename_detour(int d1, const char *p1, int d2, const char *p2)
{
    layer_init();
    if (layer_inside() || !files_enabled() || !p1 || !p2) return detour_bypass();
    char a1[PATH_MAX], a2[PATH_MAX];
    if (!files_abs_path(d1, p1, a1, sizeof a1) || !files_abs_path(d2, p2, a2, sizeof a2)) return detour_bypass();
    if (!files_should_ask(a1) && !files_should_ask(a2)) return detour_bypass();
    int saved = errno;
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) return detour_bypass();
    struct lp_msg req = { .type = LP_FS_RENAME,
                          .path = { a1, (uint16_t)strlen(a1) },
                          .path2 = { a2, (uint16_t)strlen(a2) } },
                  resp;
    detour_t d;
    if (!files_call(&req, frame, &resp)) d = detour_fail(errno);
    else if (resp.status == LP_STATUS_BYPASS) d = detour_bypass(), errno = saved;
    else if (resp.status < 0) d = detour_fail(files_status_errno(resp.status));
    else d = detour_handled();
    free(frame);
    return d;
}

int rename(const char *a, const char *b)
{
    detour_t d = rename_detour(AT_FDCWD, a, AT_FDCWD, b);
    return DETOUR_APPLY(d, 0, -1, REAL_OR_ENOSYS(rename, a, b));
}

int renameat(int da, const char *a, int db, const char *b)
{
    detour_t d = rename_detour(da, a, db, b);
    return DETOUR_APPLY(d, 0, -1, REAL_OR_ENOSYS(renameat, da, a, db, b));
}
