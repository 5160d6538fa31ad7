/* t_eintr connect|read restart|norestart|nonblock TARGET...: a SIGUSR1 handler (with SA_RESTART, or
 * without: norestart, and nonblock, where the socket is non-blocking and EINPROGRESS is awaited)
 * is installed, "ready" printed, then one blocking hooked call is made while the test sends
 * SIGUSR1 (the fake intproxy holds the answer back). The handler writes "handled". Then, with
 * signals ignored, the same call again: it must be answered normally (no desynchronised reply).
 *   connect IP PORT: connect() twice on one socket, then the greeting;
 *   read PATH: open() a remote file, read() 5 bytes twice. */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>

static void on_usr1(int sig)
{
    (void)sig;
    static const char msg[] = "handled\n";
    ssize_t w = write(STDOUT_FILENO, msg, sizeof msg - 1);
    (void)w;
}

int main(int argc, char **argv)
{
    if (argc < 4) return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = strcmp(argv[2], "restart") == 0 ? SA_RESTART : 0 };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    char line[128];
    if (strcmp(argv[1], "connect") == 0 && argc == 5) {
        bool nonblock = strcmp(argv[2], "nonblock") == 0;
        int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[4])) };
        inet_pton(AF_INET, argv[3], &in.sin_addr);
        printf("ready\n");
        int r = connect(fd, (struct sockaddr *)&in, sizeof in);
        printf("connect1=%d errno=%s\n", r, r < 0 ? errname(errno) : "0");
        signal(SIGUSR1, SIG_IGN);
        if (r < 0 && errno == EINPROGRESS) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            poll(&pfd, 1, -1);
            fcntl(fd, F_SETFL, 0);
            r = 0;
        } else if (r < 0) {
            r = connect(fd, (struct sockaddr *)&in, sizeof in);
            printf("connect2=%d errno=%s\n", r, r < 0 ? errname(errno) : "0");
        }
        if (r == 0) printf("read=%s\n", read_line(fd, line, sizeof line));
        return r != 0;
    }
    if (strcmp(argv[1], "read") == 0) {
        int fd = open(argv[3], O_RDONLY);
        if (fd < 0) {
            printf("open=%s\n", errname(errno));
            return 1;
        }
        printf("ready\n");
        char buf[6] = { 0 };
        ssize_t r = read(fd, buf, 5);
        printf("read1=%zd errno=%s data=%s\n", r, r < 0 ? errname(errno) : "0", r > 0 ? buf : "");
        signal(SIGUSR1, SIG_IGN);
        if (r < 0) {
            r = read(fd, buf, 5);
            printf("read2=%zd data=%s\n", r, r > 0 ? buf : "");
        }
        close(fd);
        return r != 5;
    }
    return 2;
}
