/*
 * libFuzzer harness: lp_frame_size() as the layer uses it (layer/src/intproxy_conn.c): read 4 bytes, ask
 * for the frame size, read the rest, lp_decode(). The input is an arbitrary byte stream holding any
 * number of frames, so the harness walks it frame by frame the way the receive loop does.
 *
 * Checks: lp_frame_size returns 0 or a size in [LP_HEADER_SIZE, LP_MAX_FRAME] that equals the
 * announced length + 4; it never reads past its 4 bytes (ASan, on an exact-size copy); lp_decode
 * never reads past the frame it was given (each frame is copied into its own exact-size buffer).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lp_codec.h"

#define CHECK(c)           \
    do {                   \
        if (!(c)) abort(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    while (size - pos >= 4) {
        uint8_t *head = malloc(4);
        CHECK(head);
        memcpy(head, data + pos, 4);
        size_t fsize = lp_frame_size(head);
        uint32_t len = (uint32_t)head[0] | ((uint32_t)head[1] << 8) | ((uint32_t)head[2] << 16) |
                       ((uint32_t)head[3] << 24);
        free(head);
        if (fsize == 0) {
            CHECK(len < LP_HEADER_SIZE - 4 || len > LP_MAX_FRAME - 4);
            return 0; /* the layer closes the connection */
        }
        CHECK(fsize >= LP_HEADER_SIZE && fsize <= LP_MAX_FRAME && fsize == (size_t)len + 4);
        if (fsize > size - pos) return 0; /* a short read: the layer waits, then times out */
        uint8_t *frame = malloc(fsize);
        CHECK(frame);
        memcpy(frame, data + pos, fsize);
        struct lp_msg m;
        if (lp_decode(frame, fsize, &m) == 0) {
            for (unsigned i = 0; m.type == (LP_GETADDRINFO | LP_RESPONSE) && i < m.count; i++) {
                uint8_t fam, bytes[16];
                lp_entry(&m, i, &fam, bytes);
            }
        }
        /* A shorter or longer buffer than announced must always be refused. */
        CHECK(lp_decode(frame, fsize - 1, &m) != 0);
        free(frame);
        pos += fsize;
    }
    return 0;
}
