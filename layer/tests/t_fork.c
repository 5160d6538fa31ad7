/* t_fork IP PORT: the parent connects, forks; the child connects on its own, then the parent
 * connects again. Both must be redirected, over separate intproxy connections. */
#include "common.h"

#include <sys/wait.h>

static void one(const char *who, const char *ip, int port)
{
    char buf[128], line[128];
    int err, fd = connect_to(AF_INET, ip, port, &err);
    printf("%s pid=%d connect=%s peer=%s read=%s\n", who, (int)getpid(), err ? errname(err) : "0",
           peer_of(fd, buf, sizeof buf), err ? "" : read_line(fd, line, sizeof line));
    fflush(stdout);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 3) return 2;
    int port = atoi(argv[2]);
    one("parent", argv[1], port);
    pid_t child = fork();
    if (child == 0) {
        one("child", argv[1], port);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    printf("child exit=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    one("parent-again", argv[1], port);
    return 0;
}
