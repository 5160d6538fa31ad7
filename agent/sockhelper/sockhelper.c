/*
 * mirrord-sockhelper: hands sockets made in the target's network namespace to the layer
 * (docs/fast-path.md). The agent starts it inside that namespace; it listens on a SOCK_SEQPACKET
 * unix socket in the directory the CLI mounted, and answers only a peer that first sends the
 * session's token (peer uids prove nothing under user namespaces, so the token is the check, and
 * the CLI's 0700 directory keeps other users from reaching the socket at all).
 *
 * Usage: MIRRORD_SOCKHELPER_TOKEN=... mirrord-sockhelper SOCKET_PATH
 * Prints "ready BOOT_ID" on stdout once listening; dies with its parent (the agent).
 *
 * Messages, one per packet:
 *   -> "HELLO <token>"              <- "OK <boot id>" (a wrong token: the connection is closed)
 *   -> "SOCKET <domain> <type> <protocol>"
 *                                   <- "OK" with the socket in SCM_RIGHTS, or "ERR <errno>"
 * Only unconnected AF_INET/AF_INET6 stream and datagram sockets are made.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define MSG_MAX 512

struct client {
    int fd;
    int authed;
};

static struct pollfd pfds[MAX_CLIENTS + 1];
static struct client clients[MAX_CLIENTS + 1];
static int nfds;
static char boot_id[64] = "unknown";
static const char *token;

static void die(const char *what)
{
    fprintf(stderr, "mirrord-sockhelper: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void read_boot_id(void)
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, boot_id, sizeof boot_id - 1);
    close(fd);
    if (n <= 0) {
        strcpy(boot_id, "unknown");
        return;
    }
    boot_id[n] = 0;
    boot_id[strcspn(boot_id, "\n")] = 0;
}

/* Making an inet socket needs no capability, and the token check none either: hold none, so a
 * bug here cannot be turned into the agent's ptrace or network administration rights. */
static void drop_capabilities(void)
{
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (syscall(SYS_capset, &hdr, data) < 0) die("capset");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
}

/* Constant time: the answer must not tell how much of a guess was right. */
static int token_ok(const char *got, size_t len)
{
    size_t want = strlen(token);
    unsigned diff = len != want;
    for (size_t i = 0; i < want; i++) diff |= (unsigned char)token[i] ^ (unsigned char)(i < len ? got[i] : 0);
    return diff == 0;
}

static void drop(int i)
{
    close(pfds[i].fd);
    pfds[i] = pfds[nfds - 1];
    clients[i] = clients[nfds - 1];
    nfds--;
}

static void reply(int fd, const char *text, int pass_fd)
{
    struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (pass_fd >= 0) {
        memset(&u, 0, sizeof u);
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof u.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    /* MSG_DONTWAIT: a client that never reads must not stall every other one. */
    (void)!sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static int make_socket(const char *args)
{
    int domain, type, protocol;
    if (sscanf(args, "%d %d %d", &domain, &type, &protocol) != 3) return -EINVAL;
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (domain != AF_INET && domain != AF_INET6) return -EAFNOSUPPORT;
    if (base == SOCK_STREAM && protocol != 0 && protocol != IPPROTO_TCP) return -EPROTONOSUPPORT;
    if (base == SOCK_DGRAM && protocol != 0 && protocol != IPPROTO_UDP) return -EPROTONOSUPPORT;
    if (base != SOCK_STREAM && base != SOCK_DGRAM) return -ESOCKTNOSUPPORT;
    int s = socket(domain, base | SOCK_CLOEXEC, protocol);
    return s < 0 ? -errno : s;
}

/* 1: keep the client, 0: close it. */
static int serve(struct client *c)
{
    char buf[MSG_MAX + 1];
    ssize_t n = recv(c->fd, buf, MSG_MAX, MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    if (n == 0) return 0;
    buf[n] = 0;
    if (!c->authed) {
        if (n < 6 || memcmp(buf, "HELLO ", 6) != 0 || !token_ok(buf + 6, (size_t)n - 6)) return 0;
        c->authed = 1;
        char out[96];
        snprintf(out, sizeof out, "OK %s", boot_id);
        reply(c->fd, out, -1);
        return 1;
    }
    if (n > 7 && memcmp(buf, "SOCKET ", 7) == 0) {
        int s = make_socket(buf + 7);
        if (s < 0) {
            char out[32];
            snprintf(out, sizeof out, "ERR %d", -s);
            reply(c->fd, out, -1);
        } else {
            reply(c->fd, "OK", s);
            close(s);
        }
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: MIRRORD_SOCKHELPER_TOKEN=... mirrord-sockhelper SOCKET_PATH\n");
        return 2;
    }
    /* The agent's death is the session's end: never outlive it (and so never serve a stale token). */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("pdeathsig");
    if (getppid() == 1) return 0;
    token = getenv("MIRRORD_SOCKHELPER_TOKEN");
    if (!token || strlen(token) < 16) {
        fprintf(stderr, "mirrord-sockhelper: MIRRORD_SOCKHELPER_TOKEN must hold the session's token\n");
        return 2;
    }
    token = strdup(token);
    unsetenv("MIRRORD_SOCKHELPER_TOKEN");
    signal(SIGPIPE, SIG_IGN);
    read_boot_id();

    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(argv[1]) >= sizeof sun.sun_path) {
        fprintf(stderr, "mirrord-sockhelper: socket path longer than %zu bytes\n", sizeof sun.sun_path - 1);
        return 2;
    }
    strcpy(sun.sun_path, argv[1]);
    int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l < 0) die("socket");
    unlink(argv[1]);
    if (bind(l, (struct sockaddr *)&sun, sizeof sun) < 0) die("bind");
    /* The directory is the access check (0700, the user's); the socket itself must be writable by
     * the user, whose uid this process may not share. */
    if (chmod(argv[1], 0666) < 0) die("chmod");
    if (listen(l, 128) < 0) die("listen");
    drop_capabilities();

    printf("ready %s\n", boot_id);
    fflush(stdout);

    pfds[0] = (struct pollfd){ .fd = l, .events = POLLIN };
    nfds = 1;
    for (;;) {
        if (poll(pfds, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        for (int i = nfds - 1; i >= 1; i--) {
            if (!pfds[i].revents) continue;
            if (!(pfds[i].revents & POLLIN) || !serve(&clients[i])) drop(i);
        }
        if (pfds[0].revents & POLLIN) {
            int c;
            while ((c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                if (nfds > MAX_CLIENTS) {
                    close(c);
                    continue;
                }
                pfds[nfds] = (struct pollfd){ .fd = c, .events = POLLIN };
                clients[nfds] = (struct client){ .fd = c, .authed = 0 };
                nfds++;
            }
        }
    }
}
