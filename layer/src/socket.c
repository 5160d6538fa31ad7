/*
 * connect / getpeername (close and the dup family, shared by every kind of descriptor, are in
 * fdtable.c). connect: exported shim -> connect_detour() (decide_connect: handle or pass to
 * libc; then connect_via_intproxy()) -> DETOUR_APPLY (detour.h). Per-fd state remembers the
 * remote address the program asked for (getpeername reports it) and the local `via` address the
 * socket really went to.
 */
#define _GNU_SOURCE
#include "socket.h"
#include "udp.h"
#include "detour.h"
#include "errors.h"
#include "fdtable.h"
#include "layer.h"
#include "intproxy_conn.h"
#include "fdpass.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

LAYER_REAL(int, connect, (int, const struct sockaddr *, socklen_t))
LAYER_REAL(int, getpeername, (int, struct sockaddr *, socklen_t *))
LAYER_REAL(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *))
LAYER_REAL(ssize_t, recvmsg, (int, struct msghdr *, int))

struct fd_state {
    struct sockaddr_storage remote; /* in the socket's own family */
    socklen_t remote_len;
    struct sockaddr_storage via;
    socklen_t via_len;
    ino_t ino; /* the socket itself: a number closed behind our back (close_range) and reused is not it */
};

/* The state lives in the layer's shared descriptor table (fdtable.c), kind FD_KIND_SOCKET: the
 * close and dup hooks below serve sockets and remote files alike. */
struct sock_obj {
    struct fd_obj obj;
    struct fd_state st;
};

static void sock_destroy(struct fd_obj *obj) { free(obj); }

static const struct fd_kind_ops sock_ops = { .destroy = sock_destroy };

void socket_register(void) { fdtable_register(FD_KIND_SOCKET, &sock_ops); }

static void state_set(int fd, const struct fd_state *st)
{
    struct sock_obj *so = malloc(sizeof *so);
    if (!so) return;
    fdtable_obj_init(&so->obj, FD_KIND_SOCKET, -1);
    so->obj.ino = st->ino;
    so->st = *st;
    fdtable_set(fd, &so->obj);
}

static void state_forget(int fd) { fdtable_forget(fd); }

static ino_t inode_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

static bool state_get(int fd, struct fd_state *out)
{
    struct fd_obj *obj = fdtable_get(fd, FD_KIND_SOCKET);
    if (!obj) return false;
    *out = ((struct sock_obj *)obj)->st;
    fdtable_put(obj);
    return true;
}

/* ---- decision ---------------------------------------------------------------------------- */

/* Only TCP over IPv4/IPv6 goes to the intproxy; anything unusual is left for libc to judge. */
static detour_t decide_connect(int fd, const struct sockaddr *addr, socklen_t len, struct lp_addr *remote,
                               int *sock_family, uint8_t *proto)
{
    if (!addr || len < sizeof(sa_family_t)) return detour_bypass();
    int domain = socket_tcp_family(fd);
    *proto = LP_PROTO_TCP;
    if (domain == 0 && (domain = socket_udp_family(fd)) != 0) *proto = LP_PROTO_UDP;
    if (domain == 0) return detour_bypass();
    *sock_family = domain;
    if (addr->sa_family != domain || socket_from_sockaddr(addr, len, remote) < 0) return detour_bypass();
    return detour_handled();
}

/* AF_INET or AF_INET6 for a socket of `type` and `protocol`, else 0 (anything unusual is left for
 * libc to judge). */
static int inet_family(int fd, int want_type, int want_protocol)
{
    int type = 0, domain = 0, protocol = 0;
    socklen_t olen = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) < 0 || type != want_type) return 0;
    olen = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &olen) < 0) return 0;
    olen = sizeof protocol;
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &olen) < 0 || protocol != want_protocol) return 0;
    return domain == AF_INET || domain == AF_INET6 ? domain : 0;
}

