/*
 * LP wire codec (docs/protocol.md section 1). Pure byte work, no I/O and no libc hooks, so the
 * same file is linked into the layer and into the C vector test.
 * Decoded strings and address lists point into the caller's frame buffer: nothing is copied, so
 * a 64 KiB frame never needs a 64 KiB struct on a small thread stack.
 */
#ifndef MIRRORD_LP_CODEC_H
#define MIRRORD_LP_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define LP_VERSION 1
#define LP_MAX_FRAME 65536u
#define LP_HEADER_SIZE 12u
#define LP_ADDR_SIZE 19u
#define LP_GAI_ENTRY_SIZE 17u
#define LP_RESPONSE 0x8000u

enum lp_type {
    LP_HELLO = 1,
    LP_CONNECT = 2,
    LP_GETADDRINFO = 3,
    LP_LISTEN = 0x10,
    LP_ACCEPT = 0x11,
    LP_UNLISTEN = 0x12,
    LP_CONNECT_UNIX = 0x13, /* request: path; response: status, the local path to connect to */
    LP_ACCEPT_TAKE = 0x14   /* ACCEPT from a layer that can take the stolen connection (fast path) */
};

/* ---- the program's environment (feature.env.load_from_process): type 0x30 ---- */
#define LP_ENV 0x30 /* request: u32 start; response: status, u32 total, u16 count, count x entry */
enum { LP_ENV_SET = 1, LP_ENV_UNSET = 2 };

/* ---- remote files (docs/protocol.md, "Files"): types 0x20..0x2f ---- */
enum lp_fs_type {
    LP_FS_OPEN = 0x20,
    LP_FS_READ = 0x21,
    LP_FS_WRITE = 0x22,
    LP_FS_CLOSE = 0x23,
    LP_FS_STAT = 0x24,
    LP_FS_ACCESS = 0x25,
    LP_FS_READLINK = 0x26,
    LP_FS_GETDENTS = 0x27,
    LP_FS_MKDIR = 0x28,
    LP_FS_UNLINK = 0x29,
    LP_FS_RENAME = 0x2a,
};
#define LP_FS_MAX_IO (60u * 1024u) /* READ response / WRITE request payload */
#define LP_FS_APPEND UINT64_MAX    /* WRITE offset: at the end of the file */
#define LP_FS_STAT_SIZE 96u

struct lp_stat {
    uint64_t dev, ino;
    uint32_t mode, nlink, uid, gid;
    uint64_t rdev;
    int64_t size;
    uint32_t blksize;
    int64_t blocks;
    int64_t atime_sec, mtime_sec, ctime_sec;
    uint32_t atime_nsec, mtime_nsec, ctime_nsec;
};
/* TAKE_SOCKET: CONNECT: get a socket from the target's socket helper and connect it to `addr`;
 * ACCEPT_TAKE: take the stolen connection `take` from the helper onto the accepted descriptor. */
enum { LP_STATUS_OK = 0, LP_STATUS_BYPASS = 1, LP_STATUS_TAKE_SOCKET = 2 };
/* LP_PROTO_TAKE_SOCKET is or-ed into CONNECT's proto: the layer can take such a socket. */
enum { LP_PROTO_TCP = 1, LP_PROTO_UDP = 2, LP_PROTO_TAKE_SOCKET = 0x80 };

struct lp_str {
    const char *ptr;
    uint16_t len;
};

struct lp_addr {
    uint8_t family; /* 4 or 6 */
    uint8_t bytes[16];
    uint16_t port;
};

/* One struct for every message; `type` says which fields mean something. */
struct lp_msg {
    uint32_t id;
    uint16_t type;
    int32_t status;   /* every response */
    uint16_t version; /* HELLO request */
    uint32_t pid, ppid, parent_pid;
    struct lp_str exe;
    uint8_t proto;        /* CONNECT request */
    struct lp_addr addr;  /* CONNECT: remote (request) or via (response);
                                                LISTEN/UNLISTEN: requested; ACCEPT: peer (request)
                                                or remote client (response) */
    struct lp_addr addr2; /* LISTEN: where the layer really bound */
    struct lp_str take;   /* ACCEPT_TAKE response: the helper's id of the stolen connection */
    uint32_t env_start;   /* ENV request: the first entry wanted */
    uint32_t env_total;   /* ENV response: entries in all */
    uint16_t env_count;   /* ENV response: raw entries, each u8 op, str name, str value */
    const uint8_t *env_entries;
    size_t env_len;
    struct lp_str node; /* GETADDRINFO request */
    int32_t family;
    uint16_t count;         /* GETADDRINFO response */
    const uint8_t *entries; /* count x 17 raw bytes: u8 family, 16 address bytes */
    struct lp_str canonname;
    /* ---- remote files ---- */
    struct lp_str path, path2;         /* requests with paths; READLINK response: the target;
                                          CONNECT_UNIX: the path asked (request), via (response) */
    uint32_t flags, mode, handle, len; /* len: READ request size */
    uint64_t offset;                   /* READ/WRITE request; WRITE response: position after */
    const uint8_t *data;               /* WRITE request / READ response bytes (data_len) */
    uint32_t data_len, written;
    struct lp_stat st;    /* OPEN / STAT response */
    uint16_t dent_count;  /* GETDENTS response: raw entries, each u64 ino, */
    const uint8_t *dents; /* u8 type, u16 name length, name bytes */
    size_t dents_len;
};

/* Writes one whole frame; returns its size, or 0 if it would not fit or a field is invalid. */
size_t lp_encode(const struct lp_msg *m, uint8_t *out, size_t cap);

/* Size of the frame announced by its first 4 bytes, or 0 when out of bounds (receiver closes). */
size_t lp_frame_size(const uint8_t first4[4]);

/* Decodes one whole frame (length field included); 0 on success, -1 when malformed. */
int lp_decode(const uint8_t *frame, size_t size, struct lp_msg *m);

/* Walks GETDENTS entries: *pos starts at 0; returns 0 and the entry, or -1 at the end. */
int lp_dent_next(const struct lp_msg *m, size_t *pos, uint64_t *ino, uint8_t *type, struct lp_str *name);

/* Walks ENV entries: *pos starts at 0; returns 0 and the entry, or -1 at the end. */
int lp_env_next(const struct lp_msg *m, size_t *pos, uint8_t *op, struct lp_str *name, struct lp_str *value);

/* The i-th address of a GETADDRINFO response. */
void lp_entry(const struct lp_msg *m, unsigned i, uint8_t *family, uint8_t bytes[16]);

#endif
