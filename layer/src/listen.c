/*
 * Listening sockets: bind / listen / accept / accept4 / getsockname. Incoming traffic of the
 * target is dialled by the intproxy into the program's real local listener, so payload never passes
 * through here; these hooks only make the illusion hold:
 * - bind of a port the machine will not give (80 as non-root, a port in use, an address that only
 *   exists in the target) binds what it can and remembers what was asked; getsockname reports that;
 * - bind of a port listed in feature.network.incoming.listen_ports (MIRRORD_LISTEN_PORTS) binds
 *   the port it maps to, or fails as that bind fails (EADDRINUSE), as mirrord does;
 * - listen tells the intproxy (LISTEN) which remote port to subscribe and where to dial;
 * - accept asks (ACCEPT) which remote client a connection from the intproxy stands for, and
 *   reports it, as does getpeername later; on the fast path (ACCEPT_TAKE) that connection is only a
 *   placeholder, replaced by the stolen connection itself, taken from the socket helper.
 */
#define _GNU_SOURCE
#include "listen.h"
#include "detour.h"
#include "fdtable.h"
#include "layer.h"
#include "intproxy_conn.h"
#include "socket.h"
#include "fdpass.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

LAYER_REAL(int, bind, (int, const struct sockaddr *, socklen_t))
LAYER_REAL(int, listen, (int, int))
LAYER_REAL(int, accept, (int, struct sockaddr *, socklen_t *))
LAYER_REAL(int, accept4, (int, struct sockaddr *, socklen_t *, int))
LAYER_REAL(int, getsockname, (int, struct sockaddr *, socklen_t *))
LAYER_REAL(int, getpeername, (int, struct sockaddr *, socklen_t *))

struct listen_obj {
    struct fd_obj obj;
    int family;               /* the socket's own: AF_INET or AF_INET6 */
    struct lp_addr requested; /* what the program asked for */
    struct lp_addr bound;     /* what the layer really got */
    int announced;            /* atomic: the intproxy knows this listener */
};

static void listen_destroy(struct fd_obj *obj)
{
    struct listen_obj *lo = (struct listen_obj *)obj;
    if (__atomic_load_n(&lo->announced, __ATOMIC_ACQUIRE)) {
        uint8_t *frame = malloc(LP_MAX_FRAME);
        struct lp_msg req = { .type = LP_UNLISTEN, .addr = lo->requested }, resp;
        if (frame && intproxy_call(&req, frame, &resp) < 0)
            layer_log(LOG_DEBUG, "unlisten %u: intproxy unreachable", (unsigned)lo->requested.port);
        free(frame);
    }
    free(lo);
}

static const struct fd_kind_ops listen_ops = { .destroy = listen_destroy };

void listen_register(void) { fdtable_register(FD_KIND_LISTEN, &listen_ops); }

/* ---- decisions ---------------------------------------------------------------------------- */

static int is_loopback(const struct lp_addr *a)
{
    static const uint8_t v6_loopback[16] = { [15] = 1 };
    return a->family == 4 ? a->bytes[0] == 127 : memcmp(a->bytes, v6_loopback, 16) == 0;
}

/* Another address to bind when the asked one cannot be had: same address any port, or (for an
 * address this machine lacks) the wildcard address with the same port. */
static void fallback_addr(const struct sockaddr *asked, socklen_t len, int err, struct sockaddr_storage *out)
{
    memcpy(out, asked, len);
    if (out->ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        if (err == EADDRNOTAVAIL) in->sin_addr.s_addr = htonl(INADDR_ANY);
        else in->sin_port = 0;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
        if (err == EADDRNOTAVAIL) in6->sin6_addr = in6addr_any;
        else in6->sin6_port = 0;
    }
}

static int remember(int fd, int family, const struct sockaddr *asked, socklen_t len)
{
    struct listen_obj *lo = calloc(1, sizeof *lo);
    if (!lo) return -1;
    struct sockaddr_storage got;
    socklen_t glen = sizeof got;
    if (socket_from_sockaddr(asked, len, &lo->requested) < 0 ||
        real_getsockname_fn()(fd, (struct sockaddr *)&got, &glen) < 0 ||
        socket_from_sockaddr((struct sockaddr *)&got, glen, &lo->bound) < 0) {
        free(lo);
        return -1;
    }
    lo->family = family;
    fdtable_obj_init(&lo->obj, FD_KIND_LISTEN, fd);
    return fdtable_set(fd, &lo->obj);
}

