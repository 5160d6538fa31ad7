/*
 * getaddrinfo / freeaddrinfo / gethostbyname family. Numeric hosts, NULL nodes and
 * AI_NUMERICHOST stay with libc; names go to the intproxy, which answers addresses (or "bypass").
 * The layer itself expands service and socktype, letting glibc do it on a numeric placeholder
 * host so that ports, protocols, entry order and EAI_SERVICE/EAI_SOCKTYPE match glibc exactly.
 */
#define _GNU_SOURCE
#include "dns.h"
#include "detour.h"
#include "errors.h"
#include "layer.h"
#include "intproxy_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

LAYER_REAL(int, getaddrinfo, (const char *, const char *, const struct addrinfo *, struct addrinfo **))
LAYER_REAL(void, freeaddrinfo, (struct addrinfo *))
LAYER_REAL(struct hostent *, gethostbyname, (const char *))
LAYER_REAL(struct hostent *, gethostbyname2, (const char *, int))
LAYER_REAL(int, gethostbyname_r, (const char *, struct hostent *, char *, size_t, struct hostent **, int *))
LAYER_REAL(int, gethostbyname2_r, (const char *, int, struct hostent *, char *, size_t, struct hostent **, int *))

#define MAX_NODE 1024 /* NI_MAXHOST - 1: longer names are for libc to reject */

/* ---- registry of lists this layer returned, so freeaddrinfo frees only its own ------------ */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct addrinfo **registry;
static size_t registry_len, registry_cap;

static bool registry_add(struct addrinfo *ai)
{
    bool ok = true;
    pthread_mutex_lock(&registry_lock);
    if (registry_len == registry_cap) {
        size_t n = registry_cap ? registry_cap * 2 : 16;
        struct addrinfo **grown = realloc(registry, n * sizeof *grown);
        if (grown) {
            registry = grown;
            registry_cap = n;
        } else {
            ok = false;
        }
    }
    if (ok) registry[registry_len++] = ai;
    pthread_mutex_unlock(&registry_lock);
    return ok;
}

