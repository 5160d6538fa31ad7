/*
 * Init, settings, logging, symbol lookup and the re-entry guard.
 * Settings come from the environment (`mirrord exec` sets them and exec keeps them, so every
 * process of the program and its children sees the same ones) or, when the environment names no
 * intproxy, from a live devcontainer session file (session_file.c).
 */
#define _GNU_SOURCE
#include "layer.h"
#include "dns.h"
#include "exec_env.h"
#include "files.h"
#include "fdtable.h"
#include "intproxy_conn.h"
#include "listen.h"
#include "session_file.h"
#include "socket.h"
#include "udp.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 45000

static struct layer_config config;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static _Thread_local int inside;

bool layer_inside(void) { return inside > 0; }
void layer_enter(void) { inside++; }
void layer_leave(void) { inside--; }

static bool parse_addr(const char *text, struct sockaddr_in *out)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host) return false;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || colon[1] == '\0' || port == 0 || port > 65535) return false;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &out->sin_addr) == 1;
}

/* Every lock of the layer is taken before fork so the child never inherits one held by a thread
 * that does not exist there. Locks are never nested, so this order cannot deadlock. */
static void fork_prepare(void)
{
    intproxy_fork_prepare();
    fdtable_fork_prepare();
    dns_fork_prepare();
}

static void fork_parent(void)
{
    dns_fork_release();
    fdtable_fork_release();
    intproxy_fork_release(false);
}

static void fork_child(void)
{
    dns_fork_release();
    fdtable_fork_release();
    intproxy_fork_release(true);
}

const char *layer_setting(const char *name) { return config.from_file ? session_file_get(name) : getenv(name); }

/* The path of this process's executable into `exe`, or false. The raw system call: readlink is
 * hooked (remote files), and we are inside layer_init. */
static bool own_exe(char *exe, size_t size)
{
    ssize_t n = syscall(SYS_readlink, "/proc/self/exe", exe, size - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    return true;
}

/* True when `entry` (len bytes) names `exe`: its file name, or, holding a '/', any part of its path
 * (`/.vscode-server/` skips every program under an IDE server's directory). */
static bool names_exe(const char *entry, size_t len, const char *exe)
{
    if (len == 0) return false;
    if (memchr(entry, '/', len)) {
        for (const char *p = exe; (p = strchr(p, entry[0])); p++)
            if (strncmp(p, entry, len) == 0) return true;
        return false;
    }
    const char *base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
    return len == strlen(base) && strncmp(entry, base, len) == 0;
}

/*
 * skip_processes: MIRRORD_SKIP_PROCESSES="name;name" (file names of executables, or path parts
 * holding a '/') leaves those programs untouched; their children still check for themselves, since
 * LD_PRELOAD stays.
 */
static bool skipped_process(const char *exe)
{
    const char *list = layer_setting("MIRRORD_SKIP_PROCESSES");
    if (!list || !*list) return false;
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (names_exe(p, len, exe)) {
            layer_log(LOG_DEBUG, "%s is in skip_processes: not intercepted", exe);
            return true;
        }
        p += len + (end ? 1 : 0);
    }
    return false;
}

/* No variable names an intproxy: a devcontainer session, if its file is live and this process is
 * one it covers (not the daemon or its children, not the mirrord CLI itself). */
static const char *session_from_file(const char *exe)
{
    if (getenv(SESSION_DAEMON_MARK) || !session_file_load()) return NULL;
    config.from_file = true;
    const char *cli = session_file_get("mirrord.exe");
    if (cli && strcmp(cli, exe) == 0) {
        layer_log(LOG_DEBUG, "the mirrord CLI is not intercepted");
        return NULL;
    }
    return session_file_get("MIRRORD_LAYER_ADDR");
}