/* ---- listen_ports ------------------------------------------------------------------------- */

/* MIRRORD_LISTEN_PORTS="asked:used;asked:used" (the CLI writes it from listen_ports). */
#define MAX_LISTEN_PORTS 64
static struct {
    uint16_t asked, used;
} listen_ports[MAX_LISTEN_PORTS];
static unsigned listen_ports_count;
static pthread_once_t listen_ports_once = PTHREAD_ONCE_INIT;

static void listen_ports_load(void)
{
    const char *p = layer_setting("MIRRORD_LISTEN_PORTS");
    while (p && *p && listen_ports_count < MAX_LISTEN_PORTS) {
        char *end;
        unsigned long a = strtoul(p, &end, 10);
        if (*end != ':') break;
        unsigned long u = strtoul(end + 1, &end, 10);
        if (*end != ';' && *end != '\0') break;
        if (a >= 1 && a <= 65535 && u >= 1 && u <= 65535) {
            listen_ports[listen_ports_count].asked = (uint16_t)a;
            listen_ports[listen_ports_count].used = (uint16_t)u;
            listen_ports_count++;
        }
        p = *end ? end + 1 : end;
    }
}

/* The local port a bind of `asked` really uses, or 0 when listen_ports does not name it. */
static uint16_t listen_port_for(uint16_t asked)
{
    pthread_once(&listen_ports_once, listen_ports_load);
    for (unsigned i = 0; asked && i < listen_ports_count; i++)
        if (listen_ports[i].asked == asked) return listen_ports[i].used;
    return 0;
}

static uint16_t port_of(const struct sockaddr *sa)
{
    return ntohs(sa->sa_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                          : ((const struct sockaddr_in6 *)sa)->sin6_port);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET) ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* ---- exported hooks ----------------------------------------------------------------------- */

/* bind of a TCP socket: what the machine gives, the asked address remembered (HANDLED: 0). */
static detour_t bind_detour(int fd, const struct sockaddr *addr, socklen_t len)
{
    int family;
    if (layer_inside() || !layer_config()->enabled || !addr || len > sizeof(struct sockaddr_storage) ||
        (family = socket_tcp_family(fd)) == 0 || addr->sa_family != family)
        return detour_bypass();

    uint16_t used = len >= (family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6))
                        ? listen_port_for(port_of(addr))
                        : 0;
    if (used) {
        /* listen_ports: that port or nothing (an address only the target has: the wildcard). */
        struct sockaddr_storage alt;
        memcpy(&alt, addr, len);
        set_port(&alt, used);
        int r = real_bind_fn()(fd, (struct sockaddr *)&alt, len);
        if (r < 0 && errno == EADDRNOTAVAIL) {
            fallback_addr((struct sockaddr *)&alt, len, EADDRNOTAVAIL, &alt);
            r = real_bind_fn()(fd, (struct sockaddr *)&alt, len);
        }
        if (r < 0) return detour_fail(errno);
        layer_log(LOG_DEBUG, "bind fd %d: port %u bound as %u (listen_ports)", fd, (unsigned)port_of(addr),
                  (unsigned)used);
        layer_enter();
        remember(fd, family, addr, len);
        layer_leave();
        return detour_handled();
    }

    int r = real_bind_fn()(fd, addr, len);
    if (r < 0) {
        int err = errno;
        if (err != EACCES && err != EADDRINUSE && err != EADDRNOTAVAIL) return detour_fail(err);
        struct sockaddr_storage alt;
        fallback_addr(addr, len, err, &alt);
        r = real_bind_fn()(fd, (struct sockaddr *)&alt, len);
        if (r < 0 && err == EADDRNOTAVAIL && (errno == EACCES || errno == EADDRINUSE)) {
            fallback_addr((struct sockaddr *)&alt, len, errno, &alt);
            r = real_bind_fn()(fd, (struct sockaddr *)&alt, len);
        }
        if (r < 0) return detour_fail(err);
        layer_log(LOG_DEBUG, "bind fd %d: the asked address gave %s; bound another, reporting the asked one", fd,
                  strerror(err));
    }
    layer_enter();
    remember(fd, family, addr, len);
    layer_leave();
    return detour_handled();
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    layer_init();
    if (!real_bind_fn() || !real_getsockname_fn()) {
        errno = ENOSYS;
        return -1;
    }
    detour_t d = bind_detour(fd, addr, len);
    return DETOUR_APPLY(d, 0, -1, real_bind_fn()(fd, addr, len));
}

