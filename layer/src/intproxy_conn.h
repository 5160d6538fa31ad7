/* The one connection from this process to the intproxy, and request/response over it. */
#ifndef MIRRORD_INTPROXY_CONN_H
#define MIRRORD_INTPROXY_CONN_H

#include "lp_codec.h"

#include <stdbool.h>
#include <sys/types.h>

/*
 * Sends `req` (its id is set here) and waits for the matching response, decoded into `resp`
 * with its strings pointing into `frame` (LP_MAX_FRAME bytes, the caller's).
 * Returns 0, or -1 when the intproxy cannot be reached, times out or breaks the protocol; the
 * connection is then dropped and the next call tries a new one.
 */
int intproxy_call(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp);

/* intproxy_call for calls the kernel would let a signal interrupt (connect, read): returns
 * INTPROXY_INTERRUPTED when a handler without SA_RESTART ran while the answer was awaited. */
#define INTPROXY_INTERRUPTED (-2)
int intproxy_call_intr(struct lp_msg *req, uint8_t *frame, struct lp_msg *resp);

/* The process whose session this one continues (0: none); set at fork, or at init from exec. */
pid_t intproxy_parent_pid(void);
void intproxy_set_parent_pid(pid_t pid);

/* The program must not close or overwrite the layer's descriptor. */
bool intproxy_is_own_fd(int fd);
/* Moves the connection off `fd` (the program is about to dup2 onto it). */
void intproxy_move_off(int fd);

void intproxy_fork_prepare(void);
void intproxy_fork_release(bool in_child);

#endif
