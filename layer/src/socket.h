#ifndef MIRRORD_SOCKET_H
#define MIRRORD_SOCKET_H
/* Registers the socket kind with the descriptor table (fdtable.h); called once at init. */
void socket_register(void);

#include "lp_codec.h"
/* Remembers `remote` as the peer of `fd` (an accepted connection of the listening hooks). */
void socket_remember_peer(int fd, const struct lp_addr *remote, int sock_family);

#include <sys/socket.h>
/* An lp_addr as a sockaddr of `sock_family` (v4 in a v6 socket becomes ::ffff:a.b.c.d); 0 if it cannot be. */
socklen_t socket_to_sockaddr(const struct lp_addr *a, int sock_family, struct sockaddr_storage *out);
#endif
