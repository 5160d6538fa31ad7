/* The devcontainer session file: how the layer finds a live session with nothing in its environment. */
#ifndef MIRRORD_SESSION_FILE_H
#define MIRRORD_SESSION_FILE_H

#include <stdbool.h>

/* Where `mirrord devcontainer start` writes it; MIRRORD_SESSION_FILE names another (for tests). */
#define SESSION_FILE_DEFAULT "/run/mirrord/session"
/* Set in the daemon's environment: the daemon and its children are never intercepted. */
#define SESSION_DAEMON_MARK "MIRRORD_DEVCONTAINER_DAEMON"
/* Set once the target's environment was applied in a process: its children keep what it changed. */
#define SESSION_ENV_MARK "MIRRORD_ENV_SESSION"

/* Reads the file when the daemon still holds its lock; false (pass-through) for a missing or stale
 * file. Called once from layer init: raw system calls, no allocation. */
bool session_file_load(void);

/* The value of setting `name` in the loaded file, or NULL. */
const char *session_file_get(const char *name);

/* The target's environment, applied over the process's own (constructor only: setenv allocates). */
void session_file_apply_env(void);

#endif
