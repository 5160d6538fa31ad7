/* t_forkstress IP PORT N: the parent connects once (its session is open), counts its descriptors,
 * forks N children that wait on one pipe so they all connect at once, waits for them, connects
 * again and counts its descriptors again: they must be the same. */
#include "common.h"

#include <dirent.h>
#include <sys/wait.h>

static int one(const char *who, const char *ip, int port)
{
    char buf[128], line[128];
    int err, fd = connect_to(AF_INET, ip, port, &err);
    printf("%s pid=%d connect=%s peer=%s read=%s\n", who, (int)getpid(), err ? errname(err) : "0",
           peer_of(fd, buf, sizeof buf), err ? "" : read_line(fd, line, sizeof line));
    close(fd);
    return err != 0;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *ip = argv[1];
    int port = atoi(argv[2]), n = atoi(argv[3]), bad = 0;
    bad |= one("parent", ip, port);
    int before = count_fds();
    int go[2];
    if (pipe(go) < 0) return 1;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            close(go[1]);
            char c;
            while (read(go[0], &c, 1) < 0 && errno == EINTR) {}
            _exit(one("child", ip, port));
        }
    }
    close(go[0]);
    close(go[1]); /* end-of-file: every child starts now */
    int ok = 0;
    for (int i = 0; i < n; i++) {
        int status;
        if (wait(&status) > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
    }
    printf("children ok=%d\n", ok);
    bad |= one("parent-again", ip, port);
    printf("fds before=%d after=%d\n", before, count_fds());
    return bad || ok != n;
}
