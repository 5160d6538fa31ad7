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
/* AF_INET or AF_INET6 for a TCP socket, else 0. */
int socket_tcp_family(int fd);
/* AF_INET or AF_INET6 for a UDP socket, else 0. */
int socket_udp_family(int fd);
/* A sockaddr as an lp_addr (IPv4-mapped IPv6 becomes family 4); -1 when it is not IPv4/IPv6. */
int socket_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct lp_addr *out);
#endif
