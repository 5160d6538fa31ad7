/* LP codec: little-endian, bounds-checked, strict (trailing bytes are an error). */
#include "lp_codec.h"

#include <stdbool.h>
#include <string.h>

struct writer {
    uint8_t *p;
    size_t len, cap;
    int bad;
};

static void put(struct writer *w, const void *src, size_t n)
{
    if (w->bad || n > w->cap - w->len) {
        w->bad = 1;
        return;
    }
    if (n) memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put_u8(struct writer *w, uint8_t v) { put(w, &v, 1); }

static void put_u16(struct writer *w, uint16_t v)
{
    uint8_t b[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
    put(w, b, 2);
}

static void put_u32(struct writer *w, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    put(w, b, 4);
}

static void put_str(struct writer *w, struct lp_str s)
{
    put_u16(w, s.len);
    put(w, s.ptr, s.len);
}

static void put_addr(struct writer *w, const struct lp_addr *a)
{
    uint8_t bytes[16] = { 0 };
    if (a->family == 4) memcpy(bytes, a->bytes, 4);
    else if (a->family == 6) memcpy(bytes, a->bytes, 16);
    else w->bad = 1;
    put_u8(w, a->family);
    put(w, bytes, 16);
    put_u16(w, a->port);
}

struct reader;
static int fs_encode(const struct lp_msg *m, struct writer *w);
static int fs_decode(struct reader *r, struct lp_msg *m);

size_t lp_encode(const struct lp_msg *m, uint8_t *out, size_t cap)
{
    struct writer w = { out, 0, cap < LP_MAX_FRAME ? cap : LP_MAX_FRAME, 0 };
    put_u32(&w, 0); /* length, patched below */
    put_u32(&w, m->id);
    put_u16(&w, m->type);
    put_u16(&w, 0);
    switch (m->type) {
    case LP_HELLO:
        put_u16(&w, m->version);
        put_u32(&w, m->pid);
        put_u32(&w, m->ppid);
        put_u32(&w, m->parent_pid);
        put_str(&w, m->exe);
        break;
    case LP_CONNECT:
        put_u8(&w, m->proto);
        put_addr(&w, &m->addr);
        break;
    case LP_GETADDRINFO:
        put_str(&w, m->node);
        put_u32(&w, (uint32_t)m->family);
        break;
    case LP_LISTEN:
        put_addr(&w, &m->addr);
        put_addr(&w, &m->addr2);
        break;
    case LP_ACCEPT:
    case LP_ACCEPT_TAKE:
    case LP_UNLISTEN: put_addr(&w, &m->addr); break;
    case LP_CONNECT_UNIX: put_str(&w, m->path); break;
    case LP_ENV: put_u32(&w, m->env_start); break;
    case LP_ENV | LP_RESPONSE:
        put_u32(&w, (uint32_t)m->status);
        put_u32(&w, m->env_total);
        put_u16(&w, m->env_count);
        put(&w, m->env_entries, m->env_len);
        break;
    case LP_CONNECT_UNIX | LP_RESPONSE:
        /* Only a handled connect has a meaningful `via` path (the intproxy sends it empty otherwise). */
        put_u32(&w, (uint32_t)m->status);
        put_str(&w, m->path);
        break;
    case LP_HELLO | LP_RESPONSE:
    case LP_LISTEN | LP_RESPONSE:
    case LP_UNLISTEN | LP_RESPONSE: put_u32(&w, (uint32_t)m->status); break;
    case LP_ACCEPT | LP_RESPONSE: {
        struct lp_addr none = { .family = 4 };
        put_u32(&w, (uint32_t)m->status);
        put_addr(&w, m->status == LP_STATUS_OK ? &m->addr : &none);
        break;
    }
    case LP_ACCEPT_TAKE | LP_RESPONSE: {
        struct lp_addr none = { .family = 4 };
        struct lp_str empty = { 0 };
        put_u32(&w, (uint32_t)m->status);
        put_addr(&w, m->status == LP_STATUS_OK || m->status == LP_STATUS_TAKE_SOCKET ? &m->addr : &none);
        put_str(&w, m->status == LP_STATUS_TAKE_SOCKET ? m->take : empty);
        break;
    }
    case LP_CONNECT | LP_RESPONSE: {
        /* A refused or bypassed connect carries no meaningful `via`: always zeros, family 4. */
        struct lp_addr none = { .family = 4 };
        put_u32(&w, (uint32_t)m->status);
        put_addr(&w, m->status == LP_STATUS_OK || m->status == LP_STATUS_TAKE_SOCKET ? &m->addr : &none);
        break;
    }
    case LP_GETADDRINFO | LP_RESPONSE:
        put_u32(&w, (uint32_t)m->status);
        put_u16(&w, m->count);
        for (unsigned i = 0; i < m->count && !w.bad; i++) {
            const uint8_t *e = m->entries + (size_t)i * LP_GAI_ENTRY_SIZE;
            put_u8(&w, e[0]);
            if (e[0] != 4 && e[0] != 6) w.bad = 1;
            put(&w, e + 1, 16);
        }
        put_str(&w, m->canonname);
        break;
    default:
        if (fs_encode(m, &w) < 0) return 0;
        break;
    }
    if (w.bad) return 0;
    uint32_t len = (uint32_t)(w.len - 4);
    out[0] = (uint8_t)len;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 24);
    return w.len;
}

struct reader {
    const uint8_t *p;
    size_t len, pos;
    int bad;
};

static const uint8_t *take(struct reader *r, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *at = r->p + r->pos;
    r->pos += n;
    return at;
}

static uint8_t get_u8(struct reader *r)
{
    const uint8_t *b = take(r, 1);
    return b ? b[0] : 0;
}

static uint16_t get_u16(struct reader *r)
{
    const uint8_t *b = take(r, 2);
    return b ? (uint16_t)(b[0] | (b[1] << 8)) : 0;
}

static uint32_t get_u32(struct reader *r)
{
    const uint8_t *b = take(r, 4);
    return b ? (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24) : 0;
}

static struct lp_str get_str(struct reader *r)
{
    struct lp_str s = { NULL, get_u16(r) };
    s.ptr = (const char *)take(r, s.len);
    return s;
}

static void get_addr(struct reader *r, struct lp_addr *a)
{
    a->family = get_u8(r);
    const uint8_t *b = take(r, 16);
    if (b) memcpy(a->bytes, b, 16);
    a->port = get_u16(r);
    if (a->family != 4 && a->family != 6) r->bad = 1;
}

size_t lp_frame_size(const uint8_t first4[4])
{
    uint32_t len = (uint32_t)first4[0] | ((uint32_t)first4[1] << 8) | ((uint32_t)first4[2] << 16) |
                   ((uint32_t)first4[3] << 24);
    if (len < LP_HEADER_SIZE - 4 || len > LP_MAX_FRAME - 4) return 0;
    return (size_t)len + 4;
}

int lp_decode(const uint8_t *frame, size_t size, struct lp_msg *m)
{
    if (size < 4 || lp_frame_size(frame) != size) return -1;
    struct reader r = { frame, size, 4, 0 };
    memset(m, 0, sizeof *m);
    m->id = get_u32(&r);
    m->type = get_u16(&r);
    (void)get_u16(&r); /* reserved: ignored so a later version may use it */
    switch (m->type) {
    case LP_HELLO:
        m->version = get_u16(&r);
        m->pid = get_u32(&r);
        m->ppid = get_u32(&r);
        m->parent_pid = get_u32(&r);
        m->exe = get_str(&r);
        break;
    case LP_CONNECT:
        m->proto = get_u8(&r);
        get_addr(&r, &m->addr);
        if ((m->proto & ~LP_PROTO_TAKE_SOCKET) != LP_PROTO_TCP && (m->proto & ~LP_PROTO_TAKE_SOCKET) != LP_PROTO_UDP)
            r.bad = 1;
        break;
    case LP_GETADDRINFO:
        m->node = get_str(&r);
        m->family = (int32_t)get_u32(&r);
        if (m->family != 0 && m->family != 2 && m->family != 10) r.bad = 1;
        break;
    case LP_LISTEN:
        get_addr(&r, &m->addr);
        get_addr(&r, &m->addr2);
        break;
    case LP_ACCEPT:
    case LP_ACCEPT_TAKE:
    case LP_UNLISTEN: get_addr(&r, &m->addr); break;
    case LP_CONNECT_UNIX: m->path = get_str(&r); break;
    case LP_ENV: m->env_start = get_u32(&r); break;
    case LP_ENV | LP_RESPONSE: {
        m->status = (int32_t)get_u32(&r);
        m->env_total = get_u32(&r);
        m->env_count = get_u16(&r);
        size_t start = r.pos;
        for (unsigned i = 0; i < m->env_count && !r.bad; i++) {
            uint8_t op = get_u8(&r);
            (void)get_str(&r);
            (void)get_str(&r);
            if (op != LP_ENV_SET && op != LP_ENV_UNSET) r.bad = 1;
        }
        m->env_entries = r.p + start;
        m->env_len = r.pos - start;
        break;
    }
    case LP_CONNECT_UNIX | LP_RESPONSE:
        m->status = (int32_t)get_u32(&r);
        m->path = get_str(&r);
        /* The intproxy sends the path only with Ok: anything else is not a frame it makes. */
        if (m->status != LP_STATUS_OK && m->path.len != 0) r.bad = 1;
        break;
    case LP_HELLO | LP_RESPONSE:
    case LP_LISTEN | LP_RESPONSE:
    case LP_UNLISTEN | LP_RESPONSE: m->status = (int32_t)get_u32(&r); break;
    case LP_ACCEPT | LP_RESPONSE:
    case LP_CONNECT | LP_RESPONSE:
        m->status = (int32_t)get_u32(&r);
        get_addr(&r, &m->addr);
        break;
    case LP_ACCEPT_TAKE | LP_RESPONSE:
        m->status = (int32_t)get_u32(&r);
        get_addr(&r, &m->addr);
        m->take = get_str(&r);
        /* The intproxy sends an id only with TakeSocket (encode o decode stays a fixed point). */
        if (m->status != LP_STATUS_TAKE_SOCKET && m->take.len != 0) r.bad = 1;
        break;
    case LP_GETADDRINFO | LP_RESPONSE:
        m->status = (int32_t)get_u32(&r);
        m->count = get_u16(&r);
        m->entries = take(&r, (size_t)m->count * LP_GAI_ENTRY_SIZE);
        for (unsigned i = 0; m->entries && i < m->count; i++) {
            uint8_t fam = m->entries[(size_t)i * LP_GAI_ENTRY_SIZE];
            if (fam != 4 && fam != 6) r.bad = 1;
        }
        m->canonname = get_str(&r);
        break;
    default:
        if (fs_decode(&r, m) < 0) return -1;
        break;
    }
    if (r.bad || r.pos != r.len) return -1;
    return 0;
}

int lp_env_next(const struct lp_msg *m, size_t *pos, uint8_t *op, struct lp_str *name, struct lp_str *value)
{
    struct reader r = { m->env_entries, m->env_len, *pos, 0 };
    if (!m->env_entries || *pos >= m->env_len) return -1;
    *op = get_u8(&r);
    *name = get_str(&r);
    *value = get_str(&r);
    if (r.bad) return -1;
    *pos = r.pos;
    return 0;
}

void lp_entry(const struct lp_msg *m, unsigned i, uint8_t *family, uint8_t bytes[16])
{
    const uint8_t *e = m->entries + (size_t)i * LP_GAI_ENTRY_SIZE;
    *family = e[0];
    memset(bytes, 0, 16);
    memcpy(bytes, e + 1, e[0] == 4 ? 4 : 16);
}

/* ==== remote files ======================================================================== */

static void put_u64(struct writer *w, uint64_t v)
{
    put_u32(w, (uint32_t)v);
    put_u32(w, (uint32_t)(v >> 32));
}

static uint64_t get_u64(struct reader *r)
{
    uint64_t lo = get_u32(r);
    return lo | ((uint64_t)get_u32(r) << 32);
}

static void put_stat(struct writer *w, const struct lp_stat *s)
{
    put_u64(w, s->dev);
    put_u64(w, s->ino);
    put_u32(w, s->mode);
    put_u32(w, s->nlink);
    put_u32(w, s->uid);
    put_u32(w, s->gid);
    put_u64(w, s->rdev);
    put_u64(w, (uint64_t)s->size);
    put_u32(w, s->blksize);
    put_u64(w, (uint64_t)s->blocks);
    put_u64(w, (uint64_t)s->atime_sec);
    put_u32(w, s->atime_nsec);
    put_u64(w, (uint64_t)s->mtime_sec);
    put_u32(w, s->mtime_nsec);
    put_u64(w, (uint64_t)s->ctime_sec);
    put_u32(w, s->ctime_nsec);
}

static void get_stat(struct reader *r, struct lp_stat *s)
{
    s->dev = get_u64(r);
    s->ino = get_u64(r);
    s->mode = get_u32(r);
    s->nlink = get_u32(r);
    s->uid = get_u32(r);
    s->gid = get_u32(r);
    s->rdev = get_u64(r);
    s->size = (int64_t)get_u64(r);
    s->blksize = get_u32(r);
    s->blocks = (int64_t)get_u64(r);
    s->atime_sec = (int64_t)get_u64(r);
    s->atime_nsec = get_u32(r);
    s->mtime_sec = (int64_t)get_u64(r);
    s->mtime_nsec = get_u32(r);
    s->ctime_sec = (int64_t)get_u64(r);
    s->ctime_nsec = get_u32(r);
}

static void put_data(struct writer *w, const uint8_t *data, uint32_t len)
{
    if (len > LP_FS_MAX_IO) w->bad = 1;
    put_u32(w, len);
    put(w, data, len);
}

static const uint8_t *get_data(struct reader *r, uint32_t *len)
{
    *len = get_u32(r);
    if (*len > LP_FS_MAX_IO) r->bad = 1;
    return take(r, *len);
}

static bool fs_is_response(uint16_t type)
{
    return type >= (LP_RESPONSE | LP_FS_OPEN) && type <= (LP_RESPONSE | LP_FS_RENAME);
}

static int fs_encode(const struct lp_msg *m, struct writer *w)
{
    switch (m->type) {
    case LP_FS_OPEN:
        put_str(w, m->path);
        put_u32(w, m->flags);
        put_u32(w, m->mode);
        return 0;
    case LP_FS_READ:
        put_u32(w, m->handle);
        put_u64(w, m->offset);
        put_u32(w, m->len);
        return 0;
    case LP_FS_WRITE:
        put_u32(w, m->handle);
        put_u64(w, m->offset);
        put_data(w, m->data, m->data_len);
        return 0;
    case LP_FS_CLOSE:
    case LP_FS_GETDENTS: put_u32(w, m->handle); return 0;
    case LP_FS_STAT:
        put_str(w, m->path);
        put_u32(w, m->flags);
        put_u32(w, m->handle);
        return 0;
    case LP_FS_ACCESS:
    case LP_FS_MKDIR:
        put_str(w, m->path);
        put_u32(w, m->mode);
        return 0;
    case LP_FS_READLINK: put_str(w, m->path); return 0;
    case LP_FS_UNLINK:
        put_str(w, m->path);
        put_u32(w, m->flags);
        return 0;
    case LP_FS_RENAME:
        put_str(w, m->path);
        put_str(w, m->path2);
        return 0;
    default: break;
    }
    if (!fs_is_response(m->type)) return -1;
    put_u32(w, (uint32_t)m->status);
    switch (m->type & ~LP_RESPONSE) {
    case LP_FS_OPEN:
        put_u32(w, m->handle);
        put_stat(w, &m->st);
        break;
    case LP_FS_READ: put_data(w, m->data, m->data_len); break;
    case LP_FS_WRITE:
        put_u32(w, m->written);
        put_u64(w, m->offset);
        break;
    case LP_FS_STAT: put_stat(w, &m->st); break;
    case LP_FS_READLINK: put_str(w, m->path); break;
    case LP_FS_GETDENTS:
        put_u16(w, m->dent_count);
        put(w, m->dents, m->dents_len);
        break;
    default: break;
    }
    return 0;
}

int lp_dent_next(const struct lp_msg *m, size_t *pos, uint64_t *ino, uint8_t *type, struct lp_str *name)
{
    struct reader r = { m->dents, m->dents_len, *pos, 0 };
    if (!m->dents || r.pos >= r.len) return -1;
    *ino = get_u64(&r);
    *type = get_u8(&r);
    *name = get_str(&r);
    if (r.bad) return -1;
    *pos = r.pos;
    return 0;
}

static int fs_decode(struct reader *r, struct lp_msg *m)
{
    switch (m->type) {
    case LP_FS_OPEN:
        m->path = get_str(r);
        m->flags = get_u32(r);
        m->mode = get_u32(r);
        return 0;
    case LP_FS_READ:
        m->handle = get_u32(r);
        m->offset = get_u64(r);
        m->len = get_u32(r);
        return 0;
    case LP_FS_WRITE:
        m->handle = get_u32(r);
        m->offset = get_u64(r);
        m->data = get_data(r, &m->data_len);
        return 0;
    case LP_FS_CLOSE:
    case LP_FS_GETDENTS: m->handle = get_u32(r); return 0;
    case LP_FS_STAT:
        m->path = get_str(r);
        m->flags = get_u32(r);
        m->handle = get_u32(r);
        return 0;
    case LP_FS_ACCESS:
    case LP_FS_MKDIR:
        m->path = get_str(r);
        m->mode = get_u32(r);
        return 0;
    case LP_FS_READLINK: m->path = get_str(r); return 0;
    case LP_FS_UNLINK:
        m->path = get_str(r);
        m->flags = get_u32(r);
        return 0;
    case LP_FS_RENAME:
        m->path = get_str(r);
        m->path2 = get_str(r);
        return 0;
    default: break;
    }
    if (!fs_is_response(m->type)) return -1;
    m->status = (int32_t)get_u32(r);
    switch (m->type & ~LP_RESPONSE) {
    case LP_FS_OPEN:
        m->handle = get_u32(r);
        get_stat(r, &m->st);
        break;
    case LP_FS_READ: m->data = get_data(r, &m->data_len); break;
    case LP_FS_WRITE:
        m->written = get_u32(r);
        m->offset = get_u64(r);
        break;
    case LP_FS_STAT: get_stat(r, &m->st); break;
    case LP_FS_READLINK: m->path = get_str(r); break;
    case LP_FS_GETDENTS: {
        m->dent_count = get_u16(r);
        size_t start = r->pos;
        for (unsigned i = 0; i < m->dent_count && !r->bad; i++) {
            (void)get_u64(r);
            (void)get_u8(r);
            (void)get_str(r);
        }
        m->dents = r->p + start;
        m->dents_len = r->pos - start;
        break;
    }
    default: break;
    }
    return 0;
}
