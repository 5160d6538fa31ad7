/*
 * mirrord-session-lock: takes the session lock for `mirrord devcontainer` (Node has no flock).
 * The daemon opens the session file and passes it as descriptor 3; this takes flock(LOCK_EX) on it
 * and exits. A flock belongs to the open file description, which the daemon still holds, so the lock
 * lasts exactly as long as the daemon's descriptor: a daemon killed with SIGKILL releases it, and a
 * layer that then finds the file unlocked treats it as stale (layer/src/session_file.c).
 * With the argument "wait" it waits for the lock instead (`start` serialises concurrent starts so).
 * Exit 0: locked; 1: another holder has it; 2: bad descriptor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>

int main(int argc, char **argv)
{
    int how = LOCK_EX | (argc > 1 && strcmp(argv[1], "wait") == 0 ? 0 : LOCK_NB);
    int r;
    while ((r = flock(3, how)) != 0 && errno == EINTR) {}
    if (r == 0) return 0;
    int err = errno;
    fprintf(stderr, "mirrord-session-lock: %s\n", strerror(err));
    return err == EWOULDBLOCK ? 1 : 2;
}
