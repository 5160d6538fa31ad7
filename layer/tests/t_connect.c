/* t_connect MODE IP PORT: one TCP connect, then getpeername (also on a dup), then the greeting.
 * MODE: v4 (blocking AF_INET), v6 (blocking AF_INET6, IP may be a dotted quad -> ::ffff:),
 * nonblock (AF_INET, O_NONBLOCK + poll, then a second connect() that must say EISCONN). */
#include "common.h"

#include <fcntl.h>
#include <poll.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: t_connect v4|v6|nonblock IP PORT\n");
        return 2;
    }
    const char *mode = argv[1], *ip = argv[2];
    int port = atoi(argv[3]);
    char buf[256], line[256];
    int fd, err;
    if (strcmp(mode, "nonblock") == 0) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        inet_pton(AF_INET, ip, &in.sin_addr);
        int r = connect(fd, (struct sockaddr *)&in, sizeof in);
        printf("connect=%d errno=%s\n", r, r < 0 ? errname(errno) : "0");
        if (r < 0 && errno != EINPROGRESS) return 1;
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int pr = poll(&pfd, 1, 5000);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        printf("poll=%d so_error=%s\n", pr, soerr ? errname(soerr) : "0");
        r = connect(fd, (struct sockaddr *)&in, sizeof in);
        printf("reconnect=%d errno=%s\n", r, r < 0 ? errname(errno) : "0");
        fcntl(fd, F_SETFL, 0);
    } else {
        fd = connect_to(strcmp(mode, "v6") == 0 ? AF_INET6 : AF_INET, ip, port, &err);
        printf("connect=%d errno=%s\n", err ? -1 : 0, err ? errname(err) : "0");
        if (err) return 1;
    }
    printf("peer=%s\n", peer_of(fd, buf, sizeof buf));
    int copy = dup(fd);
    printf("dup_peer=%s\n", peer_of(copy, buf, sizeof buf));
    int high = dup2(fd, 77);
    printf("dup2_peer=%s\n", peer_of(high, buf, sizeof buf));
    printf("read=%s\n", read_line(fd, line, sizeof line));
    close(copy);
    close(high);
    close(fd);
    /* After close the number may be reused: it must not keep reporting the old peer. */
    int fresh = socket(AF_INET, SOCK_STREAM, 0);
    printf("fresh_peer=%s\n", peer_of(fresh, buf, sizeof buf));
    return 0;
}
