/*
 * Unconnected UDP: sendto / sendmsg with a destination. Each destination of a socket gets its own
 * relay at the intproxy (asked once with CONNECT proto UDP, then remembered), the datagram is sent
 * there, and recvfrom / recvmsg report the destination, not the relay, as the source of answers
 * (resolvers such as dnspython check it). Connected UDP sockets are handled by connect() itself.
 */
#define _GNU_SOURCE
#include "udp.h"
#include "detour.h"
#include "errors.h"
#include "fdtable.h"
#include "layer.h"
#include "intproxy_conn.h"
#include "socket.h"
#include "fdpass.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

LAYER_REAL(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t))
LAYER_REAL(ssize_t, sendmsg, (int, const struct msghdr *, int))

#define UDP_DESTS 16

struct udp_dest {
    struct lp_addr remote;
    int bypass;   /* the intproxy said: this destination stays local */
    uint16_t via; /* the relay's port on 127.0.0.1 */
};

struct udp_obj {
    struct fd_obj obj;
    int family;
    int passed; /* the socket is one made in the target (fast path): it sends to remote destinations itself */
    unsigned n;
    struct udp_dest dests[UDP_DESTS];
};

static void udp_destroy(struct fd_obj *obj) { free(obj); }
static const struct fd_kind_ops udp_ops = { .destroy = udp_destroy };

void udp_register(void) { fdtable_register(FD_KIND_UDP, &udp_ops); }

static int same(const struct lp_addr *a, const struct lp_addr *b)
{
    return a->family == b->family && a->port == b->port && memcmp(a->bytes, b->bytes, a->family == 4 ? 4 : 16) == 0;
}

/* Where a datagram for `remote` really goes: HANDLED with `*via` set, BYPASS to send as asked. */
static detour_t route(int fd, int family, const struct lp_addr *remote, uint16_t *via)
{
    struct udp_obj *uo = (struct udp_obj *)fdtable_get(fd, FD_KIND_UDP);
    /* The fast path: a socket that has sent nothing yet can become one made in the target, which
     * then sends to every remote destination itself (recorded as "send as asked"). */
    bool known = uo != NULL, passed = uo && uo->passed;
    if (uo) {
        for (unsigned i = 0; i < uo->n; i++) {
            if (same(&uo->dests[i].remote, remote)) {
                detour_t r = uo->dests[i].bypass ? detour_bypass() : detour_handled();
                *via = uo->dests[i].via;
                fdtable_put(&uo->obj);
                return r;
            }
        }
        fdtable_put(&uo->obj);
    }
    bool offer = passed || (!known && fdpass_offer(fd));
    uint8_t *frame = malloc(LP_MAX_FRAME);
    if (!frame) return detour_fail(ENOMEM);
    struct lp_msg req = { .type = LP_CONNECT,
                          .proto = LP_PROTO_UDP | (offer ? LP_PROTO_TAKE_SOCKET : 0),
                          .addr = *remote },
                  resp;
    int called = intproxy_call(&req, frame, &resp);
    bool took = false;
    if (called == 0 && resp.status == LP_STATUS_TAKE_SOCKET) {
        took = passed || fdpass_take(fd) == 0;
        if (!took) {
            req.proto = LP_PROTO_UDP;
            called = intproxy_call(&req, frame, &resp);
        }
    }
    free(frame);
    if (called < 0) return detour_fail(LAYER_CONNECT_UNAVAILABLE_ERRNO);
    if (resp.status < 0) return detour_fail(errors_connect_errno(resp.status));
    /* A socket of the target cannot reach this machine's local destinations. */
    if (passed && !took) return detour_fail(ENETUNREACH);
    struct udp_dest d = { .remote = *remote, .bypass = took || resp.status == LP_STATUS_BYPASS, .via = resp.addr.port };
    if (took) layer_log(LOG_DEBUG, "udp fd %d: socket made in the target", fd);
    uo = (struct udp_obj *)fdtable_get(fd, FD_KIND_UDP);
    if (!uo) {
        struct udp_obj *fresh = calloc(1, sizeof *fresh);
        if (fresh) {
            fdtable_obj_init(&fresh->obj, FD_KIND_UDP, fd);
            fresh->family = family;
            fresh->passed = took;
            if (fdtable_set(fd, &fresh->obj) == 0) uo = (struct udp_obj *)fdtable_get(fd, FD_KIND_UDP);
        }
    }
    if (uo) {
        /* A full table forgets its oldest destination: it is asked about again when used. */
        if (uo->n == UDP_DESTS) {
            memmove(uo->dests, uo->dests + 1, sizeof uo->dests[0] * (UDP_DESTS - 1));
            uo->n--;
        }
        uo->dests[uo->n++] = d;
        fdtable_put(&uo->obj);
    }
    *via = d.via;
    return d.bypass ? detour_bypass() : detour_handled();
}

