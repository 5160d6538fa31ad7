/* t_fdpass MODE IP PORT: the fast path as programs see it (test/layer/fd-pass.test.ts).
 *   epoll    nginx-style: non-blocking socket registered with epoll before connect()
 *   refused  blocking connect to a port nobody listens on
 *   fork     parent connects, forks, the child connects, the parent again
 *   bypass   a connect the intproxy keeps local: the helper's socket must never be opened
 *   sendto   unconnected UDP: two datagrams to IP PORT (an echo server), then one to PORT+1, which
 *            the intproxy keeps local: a socket made in the target cannot send there
 * Every connect prints swapped=1 when the program's descriptor now holds another socket. */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>

static ino_t ino(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

/* Unix SOCK_SEQPACKET descriptors: the socket helper's connection. */
static int helper_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        int domain = 0, type = 0;
        socklen_t l1 = sizeof domain, l2 = sizeof type;
        if (e->d_name[0] == '.' || fd == dirfd(d)) continue;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l1) == 0 &&
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l2) == 0 && domain == AF_UNIX && type == SOCK_SEQPACKET)
            n++;
    }
    if (d) closedir(d);
    return n;
}

static struct sockaddr_in addr_of(const char *ip, int port)
{
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, ip, &in.sin_addr);
    return in;
}

static int getint(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof v;
    getsockopt(fd, level, name, &v, &l);
    return v;
}

static int run_epoll(const char *ip, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    ino_t before = ino(fd);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.u64 = 42 };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) return printf("epoll_ctl=%s\n", errname(errno)), 1;
    struct sockaddr_in in = addr_of(ip, port);
    int r = connect(fd, (struct sockaddr *)&in, sizeof in);
    printf("connect=%s\n", r == 0 ? "0" : errname(errno));
    printf("swapped=%d\n", ino(fd) != before);
    struct epoll_event got;
    int n = epoll_wait(ep, &got, 1, 10000);
    printf("events=%d data=%llu out=%d hup=%d\n", n, n == 1 ? (unsigned long long)got.data.u64 : 0ULL,
           n == 1 && (got.events & EPOLLOUT) != 0, n == 1 && (got.events & (EPOLLHUP | EPOLLERR)) != 0);
    printf("so_error=%d\n", getint(fd, SOL_SOCKET, SO_ERROR));
    printf("nonblock=%d cloexec=%d\n", (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0, (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    printf("nodelay=%d keepalive=%d\n", getint(fd, IPPROTO_TCP, TCP_NODELAY), getint(fd, SOL_SOCKET, SO_KEEPALIVE));
    ev.events = EPOLLIN;
    printf("mod=%s\n", epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0 ? "0" : errname(errno));
    n = epoll_wait(ep, &got, 1, 10000);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    char line[128], peer[128];
    printf("readable=%d read=%s\n", n, read_line(fd, line, sizeof line));
    printf("peer=%s\n", peer_of(fd, peer, sizeof peer));
    printf("helper_fds=%d\n", helper_fds());
    return 0;
}

static void one(const char *who, const char *ip, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ino_t before = ino(fd);
    struct sockaddr_in in = addr_of(ip, port);
    int r = connect(fd, (struct sockaddr *)&in, sizeof in);
    int err = r == 0 ? 0 : errno;
    char line[128] = "";
    printf("%s connect=%s swapped=%d read=%s\n", who, err ? errname(err) : "0", ino(fd) != before,
           err ? "" : read_line(fd, line, sizeof line));
    fflush(stdout);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    const char *mode = argv[1], *ip = argv[2];
    int port = atoi(argv[3]);
    if (!strcmp(mode, "epoll")) return run_epoll(ip, port);
    if (!strcmp(mode, "refused") || !strcmp(mode, "bypass")) {
        one(mode, ip, port);
        printf("helper_fds=%d\n", helper_fds());
        return 0;
    }
    if (!strcmp(mode, "sendto")) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        ino_t before = ino(fd);
        struct sockaddr_in to = addr_of(ip, port), other = addr_of(ip, port + 1);
        for (int i = 0; i < 2; i++) {
            ssize_t r = sendto(fd, "ping", 4, 0, (struct sockaddr *)&to, sizeof to);
            char buf[64] = "", from[128];
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            ssize_t n = r < 0 ? -1 : recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&ss, &len);
            if (n > 0) buf[n] = 0;
            printf("sendto=%s swapped=%d echo=%s from=%s\n", r < 0 ? errname(errno) : "4", ino(fd) != before, buf,
                   n > 0 ? fmt_sa((struct sockaddr *)&ss, from, sizeof from) : "-");
        }
        ssize_t r = sendto(fd, "ping", 4, 0, (struct sockaddr *)&other, sizeof other);
        printf("local sendto=%s\n", r < 0 ? errname(errno) : "4");
        return 0;
    }
    if (!strcmp(mode, "fork")) {
        one("parent", ip, port);
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            one("child", ip, port);
            _exit(0);
        }
        int status;
        waitpid(child, &status, 0);
        printf("child exit=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        one("parent-again", ip, port);
        return 0;
    }
    return 2;
}