int socket_tcp_family(int fd) { return inet_family(fd, SOCK_STREAM, IPPROTO_TCP); }

/* A connected UDP socket then sends and receives through the intproxy's relay with plain send/recv,
 * and getpeername reports the remote. */
int socket_udp_family(int fd) { return inet_family(fd, SOCK_DGRAM, IPPROTO_UDP); }

/* A sockaddr as an lp_addr (an IPv4-mapped IPv6 address becomes family 4); -1 if it is neither. */
int socket_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct lp_addr *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        out->family = 4;
        memcpy(out->bytes, &in->sin_addr, 4);
        out->port = ntohs(in->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            out->family = 4;
            memcpy(out->bytes, in6->sin6_addr.s6_addr + 12, 4);
        } else {
            out->family = 6;
            memcpy(out->bytes, &in6->sin6_addr, 16);
        }
        out->port = ntohs(in6->sin6_port);
        return 0;
    }
    return -1;
}

/* An lp_addr as a sockaddr of `sock_family` (v4 in a v6 socket becomes ::ffff:a.b.c.d). */
socklen_t socket_to_sockaddr(const struct lp_addr *a, int sock_family, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (sock_family == AF_INET) {
        if (a->family != 4) return 0;
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        in->sin_family = AF_INET;
        in->sin_port = htons(a->port);
        memcpy(&in->sin_addr, a->bytes, 4);
        return sizeof *in;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(a->port);
    if (a->family == 4) {
        in6->sin6_addr.s6_addr[10] = 0xff;
        in6->sin6_addr.s6_addr[11] = 0xff;
        memcpy(in6->sin6_addr.s6_addr + 12, a->bytes, 4);
    } else {
        memcpy(&in6->sin6_addr, a->bytes, 16);
    }
    return sizeof *in6;
}

static const char *addr_text(const struct lp_addr *a, char *buf, size_t n)
{
    inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->bytes, buf, (socklen_t)n);
    return buf;
}

/* ---- proxy logic ------------------------------------------------------------------------- */

#define TAKE_FAILED (-2)

/*
 * The fast path: `fd` becomes a socket made in the target's namespace and the kernel connects it to
 * `to` (the remote, as the intproxy routed it). Returns the real connect's result (errno kept), or
 * TAKE_FAILED with `fd` untouched. Remembered like a stream connect so that polling connect() again
 * reaches the same socket instead of asking for another.
 */
static int connect_taken(int fd, const struct lp_addr *remote, const struct lp_addr *to, int sock_family,
                         const char *text, int *out)
{
    struct fd_state st;
    st.via_len = socket_to_sockaddr(to, sock_family, &st.via);
    st.remote_len = socket_to_sockaddr(remote, sock_family, &st.remote);
    if (st.via_len == 0 || fdpass_take(fd) < 0) {
        layer_log(LOG_DEBUG, "connect fd %d to %s:%u: no socket from the helper, using the stream", fd, text,
                  (unsigned)remote->port);
        return TAKE_FAILED;
    }
    st.ino = inode_of(fd);
    int r = real_connect_fn()(fd, (const struct sockaddr *)&st.via, st.via_len);
    int err = errno;
    if (r == 0 || err == EINPROGRESS || err == EINTR) state_set(fd, &st);
    layer_log(LOG_DEBUG, "connect fd %d to %s:%u: socket made in the target -> %d", fd, text, (unsigned)remote->port,
              r == 0 ? 0 : -err);
    *out = r;
    errno = err;
    return r;
}

