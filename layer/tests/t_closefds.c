/* t_closefds MODE NAME PORT: resolve (opens the layer's connection), then either close every
 * descriptor 3..1023 (MODE close), dup2 stdout over each open one (MODE dup2), as daemons and
 * shells do, or close_range(3, ~0) (MODE close_range: not a hook, the layer's descriptor really
 * goes), then resolve and connect again: the layer must still work. */
#include "common.h"

#include <fcntl.h>

static int resolve_connect(const char *name, const char *port)
{
    char buf[128], line[128];
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
    int r = getaddrinfo(name, port, &hints, &res);
    printf("gai=%d\n", r);
    if (r) return 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int c = connect(fd, res->ai_addr, res->ai_addrlen);
    printf("connect=%s peer=%s read=%s\n", c ? errname(errno) : "0", peer_of(fd, buf, sizeof buf),
           c ? "" : read_line(fd, line, sizeof line));
    freeaddrinfo(res);
    close(fd);
    return c != 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int bad = resolve_connect(argv[2], argv[3]);
    int touched = 0;
    if (strcmp(argv[1], "close_range") == 0) {
        printf("close_range=%d\n", close_range(3, ~0U, 0));
        bad |= resolve_connect(argv[2], argv[3]);
        return bad;
    }
    for (int fd = 3; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) < 0) continue;
        touched++;
        if (strcmp(argv[1], "dup2") == 0) {
            dup2(1, fd);
            close(fd);
        } else {
            close(fd);
        }
    }
    printf("touched=%d\n", touched);
    bad |= resolve_connect(argv[2], argv[3]);
    return bad;
}
