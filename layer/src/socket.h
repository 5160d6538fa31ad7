#ifndef MIRRORD_SOCKET_H
#define MIRRORD_SOCKET_H
/* Registers the socket kind with the descriptor table (fdtable.h); called once at init. */
void socket_register(void);
#endif
