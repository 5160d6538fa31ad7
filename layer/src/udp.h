#ifndef MIRRORD_UDP_H
#define MIRRORD_UDP_H
#include <sys/socket.h>
/* Registers the unconnected-UDP kind with the descriptor table; called once at init. */
void udp_register(void);
/* A datagram from one of `fd`'s relays: rewrites its source to the destination it stands for.
 * Returns 1 when it did. */
int udp_translate_source(int fd, struct sockaddr *addr, socklen_t *len);
#endif