/* HANDLED: *out is the real connect's result to the intproxy's `via` (errno kept on -1). */
static detour_t connect_via_intproxy(int fd, const struct lp_addr *remote, int sock_family, uint8_t proto, int *out)
{
    char text[INET6_ADDRSTRLEN];
    addr_text(remote, text, sizeof text);
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) return detour_fail(ENOMEM);
    bool offer = fdpass_offer(fd);
    struct lp_msg req = { .type = LP_CONNECT, .proto = proto | (offer ? LP_PROTO_TAKE_SOCKET : 0), .addr = *remote },
                  resp;
    /* The kernel never answers EINTR to a non-blocking connect, and event loops do not expect it. */
    int fl = fcntl(fd, F_GETFL);
    bool blocking = fl >= 0 && !(fl & O_NONBLOCK);
    int called = blocking ? intproxy_call_intr(&req, frame, &resp) : intproxy_call(&req, frame, &resp);
    if (called == 0 && resp.status == LP_STATUS_TAKE_SOCKET) {
        int r = connect_taken(fd, remote, &resp.addr, sock_family, text, out);
        if (r != TAKE_FAILED) {
            free(frame);
            return r < 0 ? detour_fail(errno) : detour_handled();
        }
        /* Any helper failure costs only the fast path, for this connection: ask for the stream. */
        req.proto = proto;
        called = blocking ? intproxy_call_intr(&req, frame, &resp) : intproxy_call(&req, frame, &resp);
    }
    if (called < 0) {
        free(frame);
        /* Interrupted: the socket stays unconnected, so calling connect() again asks anew. */
        return detour_fail(called == INTPROXY_INTERRUPTED ? EINTR : LAYER_CONNECT_UNAVAILABLE_ERRNO);
    }
    free(frame);
    if (resp.status == LP_STATUS_BYPASS) {
        layer_log(LOG_DEBUG, "connect fd %d to %s:%u: bypass", fd, text, (unsigned)remote->port);
        return detour_bypass();
    }
    if (resp.status != LP_STATUS_OK) {
        int err = errors_connect_errno(resp.status);
        layer_log(LOG_DEBUG, "connect fd %d to %s:%u: failed: %s", fd, text, (unsigned)remote->port, strerror(err));
        return detour_fail(err);
    }
    struct fd_state st;
    st.via_len = socket_to_sockaddr(&resp.addr, sock_family, &st.via);
    st.remote_len = socket_to_sockaddr(remote, sock_family, &st.remote);
    if (st.via_len == 0) {
        layer_log(LOG_ERROR, "intproxy answered an IPv6 `via` for IPv4 socket %d", fd);
        return detour_fail(LAYER_CONNECT_UNAVAILABLE_ERRNO);
    }
    st.ino = inode_of(fd);
    int r = real_connect_fn()(fd, (const struct sockaddr *)&st.via, st.via_len);
    int err = errno;
    /* EINPROGRESS (non-blocking) and EINTR (blocking, interrupted) both leave the connection
     * going on in the kernel: the fd is ours to remember. */
    if (r == 0 || err == EINPROGRESS || err == EINTR) state_set(fd, &st);
    layer_log(LOG_DEBUG, "connect fd %d to %s:%u: handled via port %u -> %d", fd, text, (unsigned)remote->port,
              (unsigned)resp.addr.port, r == 0 ? 0 : -err);
    *out = r;
    return r < 0 ? detour_fail(err) : detour_handled();
}

/* ---- unix stream sockets (feature.network.outgoing.unix_streams) ------------------------- */

/*
 * MIRRORD_UNIX_STREAMS=1: the session has patterns, so a stream socket's connect() to an absolute
 * path asks the intproxy (which matches the patterns: one regex dialect, the CLI's). A match is
 * answered with a local path the intproxy listens on, spliced to the path's socket in the target.
 */
static bool unix_streams_on(void)
{
    static int on = -1; /* the settings do not change in a process */
    int v = __atomic_load_n(&on, __ATOMIC_ACQUIRE);
    if (v < 0) {
        const char *s = layer_setting("MIRRORD_UNIX_STREAMS");
        v = s && strcmp(s, "1") == 0;
        __atomic_store_n(&on, v, __ATOMIC_RELEASE);
    }
    return v == 1;
}

