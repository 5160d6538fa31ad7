/*
 * The exec family, posix_spawn and vfork: a new image must stay in the session. Before it starts,
 * the remote descriptors it inherits are handed over (files_exec.c), and its environment gets the
 * layer and the session settings back (exec_env.c), with the process whose session it continues.
 */
#define _GNU_SOURCE
#include "detour.h"
#include "exec_env.h"
#include "files.h"
#include "layer.h"
#include "intproxy_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

LAYER_REAL(int, execve, (const char *, char *const[], char *const[]))
LAYER_REAL(int, execvpe, (const char *, char *const[], char *const[]))
LAYER_REAL(int, fexecve, (int, char *const[], char *const[]))
LAYER_REAL(int, execveat, (int, const char *, char *const[], char *const[], int))
LAYER_REAL(int, posix_spawn,
           (pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *, char *const[],
            char *const[]))
LAYER_REAL(int, posix_spawnp,
           (pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *, char *const[],
            char *const[]))

/* The process whose session the new image continues: a forked child's parent, or this process
 * itself for a child it spawns (in a clone(CLONE_VM) child, the memory's process is the parent). */
static pid_t session_parent(bool spawning)
{
    if (spawning) return getpid();
    pid_t own = files_exec_own_pid();
    return getpid() != own ? own : intproxy_parent_pid();
}

int execve(const char *path, char *const argv[], char *const envp[])
{
    files_prepare_exec();
    char **env = exec_env_patch(envp, session_parent(false));
    int r = REAL_OR_ENOSYS(execve, path, argv, env ? env : envp);
    exec_env_free(env);
    return r;
}

/* The forms without an envp use environ, from which the program may have removed the session. */
int execv(const char *path, char *const argv[]) { return execve(path, argv, environ); }

int execvp(const char *file, char *const argv[]) { return execvpe(file, argv, environ); }

int execvpe(const char *file, char *const argv[], char *const envp[])
{
    files_prepare_exec();
    char **env = exec_env_patch(envp, session_parent(false));
    int r = REAL_OR_ENOSYS(execvpe, file, argv, env ? env : envp);
    exec_env_free(env);
    return r;
}

int fexecve(int fd, char *const argv[], char *const envp[])
{
    files_prepare_exec();
    char **env = exec_env_patch(envp, session_parent(false));
    int r = REAL_OR_ENOSYS(fexecve, fd, argv, env ? env : envp);
    exec_env_free(env);
    return r;
}

int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
    files_prepare_exec();
    char **env = exec_env_patch(envp, session_parent(false));
    int r = REAL_OR_ENOSYS(execveat, dirfd, path, argv, env ? env : envp, flags);
    exec_env_free(env);
    return r;
}

/* execl* are variadic: their arguments become an argv for the hooks above. */
#define MAX_ARGS 4096
static int collect(const char *arg0, va_list ap, char **argv)
{
    int n = 0;
    argv[n++] = (char *)arg0;
    while (arg0 && n < MAX_ARGS - 1 && (argv[n] = va_arg(ap, char *))) n++;
    if (n == MAX_ARGS - 1) {
        errno = E2BIG;
        return -1;
    }
    argv[n] = NULL;
    return 0;
}

int execl(const char *path, const char *arg0, ...)
{
    char **argv = malloc(MAX_ARGS * sizeof *argv);
    if (!argv) return (errno = ENOMEM, -1);
    va_list ap;
    va_start(ap, arg0);
    int r = collect(arg0, ap, argv);
    va_end(ap);
    if (r == 0) r = execv(path, argv);
    free(argv);
    return r;
}

int execlp(const char *file, const char *arg0, ...)
{
    char **argv = malloc(MAX_ARGS * sizeof *argv);
    if (!argv) return (errno = ENOMEM, -1);
    va_list ap;
    va_start(ap, arg0);
    int r = collect(arg0, ap, argv);
    va_end(ap);
    if (r == 0) r = execvp(file, argv);
    free(argv);
    return r;
}

int execle(const char *path, const char *arg0, ...)
{
    char **argv = malloc(MAX_ARGS * sizeof *argv);
    if (!argv) return (errno = ENOMEM, -1);
    va_list ap;
    va_start(ap, arg0);
    int r = collect(arg0, ap, argv);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    if (r == 0) r = execve(path, argv, envp);
    free(argv);
    return r;
}

int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                char *const argv[], char *const envp[])
{
    files_prepare_exec();
    if (!real_posix_spawn_fn()) return ENOSYS;
    char **env = exec_env_patch(envp, session_parent(true));
    int r = real_posix_spawn_fn()(pid, path, fa, attr, argv, env ? env : envp);
    exec_env_free(env);
    return r;
}

int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
                 char *const argv[], char *const envp[])
{
    files_prepare_exec();
    if (!real_posix_spawnp_fn()) return ENOSYS;
    char **env = exec_env_patch(envp, session_parent(true));
    int r = real_posix_spawnp_fn()(pid, file, fa, attr, argv, env ? env : envp);
    exec_env_free(env);
    return r;
}

/*
 * vfork is fork here. A vfork child borrows the parent's memory, and with it the layer's state:
 * the intproxy connection, its lock, the descriptor table; one hooked call in the child (many
 * programs do more than exec: dup2, chdir, closing descriptors) would change the parent's. A real
 * fork gives the child its own copy and its own session (the atfork handlers), and a wrapper
 * cannot call the real vfork anyway: the child would return through a frame the parent still
 * needs. What programs can observe of vfork is kept: the parent waits until the child has exec'd
 * or exited (a close-on-exec pipe reaches end-of-file then). Memory written by the child is not
 * seen by the parent, which POSIX never promised.
 */
pid_t vfork(void)
{
    int p[2];
    bool wait = pipe2(p, O_CLOEXEC) == 0;
    pid_t pid = fork();
    if (pid == 0) {
        if (wait) syscall(SYS_close, p[0]);
        return 0;
    }
    if (wait) {
        int saved = errno;
        syscall(SYS_close, p[1]);
        char c;
        while (pid > 0 && syscall(SYS_read, p[0], &c, 1) < 0 && errno == EINTR) {}
        syscall(SYS_close, p[0]);
        errno = saved;
    }
    return pid;
}
