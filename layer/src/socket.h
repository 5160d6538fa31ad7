#ifndef MIRRORD_SOCKET_H
#define MIRRORD_SOCKET_H
void socket_fork_prepare(void);
void socket_fork_release(void);
#endif
