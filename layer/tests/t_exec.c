/* t_exec MODE PROG [ARGS...]: resolves a name first (so this process has a session), then starts
 * PROG with an environment of only PATH, the way programs that build their own envp do:
 * execve, execle, execvpe, fexecve, execveat (this process becomes PROG), spawn, spawnp
 * (posix_spawn*, waited for), vfork (vfork + execve, waited for), unsetenv (the session and
 * LD_PRELOAD removed from environ, then execv), optout (only LD_PRELOAD removed: the session
 * kept, so the layer must stay out), preload (execve with PATH and LD_PRELOAD naming
 * only the library in $OTHER_PRELOAD: both must be loaded). PROG must still be intercepted. */
#include "common.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

static char *bare_env[] = { "PATH=/usr/local/bin:/usr/bin:/bin", NULL };

static int wait_child(pid_t pid)
{
    int status;
    if (waitpid(pid, &status, 0) < 0) return 1;
    printf("child exit=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *mode = argv[1], *prog = argv[2];
    char **args = argv + 2;
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
    printf("parent gai=%d\n", getaddrinfo("only-remote.test", "80", &hints, &res));
    if (res) freeaddrinfo(res);

    if (strcmp(mode, "execve") == 0) execve(prog, args, bare_env);
    else if (strcmp(mode, "preload") == 0) {
        char preload[4096];
        snprintf(preload, sizeof preload, "LD_PRELOAD=%s", getenv("OTHER_PRELOAD") ? getenv("OTHER_PRELOAD") : "");
        char *env[] = { bare_env[0], preload, NULL };
        execve(prog, args, env);
    } else if (strcmp(mode, "execvpe") == 0) execvpe(prog, args, bare_env);
    else if (strcmp(mode, "execle") == 0 && argc == 6)
        execle(prog, args[0], args[1], args[2], args[3], (char *)NULL, bare_env);
    else if (strcmp(mode, "fexecve") == 0) {
        int fd = open(prog, O_RDONLY | O_CLOEXEC);
        fexecve(fd, args, bare_env);
    } else if (strcmp(mode, "execveat") == 0) {
        execveat(AT_FDCWD, prog, args, bare_env, 0);
    } else if (strcmp(mode, "unsetenv") == 0) {
        unsetenv("LD_PRELOAD");
        unsetenv("MIRRORD_LAYER_ADDR");
        execv(prog, args);
    } else if (strcmp(mode, "optout") == 0) {
        unsetenv("LD_PRELOAD");
        execv(prog, args);
    } else if (strcmp(mode, "spawn") == 0 || strcmp(mode, "spawnp") == 0) {
        pid_t pid;
        int r = mode[5] ? posix_spawnp(&pid, prog, NULL, NULL, args, bare_env)
                        : posix_spawn(&pid, prog, NULL, NULL, args, bare_env);
        if (r != 0) {
            printf("spawn=%s\n", errname(r));
            return 1;
        }
        return wait_child(pid);
    } else if (strcmp(mode, "vfork") == 0) {
        pid_t pid = vfork();
        if (pid == 0) {
            execve(prog, args, bare_env);
            _exit(127);
        }
        return wait_child(pid);
    } else {
        return 2;
    }
    printf("%s failed: %s\n", mode, errname(errno));
    return 1;
}