/* Shared by sendto and sendmsg: fills `out` with the relay's address when the datagram is ours. */
static detour_t redirect(int fd, const struct sockaddr *dest, socklen_t len, struct sockaddr_storage *out,
                         socklen_t *out_len)
{
    if (!dest || layer_inside() || !layer_config()->enabled) return detour_bypass();
    int family = socket_udp_family(fd);
    struct lp_addr remote;
    if (family == 0 || dest->sa_family != family || socket_from_sockaddr(dest, len, &remote) < 0)
        return detour_bypass();
    uint16_t via = 0;
    detour_t r = route(fd, family, &remote, &via);
    if (r.kind != DETOUR_HANDLED) return r;
    struct lp_addr relay = { .family = 4, .bytes = { 127, 0, 0, 1 }, .port = via };
    *out_len = socket_to_sockaddr(&relay, family, out);
    return *out_len ? detour_handled() : detour_bypass();
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *dest, socklen_t len)
{
    layer_init();
    if (!real_sendto_fn()) {
        errno = ENOSYS;
        return -1;
    }
    struct sockaddr_storage relay;
    socklen_t rlen = 0;
    detour_t d = redirect(fd, dest, len, &relay, &rlen);
    return DETOUR_APPLY(d, real_sendto_fn()(fd, buf, n, flags, (struct sockaddr *)&relay, rlen), -1,
                        real_sendto_fn()(fd, buf, n, flags, dest, len));
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    layer_init();
    if (!real_sendmsg_fn()) {
        errno = ENOSYS;
        return -1;
    }
    if (!msg || !msg->msg_name) return real_sendmsg_fn()(fd, msg, flags);
    struct sockaddr_storage relay;
    socklen_t rlen = 0;
    detour_t d = redirect(fd, (const struct sockaddr *)msg->msg_name, msg->msg_namelen, &relay, &rlen);
    struct msghdr copy = *msg;
    copy.msg_name = &relay;
    copy.msg_namelen = rlen;
    return DETOUR_APPLY(d, real_sendmsg_fn()(fd, &copy, flags), -1, real_sendmsg_fn()(fd, msg, flags));
}

int udp_translate_source(int fd, struct sockaddr *addr, socklen_t *len)
{
    if (!addr || !len || layer_inside() || !fdtable_any()) return 0;
    struct udp_obj *uo = (struct udp_obj *)fdtable_get(fd, FD_KIND_UDP);
    if (!uo) return 0;
    struct lp_addr src;
    int done = 0;
    if (socket_from_sockaddr(addr, *len, &src) == 0 && src.family == 4 && src.bytes[0] == 127) {
        for (unsigned i = 0; i < uo->n && !done; i++) {
            if (uo->dests[i].bypass || uo->dests[i].via != src.port) continue;
            struct sockaddr_storage out;
            socklen_t olen = socket_to_sockaddr(&uo->dests[i].remote, uo->family, &out);
            if (olen == 0) break;
            socklen_t cap = *len;
            memcpy(addr, &out, cap < olen ? cap : olen);
            *len = olen;
            done = 1;
        }
    }
    fdtable_put(&uo->obj);
    return done;
}
