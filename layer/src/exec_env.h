/* The session carried across exec: LD_PRELOAD and the MIRRORD_* settings (exec_env.c). */
#ifndef MIRRORD_EXEC_ENV_H
#define MIRRORD_EXEC_ENV_H

#include <sys/types.h>

/* Names the process whose session a new image continues; read back by exec_env_init. */
#define EXEC_ENV_PARENT "MIRRORD_LAYER_PARENT_PID"

/* Takes the snapshot from the environment the process started with (layer init). */
void exec_env_init(void);

/*
 * A copy of `envp` (NULL: empty) with our LD_PRELOAD entries and every session setting the program
 * dropped put back, and EXEC_ENV_PARENT=`parent` (none when 0). NULL when there is no session or
 * no memory: the caller then passes `envp` unchanged. Free with exec_env_free (keeps errno).
 */
char **exec_env_patch(char *const envp[], pid_t parent);
void exec_env_free(char **patched);

#endif
