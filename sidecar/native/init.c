/*
 * mirrord-init: PID 1 of the user's container in container mode (like `docker run --init`).
 *
 * Why it exists: when the CLI is killed with SIGKILL nothing on the host is left to stop the user's
 * container. The sidecar exits when its attached stdin closes (the engine closes it when the CLI
 * dies); this init holds a loopback connection to the sidecar (the "lifeline", in the network
 * namespace both share) and ends the container when that connection closes. Statically linked so
 * that it runs in any image, and LD_PRELOAD (the layer) is ignored by it.
 *
 * Usage: mirrord-init PORT COMMAND [ARG...]
 * Exit status: the command's, or 128 + signal number when a signal ended it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* After the lifeline drops: SIGTERM first, SIGKILL if the command is still there this much later. */
#define GRACE_MS 2000

static int lifeline_connect(const char *port_text)
{
    char *end = NULL;
    long port = strtol(port_text, &end, 10);
    if (!end || *end || port < 1 || port > 65535) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int status_code(int status)
{
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "mirrord-init: usage: mirrord-init PORT COMMAND [ARG...]\n");
        return 125;
    }
    int lifeline = lifeline_connect(argv[1]);
    if (lifeline < 0) {
        fprintf(stderr, "mirrord-init: the mirrord sidecar is not reachable: %s\n", strerror(errno));
        return 125;
    }

    /* Every asynchronous signal is read from a signalfd: as PID 1 a signal with no handler would be
     dropped, while a blocked one stays pending and can be passed on. */
    sigset_t all, old;
    sigfillset(&all);
    int sync_signals[] = { SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGABRT, SIGTRAP, SIGSYS };
    for (size_t i = 0; i < sizeof sync_signals / sizeof sync_signals[0]; i++) sigdelset(&all, sync_signals[i]);
    sigprocmask(SIG_SETMASK, &all, &old);
    int sfd = signalfd(-1, &all, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("mirrord-init: signalfd");
        return 125;
    }

    int tty = isatty(STDIN_FILENO);
    /* Outside a container (mirrord up runs programs under it on the host) the command and whatever
     it starts get a process group of their own, so that a signal reaches all of them and none is
     left behind; as a container's PID 1 the container's end already takes every process. */
    int own_group = tty || getpid() != 1;
    pid_t child = fork();
    if (child < 0) {
        perror("mirrord-init: fork");
        return 125;
    }
    if (child == 0) {
        if (own_group) setpgid(0, 0);
        if (tty) {
            /* The command gets the terminal's foreground group, so Ctrl-C reaches it once, not twice
         (the tty's SIGINT and our forwarded copy). */
            signal(SIGTTOU, SIG_IGN);
            tcsetpgrp(STDIN_FILENO, getpgrp());
            signal(SIGTTOU, SIG_DFL);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(argv[2], argv + 2);
        int err = errno;
        fprintf(stderr, "mirrord-init: cannot run %s: %s\n", argv[2], strerror(err));
        _exit(err == ENOENT ? 127 : 126);
    }

    if (own_group) setpgid(child, child); /* also here: no signal may come before the child's own call */
    pid_t target = own_group ? -child : child;

    long long kill_at = -1;
    struct pollfd fds[2] = { { .fd = sfd, .events = POLLIN }, { .fd = lifeline, .events = POLLIN } };
    for (;;) {
        int timeout = -1;
        if (kill_at >= 0) {
            long long left = kill_at - now_ms();
            timeout = left > 0 ? (int)left : 0;
        }
        int n = poll(fds, fds[1].fd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR) {
            perror("mirrord-init: poll");
            kill(target, SIGKILL);
        }
        if (kill_at >= 0 && now_ms() >= kill_at) {
            kill(target, SIGKILL);
            kill_at = -1;
        }
        if (n > 0 && fds[1].fd >= 0 && fds[1].revents) {
            char b;
            ssize_t r = read(lifeline, &b, 1);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                /* The sidecar is gone: the session ended under us (the CLI was killed). */
                fprintf(stderr, "mirrord-init: the mirrord session ended; stopping the container\n");
                close(lifeline);
                fds[1].fd = -1;
                kill(target, SIGTERM);
                kill_at = now_ms() + GRACE_MS;
            }
        }
        if (n > 0 && fds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) != (ssize_t)sizeof si) continue;
            if (si.ssi_signo != SIGCHLD) {
                kill(target, (int)si.ssi_signo);
                continue;
            }
            /* Reap every child (orphans are ours as PID 1); the command's end is the container's end. */
            int status;
            pid_t pid;
            while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                if (pid == child) return status_code(status);
            }
        }
    }
}
