/*
 * libFuzzer harness: lp_decode(), lp_entry() and lp_dent_next() on arbitrary frames (the bytes the layer reads
 * from the intproxy, docs/protocol.md section 1).
 *
 * Checks beyond "no crash / no sanitizer report":
 *  - a frame lp_decode accepts has the size lp_frame_size announces, and every string and address
 *    list it returns lies inside the frame;
 *  - re-encoding an accepted frame succeeds, gives a frame of the same size, and that frame decodes
 *    to the same message and re-encodes to itself (encode o decode is a fixed point).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lp_codec.h"

#define CHECK(c)           \
    do {                   \
        if (!(c)) abort(); \
    } while (0)

static int inside(const uint8_t *frame, size_t size, const void *p, size_t n)
{
    const uint8_t *q = p;
    return n == 0 || (q >= frame && q + n <= frame + size);
}

static void check_msg(const uint8_t *frame, size_t size, const struct lp_msg *m)
{
    CHECK(inside(frame, size, m->exe.ptr, m->exe.len));
    CHECK(inside(frame, size, m->node.ptr, m->node.len));
    CHECK(inside(frame, size, m->canonname.ptr, m->canonname.len));
    CHECK(inside(frame, size, m->path.ptr, m->path.len));
    CHECK(inside(frame, size, m->path2.ptr, m->path2.len));
    CHECK(inside(frame, size, m->data, m->data_len));
    CHECK(inside(frame, size, m->dents, m->dents_len));
    /* lp_dent_next walks exactly dent_count entries, each inside the frame. */
    if (m->dents) {
        size_t pos = 0;
        unsigned n = 0;
        uint64_t ino;
        uint8_t type;
        struct lp_str name;
        while (lp_dent_next(m, &pos, &ino, &type, &name) == 0) {
            CHECK(inside(frame, size, name.ptr, name.len));
            CHECK(++n <= m->dent_count);
        }
        CHECK(n == m->dent_count && pos == m->dents_len);
    }
    if (m->type == (LP_GETADDRINFO | LP_RESPONSE)) {
        CHECK(inside(frame, size, m->entries, (size_t)m->count * LP_GAI_ENTRY_SIZE));
        for (unsigned i = 0; i < m->count; i++) {
            uint8_t fam = 0, bytes[16];
            lp_entry(m, i, &fam, bytes);
            CHECK(fam == 4 || fam == 6);
            if (fam == 4) {
                static const uint8_t zero[12];
                CHECK(memcmp(bytes + 4, zero, 12) == 0);
            }
        }
    }
    if (m->type == LP_CONNECT || m->type == (LP_CONNECT | LP_RESPONSE))
        CHECK(m->addr.family == 4 || m->addr.family == 6);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lp_msg m;
    if (lp_decode(data, size, &m) != 0) return 0;
    CHECK(size >= LP_HEADER_SIZE && size <= LP_MAX_FRAME);
    CHECK(lp_frame_size(data) == size);
    check_msg(data, size, &m);

    static uint8_t again[LP_MAX_FRAME], third[LP_MAX_FRAME];
    size_t n = lp_encode(&m, again, sizeof again);
    CHECK(n == size);
    struct lp_msg m2;
    CHECK(lp_decode(again, n, &m2) == 0);
    check_msg(again, n, &m2);
    CHECK(m2.id == m.id && m2.type == m.type && m2.status == m.status);
    size_t n3 = lp_encode(&m2, third, sizeof third);
    CHECK(n3 == n && memcmp(again, third, n) == 0);
    return 0;
}