static void init_once_body(void)
{
    const char *level = getenv("MIRRORD_LAYER_LOG");
    if (level && strcmp(level, "debug") == 0) config.log_level = LOG_DEBUG;
    else if (level && strcmp(level, "error") == 0) config.log_level = LOG_ERROR;
    else config.log_level = LOG_OFF;

    /* Undocumented knob so tests can prove "no hang" without waiting 45 s. */
    const char *timeout = getenv("MIRRORD_LAYER_TIMEOUT_MS");
    long ms = timeout ? strtol(timeout, NULL, 10) : 0;
    config.timeout_ms = ms > 0 ? (int)ms : DEFAULT_TIMEOUT_MS;

    char exe[4096];
    if (!own_exe(exe, sizeof exe)) exe[0] = '\0';
    const char *addr = getenv("MIRRORD_LAYER_ADDR");
    /* A set-user/group-ID program is never intercepted: /etc/ld.so.preload loads the layer into it
     * too, and its traffic and files must not follow settings an unprivileged user chose. */
    if (getauxval(AT_SECURE)) addr = NULL;
    else if (!addr || !*addr) addr = session_from_file(exe);
    if (addr && *addr) {
        config.enabled = parse_addr(addr, &config.intproxy);
        if (!config.enabled) layer_log(LOG_ERROR, "ignoring invalid MIRRORD_LAYER_ADDR=%s", addr);
    }
    if (config.enabled && skipped_process(exe)) config.enabled = false;
    exec_env_init();
    /* Set by the exec or spawn that started this image; a stale copy inherited from further up
     * names a process that is not our parent. */
    const char *parent = getenv(EXEC_ENV_PARENT);
    long ppid = parent ? strtol(parent, NULL, 10) : 0;
    if (ppid > 0 && ppid == (long)getppid()) intproxy_set_parent_pid((pid_t)ppid);
    socket_register();
    files_register();
    listen_register();
    udp_register();
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    layer_log(LOG_DEBUG, "loaded, intproxy %s", config.enabled ? addr : "(none: pass-through)");
}

void layer_init(void) { pthread_once(&init_once, init_once_body); }

const struct layer_config *layer_config(void)
{
    layer_init();
    return &config;
}

/* feature.env.load_from_process (MIRRORD_ENV_FROM_PROCESS=1): the environment the CLI computed
 * for the program comes from the intproxy (ENV, paged) and is applied before main(). Only the
 * first process that asks gets it; the others inherit it from there. */
static void env_from_intproxy(void)
{
    const char *on = getenv("MIRRORD_ENV_FROM_PROCESS");
    if (!on || strcmp(on, "1") != 0) return;
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) return;
    unsigned applied = 0;
    for (uint32_t start = 0;;) {
        struct lp_msg req = { .type = LP_ENV, .env_start = start }, resp;
        if (intproxy_call(&req, frame, &resp) < 0) {
            layer_log(LOG_ERROR,
                      "feature.env.load_from_process: the intproxy did not answer; the environment stays local");
            break;
        }
        if (resp.status != 0 || resp.env_count == 0) break;
        size_t pos = 0;
        uint8_t op;
        struct lp_str name, value;
        while (lp_env_next(&resp, &pos, &op, &name, &value) == 0) {
            char *n = strndup(name.ptr, name.len), *v = strndup(value.ptr, value.len);
            if (n && v && *n && !strchr(n, '=')) {
                if (op == LP_ENV_SET) setenv(n, v, 1);
                else unsetenv(n);
                applied++;
            }
            free(n);
            free(v);
        }
        start += resp.env_count;
        if (start >= resp.env_total) break;
    }
    free(frame);
    layer_log(LOG_DEBUG, "feature.env.load_from_process: %u variable(s) applied", applied);
}

/* Early so settings are read before the program starts threads; hooks still call layer_init()
 * because another library's constructor may run before this one. */
__attribute__((constructor)) static void layer_constructor(void)
{
    layer_init();
    /* Here rather than in init: setenv allocates, and init may run inside the allocator's own
     * first call. With `mirrord exec` the CLI merged the environment before starting the program. */
    if (config.enabled && config.from_file) session_file_apply_env();
    else if (config.enabled) env_from_intproxy();
}

void layer_log(int level, const char *fmt, ...)
{
    if (level > config.log_level || level == LOG_OFF) return;
    int saved = errno;
    char line[512];
    int n = snprintf(line, sizeof line, "mirrord-layer[%d]: ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    /* One write() so lines from several processes do not interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
    errno = saved;
}

void *layer_next_symbol(const char *name, void *self)
{
    void *sym = dlsym(RTLD_NEXT, name);
    if (!sym || sym == self) {
        layer_log(LOG_ERROR, "cannot find the real %s", name);
        return NULL;
    }
    return sym;
}
