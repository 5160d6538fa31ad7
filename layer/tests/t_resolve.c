/* t_resolve OP=NAME...: OP is gai (AF_UNSPEC, socktype 0, AI_CANONNAME, service "80"),
 * gai_stream (SOCK_STREAM, service "http"), gai6 (AF_INET6 + AI_V4MAPPED), hbn (gethostbyname),
 * hbn2 (gethostbyname2 AF_INET6), hbnr (gethostbyname_r, first with a too small buffer). */
#include "common.h"

static void print_list(const char *op, struct addrinfo *res)
{
    char buf[128];
    if (res && res->ai_canonname) printf("%s canon=%s\n", op, res->ai_canonname);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        printf("%s family=%d socktype=%d protocol=%d addr=%s\n", op, ai->ai_family, ai->ai_socktype, ai->ai_protocol,
               fmt_sa(ai->ai_addr, buf, sizeof buf));
}

static void gai(const char *op, const char *name, int family, int socktype, int flags, const char *service)
{
    struct addrinfo hints = { .ai_family = family, .ai_socktype = socktype, .ai_flags = flags }, *res = NULL;
    int r = getaddrinfo(name, service, &hints, &res);
    printf("%s %s rc=%d (%s)\n", op, name, r, r ? gai_strerror(r) : "ok");
    if (r == 0) {
        print_list(op, res);
        freeaddrinfo(res);
    }
}

static void print_hostent(const char *op, const struct hostent *h)
{
    char ip[INET6_ADDRSTRLEN];
    printf("%s name=%s length=%d\n", op, h->h_name, h->h_length);
    for (char **a = h->h_addr_list; *a; a++) printf("%s addr=%s\n", op, inet_ntop(h->h_addrtype, *a, ip, sizeof ip));
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        char *op = argv[i], *name = strchr(op, '=');
        if (!name) return 2;
        *name++ = '\0';
        if (!strcmp(op, "gai")) gai(op, name, AF_UNSPEC, 0, AI_CANONNAME, "80");
        else if (!strcmp(op, "gai_stream")) gai(op, name, AF_UNSPEC, SOCK_STREAM, 0, "http");
        else if (!strcmp(op, "gai6")) gai(op, name, AF_INET6, SOCK_STREAM, AI_V4MAPPED, NULL);
        else if (!strcmp(op, "gai_badservice")) gai(op, name, AF_UNSPEC, SOCK_STREAM, 0, "no-such-service");
        else if (!strcmp(op, "hbn") || !strcmp(op, "hbn2")) {
            struct hostent *h = op[3] ? gethostbyname2(name, AF_INET6) : gethostbyname(name);
            if (h) print_hostent(op, h);
            else printf("%s %s h_errno=%d\n", op, name, h_errno);
        } else if (!strcmp(op, "hbnr")) {
            struct hostent he, *result = NULL;
            char small[8], big[1024];
            int herr = 0;
            int r = gethostbyname_r(name, &he, small, sizeof small, &result, &herr);
            printf("hbnr small rc=%s\n", r ? errname(r) : "0");
            r = gethostbyname_r(name, &he, big, sizeof big, &result, &herr);
            if (r == 0 && result) print_hostent(op, result);
            else printf("hbnr %s rc=%d result=%s h_errno=%d\n", name, r, result ? "set" : "NULL", herr);
        } else {
            return 2;
        }
    }
    return 0;
}
