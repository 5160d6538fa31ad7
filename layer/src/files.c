/*
 * Remote files (see files.h), what every family shares: the settings (MIRRORD_FS*), absolute
 * paths, the intproxy calls, the descriptor kind and the remote open. The hooks are by family in
 * files_open.c, files_io.c, files_stat.c, files_paths.c (and dirs.c, mmap.c, files_exec.c).
 */
#define _GNU_SOURCE
#include "errors.h"
#include "files_internal.h"
#include "intproxy_conn.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

LAYER_REAL(int, close, (int))
LAYER_REAL(ssize_t, readlink, (const char *, char *, size_t))

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
    const char *mode = layer_setting("MIRRORD_FS");
    enabled = layer_config()->enabled && mode && strcmp(mode, "on") == 0;
    const char *l = layer_setting("MIRRORD_FS_LOCAL"), *a = layer_setting("MIRRORD_FS_ASK");
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

bool files_call_intr(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp)
{
    int r = intproxy_call_intr(req, frame, resp);
    if (r < 0) errno = r == INTPROXY_INTERRUPTED ? EINTR : EIO;
    return r == 0;
}

int files_status_errno(int32_t status) { return errors_connect_errno(status); }

/* ---- the descriptor kind ------------------------------------------------------------------- */

static void file_destroy(struct fd_obj *obj)
{
    struct file_obj *f = (struct file_obj *)obj;
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (frame) {
        struct lp_msg req = { .type = LP_FS_CLOSE, .handle = f->handle }, resp;
        if (intproxy_call(&req, frame, &resp) == 0 && resp.status < 0)
            layer_log(LOG_DEBUG, "close %s: %s", f->path, strerror(files_status_errno(resp.status)));
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
    if (to == STDIN_FILENO && !f->is_dir && (f->flags & O_ACCMODE) == O_RDONLY && !layer_inside())
        files_materialize(to, f);
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

detour_t files_open_remote(const char *abs, int flags, mode_t mode, int *out)
{
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) return detour_fail(ENOMEM);
    struct lp_msg req = { .type = LP_FS_OPEN,
                          .path = { abs, (uint16_t)strlen(abs) },
                          .flags = (uint32_t)flags,
                          .mode = (uint32_t)mode },
                  resp;
    bool called = files_call(&req, frame, &resp);
    free(frame);
    if (!called) return detour_fail(errno);
    if (resp.status == LP_STATUS_BYPASS) return detour_bypass();
    if (resp.status != LP_STATUS_OK) {
        int err = files_status_errno(resp.status);
        layer_log(LOG_DEBUG, "open %s remotely: %s", abs, strerror(err));
        return detour_fail(err);
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
        return detour_fail(err);
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
        return detour_fail(err);
    }
    layer_log(LOG_DEBUG, "open %s remotely: fd %d (handle %u)", abs, fd, (unsigned)f->handle);
    *out = fd;
    return detour_handled();
}