static bool is_unix_stream(int fd)
{
    int type = 0, domain = 0;
    socklen_t olen = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &olen) < 0 || type != SOCK_STREAM) return false;
    olen = sizeof domain;
    return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &olen) == 0 && domain == AF_UNIX;
}

/* A path socket (not abstract, not unnamed) given by an absolute path: its length, else 0. */
static size_t unix_path_of(const struct sockaddr *addr, socklen_t len, const char **path)
{
    const size_t off = offsetof(struct sockaddr_un, sun_path);
    if (addr->sa_family != AF_UNIX || len <= off || len > sizeof(struct sockaddr_un)) return 0;
    const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
    size_t n = strnlen(un->sun_path, len - off);
    if (n == 0 || un->sun_path[0] != '/') return 0;
    *path = un->sun_path;
    return n;
}

static detour_t unix_connect_detour(int fd, const struct sockaddr *addr, socklen_t len, int *out)
{
    const char *path = NULL;
    size_t n = unix_path_of(addr, len, &path);
    if (n == 0 || !is_unix_stream(fd)) return detour_bypass();

    struct fd_state st;
    if (state_get(fd, &st)) {
        /* Again on the same socket (a non-blocking retry): the kernel answers for the local one. */
        if ((socklen_t)len == st.remote_len && memcmp(addr, &st.remote, len) == 0) {
            *out = real_connect_fn()(fd, (const struct sockaddr *)&st.via, st.via_len);
            return detour_of(*out);
        }
        state_forget(fd);
    }

    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) return detour_fail(ENOMEM);
    struct lp_msg req = { .type = LP_CONNECT_UNIX, .path = { path, (uint16_t)n } }, resp;
    int fl = fcntl(fd, F_GETFL);
    bool blocking = fl >= 0 && !(fl & O_NONBLOCK);
    int called = blocking ? intproxy_call_intr(&req, frame, &resp) : intproxy_call(&req, frame, &resp);
    if (called < 0) {
        free(frame);
        if (called == INTPROXY_INTERRUPTED) return detour_fail(EINTR);
        /* Without the intproxy nothing says the path matches: the program's local sockets
         * (syslog, nscd, D-Bus) keep working. */
        layer_log(LOG_DEBUG, "connect fd %d to %.*s: no intproxy, stays local", fd, (int)n, path);
        return detour_bypass();
    }
    if (resp.status == LP_STATUS_BYPASS) {
        free(frame);
        return detour_bypass();
    }
    if (resp.status != LP_STATUS_OK) {
        free(frame);
        int err = errors_connect_errno(resp.status);
        layer_log(LOG_DEBUG, "connect fd %d to %.*s in the target: %s", fd, (int)n, path, strerror(err));
        return detour_fail(err);
    }
    memset(&st, 0, sizeof st);
    struct sockaddr_un *via = (struct sockaddr_un *)&st.via;
    if (resp.path.len == 0 || resp.path.len >= sizeof via->sun_path) {
        free(frame);
        layer_log(LOG_ERROR, "intproxy answered an unusable unix path for fd %d", fd);
        return detour_fail(LAYER_CONNECT_UNAVAILABLE_ERRNO);
    }
    via->sun_family = AF_UNIX;
    memcpy(via->sun_path, resp.path.ptr, resp.path.len);
    st.via_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + resp.path.len + 1);
    free(frame);
    memcpy(&st.remote, addr, len);
    st.remote_len = len;
    st.ino = inode_of(fd);
    int r = real_connect_fn()(fd, (const struct sockaddr *)&st.via, st.via_len);
    int err = errno;
    if (r == 0 || err == EINPROGRESS || err == EAGAIN || err == EINTR) state_set(fd, &st);
    layer_log(LOG_DEBUG, "connect fd %d to %.*s: the target's socket, via %s -> %d", fd, (int)n, path, via->sun_path,
              r == 0 ? 0 : -err);
    *out = r;
    return r < 0 ? detour_fail(err) : detour_handled();
}

/* ---- exported hooks ---------------------------------------------------------------------- */

