/* t_threads NAME PORT N: N threads at once each resolve NAME and connect to the answer. */
#include "common.h"

#include <pthread.h>

static const char *name, *port;
static pthread_barrier_t start;

static void *worker(void *arg)
{
    long id = (long)arg;
    char buf[128], line[128];
    pthread_barrier_wait(&start);
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
    int r = getaddrinfo(name, port, &hints, &res);
    if (r != 0) {
        printf("thread %ld gai=%d\n", id, r);
        return (void *)1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int c = connect(fd, res->ai_addr, res->ai_addrlen);
    printf("thread %ld connect=%d peer=%s read=%s\n", id, c, peer_of(fd, buf, sizeof buf),
           c == 0 ? read_line(fd, line, sizeof line) : errname(errno));
    close(fd);
    freeaddrinfo(res);
    return (void *)(long)(c != 0);
}

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    name = argv[1];
    port = argv[2];
    int n = atoi(argv[3]), ok = 0;
    pthread_t t[64];
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (long i = 0; i < n; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < n; i++) {
        void *r;
        pthread_join(t[i], &r);
        ok += r == NULL;
    }
    printf("threads ok=%d\n", ok);
    return ok == n ? 0 : 1;
}
