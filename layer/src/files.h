/*
 * Remote files: the open (files_open.c), read / write / seek (files_io.c), stat / access
 * (files_stat.c), readlink / mkdir / unlink / rename (files_paths.c) families, directories
 * (dirs.c), mmap (mmap.c), exec (files_exec.c); shared parts in files.c. Protocol:
 * docs/protocol.md, "Files".
 *
 * Each hook: exported shim -> a *_detour() function returning detour_t (detour.h): local
 * prefixes the CLI computed from the fs rules answer BYPASS without asking; otherwise the
 * intproxy is asked, which applies every rule -> the shim applies the answer. The program holds
 * a real descriptor for each remote file: an empty memfd named after the path (poll says ready,
 * fcntl/dup/F_GETFD work, the number is the lowest free one); its state lives in the shared
 * descriptor table (fdtable.h) as FD_KIND_FILE.
 */
#ifndef MIRRORD_FILES_H
#define MIRRORD_FILES_H

#include "detour.h"
#include "fdtable.h"
#include "lp_codec.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define FILES_READ_AHEAD LP_FS_MAX_IO

struct file_obj {
    struct fd_obj obj;
    pthread_mutex_t lock; /* pos and the read-ahead block */
    uint32_t handle;      /* the intproxy's (the agent's) number */
    bool is_dir;
    int flags; /* the program's open flags */
    uint64_t pos;
    struct lp_stat st; /* from open; refreshed after writes */
    bool st_stale;
    bool materialized; /* the placeholder holds the content (files_exec.c) */
    uint8_t *buf;      /* read-ahead: FILES_READ_AHEAD bytes of the file from buf_off */
    uint64_t buf_off;
    uint32_t buf_len;
    char path[]; /* the path as the target sees it (for *at() relative to a dir) */
};

void files_register(void);

/* True when remote files are on for this process (MIRRORD_FS=on). */
bool files_enabled(void);

/* The absolute form of `path` relative to `dirfd` (AT_FDCWD, a remote directory, or a local one);
 * "." and "//" removed, ".." kept for the agent to resolve. False when it cannot be formed. */
bool files_abs_path(int dirfd, const char *path, char *out, size_t cap);

/* True when the layer must ask the intproxy about `abs` (false: local without asking). */
bool files_should_ask(const char *abs);

/* One request/response; false when the intproxy is unreachable (errno set for the caller). */
bool files_call(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp);

/* Opens `abs` remotely: HANDLED with the program's descriptor in *fd, BYPASS when the intproxy
 * says "local", FAILED with the errno. */
detour_t files_open_remote(const char *abs, int flags, mode_t mode, int *fd);

struct file_obj *files_get(int fd); /* with a reference (fdtable_put), or NULL */

/* Remote I/O on an open file: at `*at`, or at (and advancing) the shared offset when NULL. */
ssize_t files_read(struct file_obj *f, void *dst, size_t n, const uint64_t *at);
ssize_t files_write(struct file_obj *f, const void *src, size_t n, const uint64_t *at);
/* Asks the intproxy for the file's stat (also: makes this process's connection hold the handle). */
int files_refresh(struct file_obj *f);

/* exec (files_exec.c): the program's remote descriptors survive into the new image. */
void files_exec_register(void);
/* Copies the remote file's content into the placeholder `fd` (once) at the program's offset. */
void files_materialize(int fd, struct file_obj *f);
/* Just before an exec or spawn: hands the inherited remote descriptors to the new image. */
void files_prepare_exec(void);
/* The process this memory belongs to (not getpid() in a clone(CLONE_VM) child). */
pid_t files_exec_own_pid(void);

#endif