static detour_t connect_detour(int fd, const struct sockaddr *addr, socklen_t len, int *out)
{
    if (layer_inside() || !layer_config()->enabled) return detour_bypass();
    if (addr && len >= sizeof(sa_family_t) && addr->sa_family == AF_UNIX)
        return unix_streams_on() ? unix_connect_detour(fd, addr, len, out) : detour_bypass();
    struct lp_addr remote;
    int sock_family;
    uint8_t proto;
    if (decide_connect(fd, addr, len, &remote, &sock_family, &proto).kind == DETOUR_BYPASS) return detour_bypass();

    /* Polling a non-blocking connect by calling connect() again must reach the same local
     * socket (EALREADY / EISCONN), not open a second remote connection. */
    struct fd_state st;
    if (state_get(fd, &st)) {
        struct sockaddr_storage asked;
        socklen_t asked_len = socket_to_sockaddr(&remote, sock_family, &asked);
        if (asked_len == st.remote_len && memcmp(&asked, &st.remote, asked_len) == 0) {
            *out = real_connect_fn()(fd, (const struct sockaddr *)&st.via, st.via_len);
            return detour_of(*out);
        }
        state_forget(fd);
    }
    return connect_via_intproxy(fd, &remote, sock_family, proto, out);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    layer_init();
    if (!real_connect_fn()) {
        errno = ENOSYS;
        return -1;
    }
    int r = -1;
    detour_t d = connect_detour(fd, addr, len, &r);
    return DETOUR_APPLY(d, r, -1, real_connect_fn()(fd, addr, len));
}

/* An accepted incoming connection stands for a remote client: getpeername reports it. */
void socket_remember_peer(int fd, const struct lp_addr *remote, int sock_family)
{
    struct fd_state st;
    memset(&st, 0, sizeof st);
    st.remote_len = socket_to_sockaddr(remote, sock_family, &st.remote);
    if (st.remote_len == 0) return;
    st.ino = inode_of(fd);
    state_set(fd, &st);
}

/*
 * recvfrom / recvmsg on a redirected UDP socket: datagrams really come from the intproxy's relay,
 * and resolvers such as c-ares drop answers whose source is not the server they asked; a connected
 * socket only receives from its peer, so the peer is what we report.
 */
static void report_peer(int fd, struct sockaddr *addr, socklen_t *len)
{
    struct fd_state st;
    if (!addr || !len || layer_inside() || !fdtable_any()) return;
    if (!state_get(fd, &st)) {
        udp_translate_source(fd, addr, len);
        return;
    }
    socklen_t cap = *len;
    memcpy(addr, &st.remote, cap < st.remote_len ? cap : st.remote_len);
    *len = st.remote_len;
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *len)
{
    if (!real_recvfrom_fn()) {
        errno = ENOSYS;
        return -1;
    }
    ssize_t r = real_recvfrom_fn()(fd, buf, n, flags, addr, len);
    if (r >= 0) report_peer(fd, addr, len);
    return r;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (!real_recvmsg_fn()) {
        errno = ENOSYS;
        return -1;
    }
    ssize_t r = real_recvmsg_fn()(fd, msg, flags);
    if (r >= 0 && msg && msg->msg_name) report_peer(fd, (struct sockaddr *)msg->msg_name, &msg->msg_namelen);
    return r;
}

int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
    if (!real_getpeername_fn()) {
        errno = ENOSYS;
        return -1;
    }
    struct fd_state st;
    if (!addr || !len || layer_inside() || !state_get(fd, &st)) return real_getpeername_fn()(fd, addr, len);
    socklen_t cap = *len;
    /* The real call keeps the kernel's answers for the rest: ENOTCONN while still connecting. */
    int r = real_getpeername_fn()(fd, addr, len);
    if (r < 0) return r;
    memcpy(addr, &st.remote, cap < st.remote_len ? cap : st.remote_len);
    *len = st.remote_len;
    return 0;
}
