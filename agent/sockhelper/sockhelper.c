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
 *   -> "TAKE <id>"                  <- "OK" with the stolen connection of that id in SCM_RIGHTS,
 *                                      or "ERR <errno>" (ENOENT: no such id, or already taken)
 * Only unconnected AF_INET/AF_INET6 stream and datagram sockets are made.
 *
 * Stolen connections (docs/fast-path.md, "Incoming"): the agent passes each connection an
 * unfiltered steal accepted over Node's child_process channel (NODE_CHANNEL_FD; one JSON line per
 * message, a descriptor rides with the line of a NODE_HANDLE message and is acknowledged with
 * NODE_HANDLE_ACK). The helper keeps it under the agent's one-time id for KEEP_MS, hands it to the
 * one token holder that asks for it, and tells the agent {"mirrord":"taken"|"expired","id":...};
 * {"mirrord":"drop","id":...} from the agent closes it (the connection went the stream's way).
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
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define MSG_MAX 512
#define MAX_KEPT 4096
#define KEEP_MS 10000
#define ID_MAX 64
#define LINE_MAX_BYTES 4096
#define FD_QUEUE 64

struct client {
    int fd;
    int authed;
};

static struct pollfd pfds[MAX_CLIENTS + 2]; /* + the agent's channel */
static struct client clients[MAX_CLIENTS + 1];
static int nfds;
static char boot_id[64] = "unknown";
static const char *token;

/* ---- stolen connections, from the agent ------------------------------------------------------ */

struct kept {
    char id[ID_MAX + 1];
    int fd;
    long long expires; /* monotonic ms */
};
static struct kept kept[MAX_KEPT];
static int nkept;
static int chan = -1; /* the agent's channel, or -1 */
static char line[LINE_MAX_BYTES + 1];
static size_t line_len;
static int fdq[FD_QUEUE];
static int fdq_len;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

/* One line to the agent; the agent reads its channel all the time, so a short wait is enough. */
static void chan_write(const char *text)
{
    size_t len = strlen(text), off = 0;
    while (chan >= 0 && off < len) {
        ssize_t n = send(chan, text + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = { .fd = chan, .events = POLLOUT };
            if (poll(&p, 1, 1000) > 0) continue;
        }
        fprintf(stderr, "mirrord-sockhelper: agent channel: %s\n", strerror(errno));
        return;
    }
}

static void notify(const char *what, const char *id)
{
    char out[ID_MAX + 64];
    snprintf(out, sizeof out, "{\"mirrord\":\"%s\",\"id\":\"%s\"}\n", what, id);
    chan_write(out);
}

/* The value of "key":"..." in a JSON line, if it is a plain id ([A-Za-z0-9_-], at most ID_MAX). */
static int json_id(const char *text, const char *key, char out[ID_MAX + 1])
{
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(text, pat);
    if (!p) return -1;
    p += strlen(pat);
    size_t n = 0;
    while (p[n] && p[n] != '"' && n <= ID_MAX) {
        char c = p[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return -1;
        n++;
    }
    if (p[n] != '"' || n == 0 || n > ID_MAX) return -1;
    memcpy(out, p, n);
    out[n] = 0;
    return 0;
}

static int find_kept(const char *id)
{
    for (int i = 0; i < nkept; i++)
        if (strcmp(kept[i].id, id) == 0) return i;
    return -1;
}

static void unkeep(int i)
{
    kept[i] = kept[nkept - 1];
    nkept--;
}

static void chan_line(char *text)
{
    char id[ID_MAX + 1];
    if (strstr(text, "\"cmd\":\"NODE_HANDLE\"")) {
        int fd = -1;
        if (fdq_len > 0) {
            fd = fdq[0];
            memmove(fdq, fdq + 1, (size_t)(fdq_len - 1) * sizeof fdq[0]);
            fdq_len--;
        }
        /* Acknowledged whatever happens: Node sends no further descriptor before the ACK. */
        chan_write("{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
        if (fd < 0) return;
        if (json_id(text, "mirrordId", id) < 0 || nkept >= MAX_KEPT || find_kept(id) >= 0) {
            close(fd);
            if (json_id(text, "mirrordId", id) == 0) notify("expired", id);
            return;
        }
        int fl = fcntl(fd, F_GETFD);
        if (fl >= 0) fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
        kept[nkept] = (struct kept){ .fd = fd, .expires = now_ms() + KEEP_MS };
        strcpy(kept[nkept].id, id);
        nkept++;
        return;
    }
    if (strstr(text, "\"mirrord\":\"drop\"") && json_id(text, "id", id) == 0) {
        int i = find_kept(id);
        if (i >= 0) {
            close(kept[i].fd);
            unkeep(i);
        }
    }
}

/* Everything the agent sent so far; 0 when the channel is gone. */
static int chan_read(void)
{
    for (;;) {
        char buf[4096];
        union {
            char buf[CMSG_SPACE(sizeof(int) * 8)];
            struct cmsghdr align;
        } u;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
        ssize_t n = recvmsg(chan, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) return errno == EAGAIN || errno == EINTR;
        if (n == 0) return 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t k = 0; k < count; k++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
                if (fdq_len < FD_QUEUE) fdq[fdq_len++] = fd;
                else close(fd);
            }
        }
        for (ssize_t k = 0; k < n; k++) {
            if (buf[k] == '\n') {
                line[line_len] = 0;
                chan_line(line);
                line_len = 0;
            } else if (line_len < LINE_MAX_BYTES) {
                line[line_len++] = buf[k];
            }
        }
    }
}

/* Closes what nobody took in time; the poll timeout until the next expiry (-1: none). */
static int expire(void)
{
    long long now = now_ms(), next = -1;
    for (int i = nkept - 1; i >= 0; i--) {
        if (kept[i].expires <= now) {
            close(kept[i].fd);
            notify("expired", kept[i].id);
            unkeep(i);
        } else if (next < 0 || kept[i].expires - now < next) {
            next = kept[i].expires - now;
        }
    }
    return next < 0 ? -1 : (int)next + 1;
}

static int take_kept(const char *id)
{
    int i = find_kept(id);
    /* The agent wrote the connection before it told the session: it may still be unread. */
    if (i < 0 && chan >= 0) {
        chan_read();
        i = find_kept(id);
    }
    if (i < 0) return -ENOENT;
    int fd = kept[i].fd;
    notify("taken", kept[i].id);
    unkeep(i);
    return fd;
}

/* "OK" with the descriptor (which is then ours no more), or "ERR <errno>" for a negative errno. */
static void reply_fd(int fd, int s)
{
    if (s < 0) {
        char out[32];
        snprintf(out, sizeof out, "ERR %d", -s);
        reply(fd, out, -1);
        return;
    }
    reply(fd, "OK", s);
    close(s);
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
        reply_fd(c->fd, make_socket(buf + 7));
        return 1;
    }
    if (n > 5 && memcmp(buf, "TAKE ", 5) == 0) {
        reply_fd(c->fd, strlen(buf + 5) <= ID_MAX ? take_kept(buf + 5) : -EINVAL);
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
    const char *chan_env = getenv("NODE_CHANNEL_FD");
    if (chan_env && *chan_env) {
        chan = atoi(chan_env);
        int fl = fcntl(chan, F_GETFD);
        if (fl < 0) chan = -1;
        else fcntl(chan, F_SETFD, fl | FD_CLOEXEC);
    }
    unsetenv("NODE_CHANNEL_FD");
    unsetenv("NODE_CHANNEL_SERIALIZATION_MODE");
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
    /* The agent's channel is the last slot, outside the clients'. */
    for (;;) {
        int timeout = expire();
        pfds[nfds] = (struct pollfd){ .fd = chan, .events = POLLIN };
        if (poll(pfds, (nfds_t)nfds + 1, timeout) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (chan >= 0 && pfds[nfds].revents) {
            if (!chan_read()) {
                /* The agent is gone (or closed the channel): nothing more will be stolen. */
                close(chan);
                chan = -1;
            }
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
