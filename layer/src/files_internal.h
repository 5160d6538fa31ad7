/*
 * Shared by the remote-file sources only: files.c (settings, paths, the descriptor kind, remote
 * open), files_open.c, files_io.c, files_stat.c, files_paths.c. The program-facing contract is
 * files.h; each hook is a shim over a *_detour() function (detour.h).
 */
#ifndef MIRRORD_FILES_INTERNAL_H
#define MIRRORD_FILES_INTERNAL_H

#include "detour.h"
#include "files.h"

#include <limits.h>
#include <stdint.h>

/* A read waits like a read of a slow device: a signal handler may interrupt it (EINTR). */
bool files_call_intr(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp);

/* A status < 0 as errno (a broken intproxy's nonsense: EIO). */
int files_status_errno(int32_t status);

/* The shared decision for every open (open family, fopen): HANDLED with the descriptor in *fd. */
detour_t files_open_detour(int dirfd, const char *path, int flags, mode_t mode, int *fd);

/* stat of a remote descriptor: the open-time answer until a write makes it stale (0 or -1). */
int files_fstat_remote(struct file_obj *f, struct lp_stat *out);

/*
 * A request about one path (`req->path` is set here to its absolute form in `abs`, PATH_MAX):
 * BYPASS when the path is local or the intproxy says so; HANDLED with `resp` decoded into
 * *frame (the caller frees it, also on the other outcomes).
 */
detour_t files_path_call(struct lp_msg *req, int dirfd, const char *path, char *abs, struct lp_msg *resp,
                         uint8_t **frame);

#endif
