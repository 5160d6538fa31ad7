/* t_atexit NAME PORT PATH [early]: calls the hooks from an atexit handler and from a destructor,
 * after exit() began: resolve NAME, connect to the answer, read the first line of the remote file
 * PATH. With "early", main makes one call first (the connection is open when exit starts);
 * without, the first call to the intproxy happens during exit. */
#include "common.h"

#include <fcntl.h>

static const char *name, *port, *path;

static void calls(const char *who)
{
    char buf[128], line[128];
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
    int r = getaddrinfo(name, port, &hints, &res);
    int c = -1, err = 0, fd = -1;
    if (r == 0) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        c = connect(fd, res->ai_addr, res->ai_addrlen);
        err = errno;
        freeaddrinfo(res);
    }
    printf("%s gai=%d connect=%s read=%s\n", who, r, c == 0 ? "0" : errname(err),
           c == 0 ? read_line(fd, line, sizeof line) : "");
    if (fd >= 0) close(fd);
    int f = open(path, O_RDONLY);
    printf("%s open=%s line=%s\n", who, f >= 0 ? "0" : errname(errno), f >= 0 ? read_line(f, buf, sizeof buf) : "");
    if (f >= 0) close(f);
    fflush(stdout);
}

static void at_exit(void) { calls("atexit"); }

/* Runs after the atexit handlers, while libraries are being finalised. */
__attribute__((destructor)) static void at_destructor(void)
{
    if (name) calls("destructor");
}

int main(int argc, char **argv)
{
    if (argc < 4) return 2;
    name = argv[1];
    port = argv[2];
    path = argv[3];
    atexit(at_exit);
    if (argc == 5 && strcmp(argv[4], "early") == 0) calls("main");
    exit(0);
}
