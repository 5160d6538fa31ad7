#ifndef MIRRORD_DNS_H
#define MIRRORD_DNS_H
void dns_fork_prepare(void);
void dns_fork_release(void);
#endif
