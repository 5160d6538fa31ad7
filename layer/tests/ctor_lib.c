/* A library whose constructor resolves a name: it may run before the layer's own constructor,
 * so the layer must initialise itself on that first call. */
#include "common.h"

__attribute__((constructor)) static void early(void)
{
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
    char buf[128];
    int r = getaddrinfo("only-remote.test", "80", &hints, &res);
    printf("ctor gai=%d addr=%s\n", r, r ? "-" : fmt_sa(res->ai_addr, buf, sizeof buf));
    if (!r) freeaddrinfo(res);
}

int ctor_lib_marker(void) { return 42; }
