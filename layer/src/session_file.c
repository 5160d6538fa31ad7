/*
 * The devcontainer session file (written by src/devcontainer/session-file.ts). In a dev container
 * the layer comes from /etc/ld.so.preload into every process, with no MIRRORD_* variable: it finds
 * the session here instead. The file is NUL-separated "NAME=VALUE" entries (values may hold
 * newlines, as environment values can): first "mirrord-session=1", then the layer's settings (the
 * MIRRORD_* variables `mirrord exec` would set), "mirrord.exe=PATH" (the CLI, never intercepted) and
 * "env.NAME=VALUE" for each variable of the target to apply.
 *
 * Liveness: the daemon holds flock(LOCK_EX) on the file for its whole life, so a file whose lock a
 * shared lock can take belongs to a dead daemon (killed, or the container restarted) and is ignored:
 * every call then passes straight to libc, as with no session at all.
 */
#define _GNU_SOURCE
#include "session_file.h"
#include "layer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SESSION_MAX (1 << 20)
#define MAGIC "mirrord-session=1"

/* In .bss: untouched pages cost nothing, and init may not allocate. */
static char text[SESSION_MAX + 1];
static size_t text_len;

/* open, read and close are hooked (remote files): the raw system calls keep init out of them. */
static void raw_close(int fd) { syscall(SYS_close, fd); }

/* Whether DIR is a directory owned by UID that nobody else can write. Raw system calls: stat and
 * open are hooked. */
static bool dir_owned(const char *dir, uid_t uid)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st;
    bool ok = syscall(SYS_fstat, fd, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid &&
              !(st.st_mode & (S_IWGRP | S_IWOTH));
    raw_close(fd);
    return ok;
}

/* PATH's directory belongs to UID, and that directory's own parent to root (nobody else writing
 * either): only root can have made the directory and given it to UID, as the feature's entrypoint
 * does with /run/mirrord. */
static bool dir_given_to(const char *path, uid_t uid)
{
    char dir[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof dir || path[0] != '/') return false;
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return false;
    *slash = '\0';
    if (!dir_owned(dir, uid)) return false;
    slash = strrchr(dir, '/');
    if (!slash) return false;
    if (slash == dir) return dir_owned("/", 0);
    *slash = '\0';
    return dir_owned(dir, 0);
}

bool session_file_load(void)
{
    const char *path = getenv("MIRRORD_SESSION_FILE");
    if (!path || !*path) path = SESSION_FILE_DEFAULT;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return false;
    /* Settings that redirect a process's traffic and files must come from root, from the process's
     * own user, or from the user root gave the session's directory to (the dev container's remote
     * user, whose daemon serves root's processes too: sudo); never from a file another user wrote. */
    struct stat st;
    if (syscall(SYS_fstat, fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        (st.st_uid != 0 && st.st_uid != getuid() && !dir_given_to(path, st.st_uid))) {
        raw_close(fd);
        layer_log(LOG_DEBUG, "session file %s is not root's or this user's: pass-through", path);
        return false;
    }
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        /* Nobody holds it: the daemon that wrote it is gone. */
        raw_close(fd);
        layer_log(LOG_DEBUG, "session file %s is stale (no daemon holds it): pass-through", path);
        return false;
    }
    if (errno != EWOULDBLOCK) {
        raw_close(fd);
        return false;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = syscall(SYS_read, fd, text + n, SESSION_MAX - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
        if (n == SESSION_MAX) break;
    }
    raw_close(fd);
    text[n] = '\0';
    text_len = n;
    if (n == SESSION_MAX || strcmp(text, MAGIC) != 0) {
        layer_log(LOG_ERROR, "session file %s is not one this layer reads: pass-through", path);
        text_len = 0;
        return false;
    }
    return true;
}

/* Calls fn on every entry after the magic one; stops when it returns true. */
static const char *each_entry(bool (*fn)(const char *entry, const void *arg), const void *arg)
{
    for (size_t off = strlen(text) + 1; off < text_len;) {
        const char *e = text + off;
        if (fn(e, arg)) return e;
        off += strlen(e) + 1;
    }
    return NULL;
}

static bool named(const char *entry, const void *arg)
{
    const char *name = arg;
    size_t n = strlen(name);
    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

const char *session_file_get(const char *name)
{
    if (text_len == 0) return NULL;
    const char *e = each_entry(named, name);
    return e ? e + strlen(name) + 1 : NULL;
}

static bool apply(const char *entry, const void *arg)
{
    (void)arg;
    if (strncmp(entry, "env.", 4) != 0) return false;
    const char *name = entry + 4, *eq = strchr(name, '=');
    char buf[256];
    size_t n = eq ? (size_t)(eq - name) : 0;
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, name, n);
    buf[n] = '\0';
    setenv(buf, eq + 1, 1);
    return false;
}

void session_file_apply_env(void)
{
    const char *id = session_file_get("MIRRORD_SESSION");
    if (!id) return;
    /* A process of this session already applied it: its children keep what it changed since
     * (`FOO=x cmd` must win). `env -i` drops the mark, so a fresh environment gets the target's. */
    const char *mark = getenv(SESSION_ENV_MARK);
    if (mark && strcmp(mark, id) == 0) return;
    layer_enter();
    each_entry(apply, NULL);
    setenv(SESSION_ENV_MARK, id, 1);
    layer_leave();
}
