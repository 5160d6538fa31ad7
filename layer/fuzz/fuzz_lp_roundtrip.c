/*
 * libFuzzer harness: structured round trip. The input bytes fill an lp_msg field by field (any
 * type, any values, strings of any length); lp_encode() either refuses it (returns 0) or writes a
 * frame that lp_decode() must accept and turn back into the same message.
 *
 * For HELLO, CONNECT and GETADDRINFO (requests and responses) the check is field by field, and a
 * refusal is only allowed for what the protocol forbids: a bad address family, or a frame over
 * LP_MAX_FRAME (or the buffer). Invalid proto/family values encode fine but must fail to decode.
 * For every other type (listen/accept, files, unknown numbers) whatever decodes must re-encode to
 * the very same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lp_codec.h"

#define CHECK(c)           \
    do {                   \
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

/* Mostly short strings; sometimes up to the u16 maximum, to hit the frame size limit. */
static size_t take_len(struct src *s) { return take(s, 1) < 0xf0 ? take(s, 1) : take(s, 2); }

static void take_addr(struct src *s, struct lp_addr *a)
{
    uint32_t f = take(s, 1);
    a->family = f < 0x78 ? 4 : f < 0xf0 ? 6 : (uint8_t)f;
    for (unsigned i = 0; i < 16; i++) a->bytes[i] = (uint8_t)take(s, 1);
    a->port = (uint16_t)take(s, 2);
}

/* The messages of the first protocol version, checked field by field below. */
static int known_type(uint16_t t)
{
    switch (t) {
    case LP_HELLO:
    case LP_CONNECT:
    case LP_GETADDRINFO:
    case LP_HELLO | LP_RESPONSE:
    case LP_CONNECT | LP_RESPONSE:
    case LP_GETADDRINFO | LP_RESPONSE: return 1;
    default: return 0;
    }
}

static int family_ok(uint8_t f) { return f == 4 || f == 6; }

/* The size the protocol gives this message, or 0 when it cannot be encoded at all. */
static size_t expected_size(const struct lp_msg *m)
{
    switch (m->type) {
    case LP_HELLO: return LP_HEADER_SIZE + 2 + 12 + 2 + m->exe.len;
    case LP_CONNECT: return family_ok(m->addr.family) ? LP_HEADER_SIZE + 1 + LP_ADDR_SIZE : 0;
    case LP_GETADDRINFO: return LP_HEADER_SIZE + 2 + m->node.len + 4;
    case LP_HELLO | LP_RESPONSE: return LP_HEADER_SIZE + 4;
    case LP_CONNECT | LP_RESPONSE:
        return m->status != LP_STATUS_OK || family_ok(m->addr.family) ? LP_HEADER_SIZE + 4 + LP_ADDR_SIZE : 0;
    case LP_GETADDRINFO | LP_RESPONSE: {
        size_t size = LP_HEADER_SIZE + 4 + 2 + (size_t)m->count * LP_GAI_ENTRY_SIZE + 2 + m->canonname.len;
        /* lp_encode stops at the first bad entry, or at the capacity, whichever comes first. */
        for (unsigned i = 0; i < m->count; i++)
            if (!family_ok(m->entries[(size_t)i * LP_GAI_ENTRY_SIZE])) return 0;
        return size;
    }
    default: return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Request types the codec knows (numbers, so a renamed constant does not break the build);
     * each is also tried as a response. */
    static const uint16_t types[] = { 1,    2,    3,    0x10, 0x11, 0x12, 0x20, 0x21, 0x22,
                                      0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a };
    static uint8_t pool[65536];
    static uint8_t entries[4000 * LP_GAI_ENTRY_SIZE];
    static uint8_t frame[LP_MAX_FRAME + 64];
    struct src s = { data, size };
    struct lp_msg m;
    memset(&m, 0, sizeof m);

    uint32_t t = take(&s, 1);
    m.type = t < 0xf8 ? (uint16_t)(types[t % (sizeof types / sizeof types[0])] | (t & 0x80 ? LP_RESPONSE : 0))
                      : (uint16_t)take(&s, 2);
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
    size_t exe_len = take_len(&s), node_len = take_len(&s), canon_len = take_len(&s);
    size_t need = exe_len > node_len ? exe_len : node_len;
    if (canon_len > need) need = canon_len;
    /* String bytes come from the rest of the input, repeated as far as the longest string needs. */
    if (s.n == 0) memset(pool, 0x61, need);
    for (size_t have = 0; s.n && have < need;) {
        size_t k = have == 0 ? (s.n < need ? s.n : need) : (have < need - have ? have : need - have);
        memcpy(pool + have, have == 0 ? s.p : pool, k);
        have += k;
    }
    m.exe = (struct lp_str){ (const char *)pool, (uint16_t)exe_len };
    m.node = (struct lp_str){ (const char *)pool, (uint16_t)node_len };
    m.canonname = (struct lp_str){ (const char *)pool, (uint16_t)canon_len };
    m.path = m.exe;
    m.path2 = m.canonname;
    m.flags = take(&s, 4);
    m.mode = take(&s, 4);
    m.handle = take(&s, 4);
    m.len = take(&s, 4);
    m.offset = (uint64_t)take(&s, 4) | ((uint64_t)take(&s, 4) << 32);
    m.written = take(&s, 4);
    uint8_t *st = (uint8_t *)&m.st;
    for (size_t i = 0; i < sizeof m.st; i++) st[i] = (uint8_t)take(&s, 1);
    m.data = pool;
    m.data_len = take(&s, 1) < 0xf0 ? (uint32_t)node_len : (uint32_t)take(&s, 2) + 1;
    if (m.data_len > need) m.data_len = (uint32_t)need;
    m.dent_count = (uint16_t)take(&s, 1);
    m.dents = pool;
    m.dents_len = canon_len;
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
    if (known_type(m.type)) {
        size_t want = expected_size(&m);
        if (want == 0 || want > cap || want > LP_MAX_FRAME) CHECK(n == 0);
        else CHECK(n == want);
    }
    if (n == 0) {
        if (out != frame) free(out);
        return 0;
    }
    CHECK(n >= LP_HEADER_SIZE && lp_frame_size(out) == n);
    struct lp_msg d;
    int rc = lp_decode(out, n, &d);
    if (!known_type(m.type)) {
        /* Types this harness does not model field by field: whatever decodes must re-encode to
         * exactly the same bytes. */
        if (rc == 0) {
            static uint8_t again[LP_MAX_FRAME];
            CHECK(lp_encode(&d, again, sizeof again) == n && memcmp(again, out, n) == 0);
        }
        if (out != frame) free(out);
        return 0;
    }
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
        case LP_HELLO | LP_RESPONSE: CHECK(d.status == m.status); break;
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
        default: break;
        }
    }
    if (out != frame) free(out);
    return 0;
}