int listen(int fd, int backlog)
{
    layer_init();
    if (!real_listen_fn()) {
        errno = ENOSYS;
        return -1;
    }
    int r = real_listen_fn()(fd, backlog);
    if (r < 0 || layer_inside() || !layer_config()->enabled) return r;
    struct listen_obj *lo = (struct listen_obj *)fdtable_get(fd, FD_KIND_LISTEN);
    if (!lo) return r;
    if (!__atomic_load_n(&lo->announced, __ATOMIC_ACQUIRE)) {
        uint8_t *frame = malloc(LP_MAX_FRAME);
        struct lp_msg req = { .type = LP_LISTEN, .addr = lo->requested, .addr2 = lo->bound }, resp;
        if (frame && intproxy_call(&req, frame, &resp) == 0 && resp.status == LP_STATUS_OK) {
            __atomic_store_n(&lo->announced, 1, __ATOMIC_RELEASE);
            layer_log(LOG_DEBUG, "listen fd %d: port %u subscribed in the target", fd, (unsigned)lo->requested.port);
        }
        free(frame);
    }
    fdtable_put(&lo->obj);
    return r;
}

/* The fast path: ACCEPT_TAKE, and the stolen connection swapped onto `cfd`. 1: taken (`remote`
 * set); 0: the intproxy answered as ACCEPT would (`*found`, `remote`); -1: ask ACCEPT. */
static int take_stolen(int cfd, int family, const struct lp_addr *peer_lp, uint8_t *frame, struct lp_addr *remote,
                       int *found)
{
    struct lp_msg req = { .type = LP_ACCEPT_TAKE, .addr = *peer_lp }, resp;
    if (intproxy_call(&req, frame, &resp) < 0) return -1;
    if (resp.status == LP_STATUS_OK) {
        *remote = resp.addr;
        *found = 1;
        return 0;
    }
    if (resp.status != LP_STATUS_TAKE_SOCKET) return 0;
    /* An IPv6 client cannot be an AF_INET listener's: that one keeps the stream. */
    if ((family == AF_INET && resp.addr.family != 4) || resp.take.len == 0 || resp.take.len > 64) return -1;
    char id[65];
    memcpy(id, resp.take.ptr, resp.take.len);
    id[resp.take.len] = 0;
    *remote = resp.addr;
    if (fdpass_take_stolen(cfd, id) < 0) {
        layer_log(LOG_DEBUG, "accept fd %d: the stolen connection could not be taken: using the stream", cfd);
        return -1;
    }
    return 1;
}

/* The remote client behind a connection the intproxy dialled in, reported and remembered; on the
 * fast path the connection itself, taken from the target (docs/fast-path.md, "Incoming"). */
