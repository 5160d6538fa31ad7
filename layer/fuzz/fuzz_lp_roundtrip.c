/*
 * libFuzzer harness: structured round trip. The input bytes fill an lp_msg field by field (any
 * type, any values, strings of any length); lp_encode() either refuses it (returns 0) or writes a
 * frame that lp_decode() must accept and turn back into the same message.
 *
 * Refusals are only allowed for what the protocol forbids: an unknown type, a bad address family,
 * or a frame over LP_MAX_FRAME. Invalid proto/family values encode fine but must then fail to decode.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lp_codec.h"

#define CHECK(c) \
    do { \
        if (!(c)) abort(); \
    } while (0)

struct src {
    const uint8_t *p;
    size_t n;
};

static uint32_t take(struct src *s, unsigned bytes)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        v |= (uint32_t)(s->n ? *s->p : 0) << (8 * i);
        if (s->n) {
            s->p++;
            s->n--;
        }
    }
    return v;
}

static struct lp_str take_str(struct src *s, const uint8_t *pool, size_t pool_len)
{
    /* Mostly short strings; sometimes near the frame limit, to hit the size check. */
    uint32_t sel = take(s, 1);
    size_t len = sel < 0xf0 ? take(s, 1) : (size_t)take(s, 2);
    if (len > pool_len) len = pool_len;
    struct lp_str out = { (const char *)pool, (uint16_t)len };
    return out;
}

static void take_addr(struct src *s, struct lp_addr *a)
{
    uint32_t f = take(s, 1);
    a->family = f < 0x78 ? 4 : f < 0xf0 ? 6 : (uint8_t)f;
    for (unsigned i = 0; i < 16; i++) a->bytes[i] = (uint8_t)take(s, 1);
    a->port = (uint16_t)take(s, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint16_t types[] = {
        LP_HELLO, LP_CONNECT, LP_GETADDRINFO, LP_HELLO | LP_RESPONSE, LP_CONNECT | LP_RESPONSE,
        LP_GETADDRINFO | LP_RESPONSE,
    };
    static uint8_t pool[70000];
    static uint8_t entries[4000 * LP_GAI_ENTRY_SIZE];
    static uint8_t frame[LP_MAX_FRAME + 64];
    struct src s = { data, size };
    struct lp_msg m;
    memset(&m, 0, sizeof m);

    uint32_t t = take(&s, 1);
    m.type = t < 0xf8 ? types[t % 6] : (uint16_t)take(&s, 2);
    m.id = take(&s, 4);
    m.status = (int32_t)take(&s, 4);
    m.version = (uint16_t)take(&s, 2);
    m.pid = take(&s, 4);
    m.ppid = take(&s, 4);
    m.parent_pid = take(&s, 4);
    uint32_t p = take(&s, 1);
    m.proto = p < 0x78 ? LP_PROTO_TCP : p < 0xf0 ? LP_PROTO_UDP : (uint8_t)p;
    uint32_t fam = take(&s, 1);
    m.family = fam < 0x50 ? 0 : fam < 0xa0 ? 2 : fam < 0xf0 ? 10 : (int32_t)take(&s, 4);
    take_addr(&s, &m.addr);
    /* String bytes come from the rest of the input, repeated to fill the pool. */
    for (size_t i = 0; i < sizeof pool; i++) pool[i] = s.n ? s.p[i % s.n] : (uint8_t)i;
    m.exe = take_str(&s, pool, sizeof pool);
    m.node = take_str(&s, pool, sizeof pool);
    m.canonname = take_str(&s, pool, sizeof pool);
    uint32_t c = take(&s, 1);
    m.count = (uint16_t)(c < 0xf0 ? c % 24 : take(&s, 2) % 4000);
    for (unsigned i = 0; i < m.count; i++) {
        uint8_t *e = entries + (size_t)i * LP_GAI_ENTRY_SIZE;
        uint32_t ef = take(&s, 1);
        e[0] = ef < 0x7c ? 4 : ef < 0xf8 ? 6 : (uint8_t)ef;
        for (unsigned k = 1; k < LP_GAI_ENTRY_SIZE; k++) e[k] = (uint8_t)take(&s, 1);
    }
    m.entries = entries;

    /* A capacity below the frame: encode must refuse rather than overflow. */
    size_t cap = take(&s, 1) < 0x10 ? (size_t)take(&s, 2) % 128 : sizeof frame;
    uint8_t *out = cap == sizeof frame ? frame : malloc(cap ? cap : 1);
    CHECK(out);
    size_t n = lp_encode(&m, out, cap);
    CHECK(n <= cap && n <= LP_MAX_FRAME);
    if (n == 0) {
        if (out != frame) free(out);
        return 0;
    }
    CHECK(n >= LP_HEADER_SIZE && lp_frame_size(out) == n);
    struct lp_msg d;
    int rc = lp_decode(out, n, &d);
    int proto_ok = m.proto == LP_PROTO_TCP || m.proto == LP_PROTO_UDP;
    int family_ok = m.family == 0 || m.family == 2 || m.family == 10;
    if ((m.type == LP_CONNECT && !proto_ok) || (m.type == LP_GETADDRINFO && !family_ok)) {
        CHECK(rc != 0);
    } else {
        CHECK(rc == 0);
        CHECK(d.id == m.id && d.type == m.type);
        switch (m.type) {
        case LP_HELLO:
            CHECK(d.version == m.version && d.pid == m.pid && d.ppid == m.ppid && d.parent_pid == m.parent_pid);
            CHECK(d.exe.len == m.exe.len && memcmp(d.exe.ptr, m.exe.ptr, m.exe.len) == 0);
            break;
        case LP_CONNECT:
            CHECK(d.proto == m.proto && d.addr.family == m.addr.family && d.addr.port == m.addr.port);
            CHECK(memcmp(d.addr.bytes, m.addr.bytes, m.addr.family == 4 ? 4 : 16) == 0);
            break;
        case LP_GETADDRINFO:
            CHECK(d.family == m.family && d.node.len == m.node.len && memcmp(d.node.ptr, m.node.ptr, m.node.len) == 0);
            break;
        case LP_HELLO | LP_RESPONSE:
            CHECK(d.status == m.status);
            break;
        case LP_CONNECT | LP_RESPONSE:
            CHECK(d.status == m.status);
            if (m.status == LP_STATUS_OK) {
                CHECK(d.addr.family == m.addr.family && d.addr.port == m.addr.port);
                CHECK(memcmp(d.addr.bytes, m.addr.bytes, m.addr.family == 4 ? 4 : 16) == 0);
            } else {
                CHECK(d.addr.family == 4 && d.addr.port == 0); /* not meaningful: sent as zeros */
            }
            break;
        case LP_GETADDRINFO | LP_RESPONSE:
            CHECK(d.status == m.status && d.count == m.count);
            for (unsigned i = 0; i < m.count; i++) {
                uint8_t f, b[16];
                lp_entry(&d, i, &f, b);
                const uint8_t *e = entries + (size_t)i * LP_GAI_ENTRY_SIZE;
                CHECK(f == e[0] && memcmp(b, e + 1, f == 4 ? 4 : 16) == 0);
            }
            CHECK(d.canonname.len == m.canonname.len && memcmp(d.canonname.ptr, m.canonname.ptr, m.canonname.len) == 0);
            break;
        default:
            abort(); /* lp_encode must refuse unknown types */
        }
    }
    if (out != frame) free(out);
    return 0;
}