static bool registry_remove(struct addrinfo *ai)
{
    bool found = false;
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < registry_len; i++) {
        if (registry[i] == ai) {
            registry[i] = registry[--registry_len];
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

void dns_fork_prepare(void) { pthread_mutex_lock(&registry_lock); }
void dns_fork_release(void) { pthread_mutex_unlock(&registry_lock); }

static void free_list(struct addrinfo *ai)
{
    while (ai) {
        struct addrinfo *next = ai->ai_next;
        free(ai->ai_canonname);
        free(ai);
        ai = next;
    }
}

/* ---- decision ---------------------------------------------------------------------------- */

static bool is_numeric_host(const char *node)
{
    struct in_addr a;
    /* inet_aton accepts what glibc's getaddrinfo treats as numeric ("127.1", "0x7f.1");
     * any ':' means an IPv6 literal (possibly with a %scope). */
    return inet_aton(node, &a) != 0 || strchr(node, ':') != NULL;
}

static bool should_ask(const char *node)
{
    layer_init();
    return layer_config()->enabled && !layer_inside() && node && *node && strlen(node) <= MAX_NODE &&
           !is_numeric_host(node);
}

/* ---- proxy logic ------------------------------------------------------------------------- */

/* HANDLED with `resp` pointing into *frame (caller frees), BYPASS, or FAILED with an EAI code. */
static detour_t ask_intproxy(const char *node, int family, uint8_t **frame, struct lp_msg *resp)
{
    *frame = malloc(LP_MAX_FRAME);
    if (!*frame) return detour_fail(EAI_MEMORY);
    struct lp_msg req = { .type = LP_GETADDRINFO, .node = { node, (uint16_t)strlen(node) }, .family = family };
    detour_t d;
    if (intproxy_call(&req, *frame, resp) < 0) d = detour_fail(LAYER_GAI_UNAVAILABLE);
    else if (resp->status == LP_STATUS_OK) d = detour_handled();
    else if (resp->status == LP_STATUS_BYPASS) d = detour_bypass();
    else d = detour_fail(errors_gai(resp->status));
    layer_log(LOG_DEBUG, "resolve %s (family %d): %s", node, family,
              d.kind == DETOUR_HANDLED  ? "answered"
              : d.kind == DETOUR_BYPASS ? "bypass"
                                        : gai_strerror(d.err));
    if (d.kind != DETOUR_HANDLED) {
        free(*frame);
        *frame = NULL;
    }
    return d;
}

static struct addrinfo *new_entry(const struct addrinfo *tmpl, int flags, int family, const uint8_t *bytes)
{
    struct addrinfo *ai = calloc(1, sizeof *ai + sizeof(struct sockaddr_in6));
    if (!ai) return NULL;
    /* Same shape as glibc's (address in the same block), so even glibc's freeaddrinfo could free it. */
    ai->ai_addr = (struct sockaddr *)(ai + 1);
    ai->ai_flags = flags;
    ai->ai_family = family;
    ai->ai_socktype = tmpl->ai_socktype;
    ai->ai_protocol = tmpl->ai_protocol;
    in_port_t port = ((const struct sockaddr_in *)tmpl->ai_addr)->sin_port;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ai->ai_addr;
        in->sin_family = AF_INET;
        in->sin_port = port;
        memcpy(&in->sin_addr, bytes, 4);
        ai->ai_addrlen = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ai->ai_addr;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = port;
        memcpy(&in6->sin6_addr, bytes, 16);
        ai->ai_addrlen = sizeof *in6;
    }
    return ai;
}

/* Builds the list: for each kept address (intproxy order), one entry per template socktype. */
static int build_list(const struct lp_msg *resp, const struct addrinfo *tmpl, const char *node, int flags, int family,
                      struct addrinfo **out)
{
    bool have_v6 = false;
    for (unsigned i = 0; i < resp->count; i++) have_v6 |= resp->entries[i * LP_GAI_ENTRY_SIZE] == 6;
    bool mapped = family == AF_INET6 && (flags & AI_V4MAPPED) && (!have_v6 || (flags & AI_ALL));
    struct addrinfo *head = NULL, **tail = &head;
    for (unsigned i = 0; i < resp->count; i++) {
        uint8_t fam, bytes[16];
        lp_entry(resp, i, &fam, bytes);
        int ai_family;
        if (fam == 4 && (family == AF_UNSPEC || family == AF_INET)) {
            ai_family = AF_INET;
        } else if (fam == 6 && family != AF_INET) {
            ai_family = AF_INET6;
        } else if (fam == 4 && mapped) {
            memmove(bytes + 12, bytes, 4);
            memset(bytes, 0, 10);
            bytes[10] = bytes[11] = 0xff;
            ai_family = AF_INET6;
        } else {
            continue;
        }
        for (const struct addrinfo *t = tmpl; t; t = t->ai_next) {
            struct addrinfo *ai = new_entry(t, flags, ai_family, bytes);
            if (!ai) goto nomem;
            *tail = ai;
            tail = &ai->ai_next;
        }
    }
    if (!head) return EAI_NONAME;
    if (flags & AI_CANONNAME) {
        head->ai_canonname = resp->canonname.len ? strndup(resp->canonname.ptr, resp->canonname.len) : strdup(node);
        if (!head->ai_canonname) goto nomem;
    }
    if (!registry_add(head)) goto nomem;
    *out = head;
    return 0;
nomem:
    free_list(head);
    return EAI_MEMORY;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    if (!real_getaddrinfo_fn()) {
        errno = ENOSYS;
        return EAI_SYSTEM;
    }
    int flags = hints ? hints->ai_flags : (AI_V4MAPPED | AI_ADDRCONFIG);
    int family = hints ? hints->ai_family : AF_UNSPEC;
    if (!res || !should_ask(node) || (flags & AI_NUMERICHOST) ||
        (family != AF_UNSPEC && family != AF_INET && family != AF_INET6))
        return real_getaddrinfo_fn()(node, service, hints, res);

    struct addrinfo th = {
        .ai_flags = (flags & AI_NUMERICSERV) | AI_NUMERICHOST,
        .ai_family = AF_INET,
        .ai_socktype = hints ? hints->ai_socktype : 0,
        .ai_protocol = hints ? hints->ai_protocol : 0,
    };
    struct addrinfo *tmpl = NULL;
    layer_enter();
    int r = real_getaddrinfo_fn()("0.0.0.0", service, &th, &tmpl);
    layer_leave();
    if (r != 0) return r;

    /* AI_V4MAPPED needs the IPv4 answers too, so an AF_INET6 look-up asks for both. */
    int ask_family = family == AF_INET6 && (flags & AI_V4MAPPED) ? AF_UNSPEC : family;
    uint8_t *frame;
    struct lp_msg resp;
    detour_t d = ask_intproxy(node, ask_family, &frame, &resp);
    if (d.kind == DETOUR_BYPASS) {
        /* Local means local all the way: the resolver's own files and UDP queries are not ours. */
        real_freeaddrinfo_fn()(tmpl);
        layer_enter();
        r = real_getaddrinfo_fn()(node, service, hints, res);
        layer_leave();
        return r;
    }
    r = d.err;
    if (d.kind == DETOUR_HANDLED) {
        r = build_list(&resp, tmpl, node, flags, family, res);
        free(frame);
    }
    real_freeaddrinfo_fn()(tmpl);
    if (r == EAI_SYSTEM) errno = EIO;
    return r;
}

void freeaddrinfo(struct addrinfo *ai)
{
    if (ai && registry_remove(ai)) {
        free_list(ai);
        return;
    }
    if (real_freeaddrinfo_fn()) real_freeaddrinfo_fn()(ai);
}

/* ---- gethostbyname family ---------------------------------------------------------------- */

/* Lays a hostent out in the caller's buffer; ERANGE when it does not fit, EAI_NONAME when the
 * answer holds no address of `af`. */
static int fill_hostent(const struct lp_msg *resp, const char *name, int af, struct hostent *h, char *buf,
                        size_t buflen)
{
    uint8_t want = af == AF_INET ? 4 : 6;
    size_t alen = af == AF_INET ? 4 : 16, n = 0;
    for (unsigned i = 0; i < resp->count; i++) n += resp->entries[i * LP_GAI_ENTRY_SIZE] == want;
    if (n == 0) return EAI_NONAME;
    size_t pad = (sizeof(char *) - (uintptr_t)buf % sizeof(char *)) % sizeof(char *);
    size_t namelen = resp->canonname.len ? resp->canonname.len : strlen(name);
    size_t need = pad + (1 + n + 1) * sizeof(char *) + n * alen + namelen + 1;
    if (need > buflen) return ERANGE;
    char **ptrs = (char **)(void *)(buf + pad);
    char *data = (char *)(ptrs + 1 + n + 1);
    h->h_aliases = ptrs;
    ptrs[0] = NULL;
    h->h_addr_list = ptrs + 1;
    size_t k = 0;
    for (unsigned i = 0; i < resp->count; i++) {
        uint8_t fam, bytes[16];
        lp_entry(resp, i, &fam, bytes);
        if (fam != want) continue;
        memcpy(data, bytes, alen);
        h->h_addr_list[k++] = data;
        data += alen;
    }
    h->h_addr_list[k] = NULL;
    memcpy(data, resp->canonname.len ? resp->canonname.ptr : name, namelen);
    data[namelen] = '\0';
    h->h_name = data;
    h->h_addrtype = af;
    h->h_length = (int)alen;
    return 0;
}

/* HANDLED (fill with fill_hostent, then free *frame), BYPASS, or FAILED with an EAI code. */
static detour_t host_ask(const char *name, int af, uint8_t **frame, struct lp_msg *resp)
{
    if (!should_ask(name) || (af != AF_INET && af != AF_INET6)) return detour_bypass();
    return ask_intproxy(name, af, frame, resp);
}

int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen, struct hostent **result,
                     int *h_errnop)
{
    if (!real_gethostbyname2_r_fn()) return ENOSYS;
    uint8_t *frame;
    struct lp_msg resp;
    detour_t d = host_ask(name, af, &frame, &resp);
    if (d.kind == DETOUR_BYPASS) return real_gethostbyname2_r_fn()(name, af, ret, buf, buflen, result, h_errnop);
    *result = NULL;
    int r = d.err;
    if (d.kind == DETOUR_HANDLED) {
        r = fill_hostent(&resp, name, af, ret, buf, buflen);
        free(frame);
        if (r == ERANGE) {
            *h_errnop = NETDB_INTERNAL;
            errno = ERANGE;
            return ERANGE;
        }
    }
    if (r != 0) {
        *h_errnop = errors_h_errno(r);
        return errors_hostent_r(r);
    }
    *result = ret;
    return 0;
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen, struct hostent **result,
                    int *h_errnop)
{
    if (!real_gethostbyname_r_fn()) return ENOSYS;
    if (!should_ask(name)) return real_gethostbyname_r_fn()(name, ret, buf, buflen, result, h_errnop);
    return gethostbyname2_r(name, AF_INET, ret, buf, buflen, result, h_errnop);
}

