#ifndef MIRRORD_LISTEN_H
#define MIRRORD_LISTEN_H
/* Registers the listening-socket kind with the descriptor table; called once at init. */
void listen_register(void);
#endif
