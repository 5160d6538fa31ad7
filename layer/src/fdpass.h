/*
 * The fast path (docs/fast-path.md): sockets made in the target's network namespace by the agent's
 * socket helper, swapped onto the program's own descriptor so the kernel carries its bytes.
 */
#ifndef MIRRORD_FDPASS_H
#define MIRRORD_FDPASS_H

#include <stdbool.h>

/* The session offers the helper (MIRRORD_FDPASS_SOCK and _TOKEN) and this process may use it for
 * `fd`: an inet socket not bound to a specific address. Opens nothing. */
bool fdpass_offer(int fd);

/* Replaces `fd` with an unconnected socket from the helper of the same domain, type and protocol,
 * carrying fd's options, file status flags, close-on-exec and epoll registrations. 0, or -1 with
 * `fd` untouched (the caller then takes the stream). */
int fdpass_take(int fd);

/* The session offers the helper and it has not failed this process: ACCEPT_TAKE may be sent. */
bool fdpass_can_take(void);

/* Replaces the just-accepted `fd` (a placeholder connection) with the stolen connection `id` from
 * the helper, keeping fd's file status flags, close-on-exec and the socket options it inherited.
 * 0, or -1 with `fd` untouched (the caller then uses the placeholder: the stream). */
int fdpass_take_stolen(int fd, const char *id);

/* epoll.c: registrations of not-yet-connected inet sockets, re-made on a swap. */
struct fdpass_epoll_saved;
int fdpass_epoll_detach(int fd, struct fdpass_epoll_saved **out);
void fdpass_epoll_attach(int fd, struct fdpass_epoll_saved *saved);

#endif
