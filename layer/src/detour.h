/*
 * The one answer every hook's inner logic gives its exported shim: handled here, pass to libc,
 * or failed with an error. The value the program gets (a length, a descriptor, a FILE *) travels
 * separately through an out-parameter, so no valid value can be mistaken for "not ours" (a
 * readlink of a one-byte target once returned 1, which also meant "call libc").
 *
 * Pattern: exported shim -> NAME_detour(..., &value) -> DETOUR_APPLY at the shim:
 *
 *     ssize_t len;
 *     detour_t d = readlink_detour(AT_FDCWD, path, buf, n, &len);
 *     return DETOUR_APPLY(d, len, -1, REAL_OR_ENOSYS(readlink, path, buf, n));
 *
 * BYPASS leaves errno as the program had it (an inner function that asked restores it).
 */
#ifndef MIRRORD_DETOUR_H
#define MIRRORD_DETOUR_H

#include <errno.h>

typedef enum {
    DETOUR_HANDLED, /* the layer did it: the out-parameter holds the result */
    DETOUR_BYPASS,  /* not ours: the shim calls libc */
    DETOUR_FAILED,  /* ours, and it failed with `err` (an errno; EAI_* for getaddrinfo) */
} detour_kind;

typedef struct {
    detour_kind kind;
    int err;
} detour_t;

static inline detour_t detour_handled(void) { return (detour_t){ DETOUR_HANDLED, 0 }; }
static inline detour_t detour_bypass(void) { return (detour_t){ DETOUR_BYPASS, 0 }; }
static inline detour_t detour_fail(int err) { return (detour_t){ DETOUR_FAILED, err }; }

/* A libc-style result of the layer's own work (< 0: failed with errno) as a detour. */
static inline detour_t detour_of(long r) { return r < 0 ? detour_fail(errno) : detour_handled(); }

/*
 * Applied at the shim, the only place a detour becomes the program's answer: BYPASS -> `libc`
 * (an expression calling the real function), FAILED -> errno set and `fail`, HANDLED -> `value`.
 */
#define DETOUR_APPLY(d, value, fail, libc) \
    ((d).kind == DETOUR_BYPASS ? (libc) : (d).kind == DETOUR_FAILED ? (errno = (d).err, (fail)) : (value))

/* The real libc function, or ENOSYS when there is none (for the `libc` argument above). */
#define REAL_OR_ENOSYS(name, ...) (real_##name##_fn() ? real_##name##_fn()(__VA_ARGS__) : (errno = ENOSYS, -1))

#endif
