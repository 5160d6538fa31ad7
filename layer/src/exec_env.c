/*
 * A program may exec with an environment of its own (`execve(path, argv, {"PATH=...", NULL})`,
 * subprocess with env=, a daemon's clearenv()): without LD_PRELOAD the new image would run
 * unintercepted, without MIRRORD_* it would not find the session. So every exec and spawn gets
 * the program's environment plus what it dropped, taken from a snapshot made at init (the
 * program may have unset them in its own environ since; at most MAX_SESSION variables).
 * Variables the program set itself win, except LD_PRELOAD, which must still name the layer (the
 * program's other preloads are kept), unless the program kept the session and removed only the
 * layer: that opt-out (`env -u LD_PRELOAD cmd`) is honoured.
 */
#define _GNU_SOURCE
#include "exec_env.h"
#include "layer.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PRELOAD "LD_PRELOAD="
#define MAX_SESSION 64

/*
 * The snapshot points into the strings the process started with: they are never freed (setenv
 * and unsetenv only change the array), and init must not allocate. A malloc may run the layer's
 * init from its own first call (jemalloc reads /etc/malloc.conf with readlink, holding its lock).
 */
static const char *session[MAX_SESSION]; /* "MIRRORD_X=value" */
static size_t session_count;
static const char *preload_list; /* LD_PRELOAD as the process started */
static pthread_once_t head_once = PTHREAD_ONCE_INIT;
static size_t head; /* length of its entries up to ours (0: not in it) */
static const char *own_path;

static bool has_prefix(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* True when entry `tok` (len bytes of a ':'/' ' list) is this library. */
static bool is_us(const char *tok, size_t len)
{
    if (!own_path) return false;
    const char *base = strrchr(own_path, '/');
    base = base ? base + 1 : own_path;
    size_t blen = strlen(base);
    if (len == strlen(own_path) && strncmp(tok, own_path, len) == 0) return true;
    return len >= blen && strncmp(tok + len - blen, base, blen) == 0 && (len == blen || tok[len - blen - 1] == '/');
}

/* The length of the entries of `list` up to and including ours, or 0 when we are not in it. */
static size_t head_len(const char *list)
{
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ": ");
        if (len > 0 && is_us(p, len)) return (size_t)(p - list) + len;
        p += len + (p[len] ? 1 : 0);
    }
    return 0;
}

/* On first use, not at init: dladdr is the loader's business, best kept out of constructors. */
static void find_head(void)
{
    Dl_info info;
    if (dladdr((void *)exec_env_init, &info) && info.dli_fname) own_path = info.dli_fname;
    head = preload_list ? head_len(preload_list) : 0;
}

void exec_env_init(void)
{
    const char *addr = getenv("MIRRORD_LAYER_ADDR");
    if (!addr || !*addr) return;
    preload_list = getenv("LD_PRELOAD");
    for (char **e = environ; *e && session_count < MAX_SESSION; e++)
        if (has_prefix(*e, "MIRRORD_") && !has_prefix(*e, EXEC_ENV_PARENT "=")) session[session_count++] = *e;
}

/* True when `envp` defines the variable of `entry` ("NAME=..."). */
static bool defines(char *const envp[], const char *entry)
{
    size_t name = strcspn(entry, "=");
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], entry, name + 1) == 0) return true;
    return false;
}

char **exec_env_patch(char *const envp[], pid_t parent)
{
    if (session_count == 0) return NULL;
    pthread_once(&head_once, find_head);
    size_t n = 0;
    const char *theirs = NULL; /* the program's LD_PRELOAD value */
    for (; envp && envp[n]; n++)
        if (has_prefix(envp[n], PRELOAD)) theirs = envp[n] + strlen(PRELOAD);
    bool keep_theirs = head == 0 || (theirs && head_len(theirs) > 0);
    /* The session is still there but the layer was taken out of LD_PRELOAD (`env -u LD_PRELOAD cmd`,
     * `unset LD_PRELOAD` in a script): a deliberate choice, unlike an environment built from scratch,
     * which lacks the session too. It is respected: the new image runs without the layer. */
    if (!keep_theirs && defines(envp, "MIRRORD_LAYER_ADDR=")) return NULL;
    size_t text = 64 + strlen(PRELOAD) + head + 1 + (theirs ? strlen(theirs) : 0);
    size_t slots = n + session_count + 3;
    /* One block: the pointer array, then the strings made here. */
    char **out = malloc(slots * sizeof *out + text);
    if (!out) return NULL;
    char *made = (char *)(out + slots);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (has_prefix(envp[i], EXEC_ENV_PARENT "=")) continue;
        if (has_prefix(envp[i], PRELOAD) && !keep_theirs) continue;
        out[k++] = envp[i];
    }
    for (size_t i = 0; i < session_count; i++)
        if (!defines(envp, session[i])) out[k++] = (char *)session[i];
    if (!keep_theirs) {
        int w = snprintf(made, text, "%s%.*s%s%s", PRELOAD, (int)head, preload_list, theirs && *theirs ? ":" : "",
                         theirs ? theirs : "");
        out[k++] = made;
        made += w + 1;
        text -= (size_t)w + 1;
    }
    if (parent > 0) {
        snprintf(made, text, "%s=%d", EXEC_ENV_PARENT, (int)parent);
        out[k++] = made;
    }
    out[k] = NULL;
    return out;
}

void exec_env_free(char **patched)
{
    int saved = errno;
    free(patched);
    errno = saved;
}