/* The non-reentrant calls return per-thread storage (glibc's is process-wide; per-thread is
 * never worse), freed at thread exit. */
struct host_tls {
    struct hostent h;
    size_t cap;
    char buf[];
};
static pthread_key_t host_key;
static pthread_once_t host_key_once = PTHREAD_ONCE_INIT;
static void host_key_init(void) { pthread_key_create(&host_key, free); }

struct hostent *gethostbyname2(const char *name, int af)
{
    if (!real_gethostbyname2_fn()) return NULL;
    uint8_t *frame;
    struct lp_msg resp;
    detour_t d = host_ask(name, af, &frame, &resp);
    if (d.kind == DETOUR_BYPASS) return real_gethostbyname2_fn()(name, af);
    if (d.kind == DETOUR_FAILED) {
        h_errno = errors_h_errno(d.err);
        return NULL;
    }
    int r;
    pthread_once(&host_key_once, host_key_init);
    struct host_tls *t = pthread_getspecific(host_key);
    for (;;) {
        r = t ? fill_hostent(&resp, name, af, &t->h, t->buf, t->cap) : ERANGE;
        if (r != ERANGE) break;
        size_t cap = t ? t->cap * 2 : 1024;
        struct host_tls *grown = realloc(t, sizeof *t + cap);
        if (!grown) break;
        t = grown;
        t->cap = cap;
        pthread_setspecific(host_key, t);
    }
    free(frame);
    if (r != 0) {
        h_errno = r == ERANGE ? NETDB_INTERNAL : errors_h_errno(r);
        return NULL;
    }
    return &t->h;
}

struct hostent *gethostbyname(const char *name)
{
    if (!real_gethostbyname_fn()) return NULL;
    if (!should_ask(name)) return real_gethostbyname_fn()(name);
    return gethostbyname2(name, AF_INET);
}
