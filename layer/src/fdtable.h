/*
 * The layer's per-descriptor state, shared by every hook family (sockets, remote files, ...).
 *
 * Each entry maps a descriptor number to a reference-counted object whose first member is a
 * `struct fd_obj`. The object's `kind` selects its callbacks (registered once per kind): `close`
 * runs when a descriptor naming the object is closed (or replaced by dup2/dup3), `dup` when a new
 * descriptor comes to name it (dup, dup2, dup3, fcntl F_DUPFD) and `destroy` when the last
 * reference is gone (after the table lock is released, so it may call the intproxy).
 * dup shares one object between descriptors, as the kernel shares one open file description.
 * The descriptor's inode is remembered: a number closed behind the layer's back (close_range, a raw
 * syscall) and reused for something else is not mistaken for the old object.
 */
#ifndef MIRRORD_FDTABLE_H
#define MIRRORD_FDTABLE_H

#include <stdbool.h>
#include <sys/types.h>

enum fd_kind {
    FD_KIND_SOCKET = 1,
    FD_KIND_FILE = 2,
    FD_KIND_DIR = 3,
    FD_KIND_LISTEN = 4,
    FD_KIND_UDP = 5,
    FD_KIND_MAX = 8
};

struct fd_obj {
    int kind;
    unsigned refs; /* atomic; one per descriptor naming it, plus one per fdtable_get() */
    ino_t ino;     /* the real descriptor's inode (0: do not check) */
};

struct fd_kind_ops {
    void (*on_close)(int fd, struct fd_obj *obj);         /* optional; table lock held: no I/O */
    void (*on_dup)(int from, int to, struct fd_obj *obj); /* optional; table lock held */
    void (*destroy)(struct fd_obj *obj);                  /* required; last reference gone */
    void (*after_dup2)(int to, struct fd_obj *obj);       /* optional; after dup2/dup3 onto `to`, no lock held */
};

void fdtable_register(int kind, const struct fd_kind_ops *ops);

/* Initialises `obj` (kind, one reference owned by the caller, inode of `fd`). */
void fdtable_obj_init(struct fd_obj *obj, int kind, int fd);

/* `fd` now names `obj`; the table takes the caller's reference. A previous object on `fd` is
 * closed. Returns 0, or -1 (ENOMEM: the caller's reference is dropped). */
int fdtable_set(int fd, struct fd_obj *obj);

/* The object on `fd` if it is of `kind` (0: any), with a new reference for the caller, or NULL. */
struct fd_obj *fdtable_get(int fd, int kind);
/* Drops a reference from fdtable_get() / fdtable_obj_init(). */
void fdtable_put(struct fd_obj *obj);

/* `fd` was closed: forget it. */
void fdtable_forget(int fd);
/* `to` now names what `from` names (after a successful real dup*); `to`'s old object is closed. */
void fdtable_dup(int from, int to);

/* True if some descriptor has state (cheap; lets hot paths skip the lock). */
bool fdtable_any(void);
/* One more than the highest descriptor that may have state (for walking the table). */
int fdtable_limit(void);

void fdtable_fork_prepare(void);
void fdtable_fork_release(void);

#endif