static int accepted(int lfd, int cfd, struct sockaddr *addr, socklen_t *addrlen, const struct sockaddr_storage *peer,
                    socklen_t plen)
{
    struct listen_obj *lo = layer_inside() ? NULL : (struct listen_obj *)fdtable_get(lfd, FD_KIND_LISTEN);
    struct lp_addr peer_lp, remote;
    int found = 0, took = 0;
    int family = lo ? lo->family : AF_INET;
    if (lo && __atomic_load_n(&lo->announced, __ATOMIC_ACQUIRE) &&
        socket_from_sockaddr((const struct sockaddr *)peer, plen, &peer_lp) == 0 && is_loopback(&peer_lp)) {
        uint8_t *frame = malloc(LP_MAX_FRAME);
        int t = frame && fdpass_can_take() ? take_stolen(cfd, family, &peer_lp, frame, &remote, &found) : -1;
        if (t == 1) {
            took = found = 1;
        } else if (t < 0 && frame) {
            struct lp_msg req = { .type = LP_ACCEPT, .addr = peer_lp }, resp;
            if (intproxy_call(&req, frame, &resp) == 0 && resp.status == LP_STATUS_OK) {
                remote = resp.addr;
                found = 1;
            }
        }
        free(frame);
    }
    if (lo) fdtable_put(&lo->obj);
    struct sockaddr_storage out;
    socklen_t olen = plen;
    memcpy(&out, peer, plen);
    if (took) {
        /* The kernel's own peer now: the real client, in the listener's family. */
        struct sockaddr_storage real;
        socklen_t rlen = sizeof real;
        struct lp_addr real_lp;
        int domain = 0;
        socklen_t dlen = sizeof domain;
        if (real_getpeername_fn()(cfd, (struct sockaddr *)&real, &rlen) == 0 &&
            socket_from_sockaddr((struct sockaddr *)&real, rlen, &real_lp) == 0)
            remote = real_lp;
        olen = socket_to_sockaddr(&remote, family, &out);
        /* The agent's socket is dual-stack: an AF_INET listener's program gets an AF_INET6 socket,
         * whose getpeername the layer then reports in the listener's family. */
        if (getsockopt(cfd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) == 0 && domain != family)
            socket_remember_peer(cfd, &remote, family);
        char text[INET6_ADDRSTRLEN] = "?";
        inet_ntop(remote.family == 4 ? AF_INET : AF_INET6, remote.bytes, text, sizeof text);
        layer_log(LOG_DEBUG, "accept fd %d: connection taken from the target (client %s:%u)", cfd, text,
                  (unsigned)remote.port);
        if (olen == 0) {
            olen = plen;
            memcpy(&out, peer, plen);
        }
    } else if (found && (olen = socket_to_sockaddr(&remote, family, &out)) > 0) {
        socket_remember_peer(cfd, &remote, family);
    } else {
        olen = plen;
        memcpy(&out, peer, plen);
    }
    if (addr && addrlen) {
        memcpy(addr, &out, *addrlen < olen ? *addrlen : olen);
        *addrlen = olen;
    }
    return cfd;
}

/* accept() is accept4() without flags to the kernel, but each keeps its own libc entry point. */
static int accept_common(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags, bool four)
{
    layer_init();
    if (four ? !real_accept4_fn() : !real_accept_fn()) {
        errno = ENOSYS;
        return -1;
    }
    bool ours = !layer_inside() && layer_config()->enabled && fdtable_any();
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    struct sockaddr *pa = ours ? (struct sockaddr *)&peer : addr;
    socklen_t *pl = ours ? &plen : addrlen;
    int c = four ? real_accept4_fn()(fd, pa, pl, flags) : real_accept_fn()(fd, pa, pl);
    if (c < 0 || !ours) return c;
    return accepted(fd, c, addr, addrlen, &peer, plen);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    return accept_common(fd, addr, addrlen, flags, true);
}

int accept(int fd, struct sockaddr *addr, socklen_t *addrlen) { return accept_common(fd, addr, addrlen, 0, false); }

int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
    layer_init();
    if (!real_getsockname_fn()) {
        errno = ENOSYS;
        return -1;
    }
    int r = real_getsockname_fn()(fd, addr, len);
    if (r < 0 || !addr || !len || layer_inside() || !fdtable_any()) return r;
    struct listen_obj *lo = (struct listen_obj *)fdtable_get(fd, FD_KIND_LISTEN);
    if (!lo) return r;
    struct lp_addr shown = lo->requested;
    if (shown.port == 0) shown.port = lo->bound.port; /* port 0 asked: the one the kernel chose */
    struct sockaddr_storage out;
    socklen_t olen = socket_to_sockaddr(&shown, lo->family, &out);
    fdtable_put(&lo->obj);
    if (olen == 0) return r;
    socklen_t cap = *len;
    memcpy(addr, &out, cap < olen ? cap : olen);
    *len = olen;
    return 0;
}
