/* t_threads NAME PORT N [PATH]: N threads start at once. Without PATH each resolves NAME and
 * connects to the answer. With PATH the calls are mixed by thread number: resolve + connect,
 * connect to the address resolved before the threads started, or open + read the remote file
 * PATH (its first line is printed). */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>

static const char *name, *port, *path;
static struct sockaddr_storage resolved;
static socklen_t resolved_len;
static pthread_barrier_t start;

static int connect_one(long id, const struct sockaddr *sa, socklen_t len)
{
    char buf[128], line[128];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int c = connect(fd, sa, len);
    printf("thread %ld connect=%d peer=%s read=%s\n", id, c, peer_of(fd, buf, sizeof buf),
           c == 0 ? read_line(fd, line, sizeof line) : errname(errno));
    close(fd);
    return c != 0;
}

static int resolve_connect(long id)
{
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
    int r = getaddrinfo(name, port, &hints, &res);
    if (r != 0) {
        printf("thread %ld gai=%d\n", id, r);
        return 1;
    }
    int bad = connect_one(id, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return bad;
}

static int open_read(long id)
{
    char line[128];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("thread %ld open=%s\n", id, errname(errno));
        return 1;
    }
    printf("thread %ld file=%s\n", id, read_line(fd, line, sizeof line));
    close(fd);
    return 0;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    pthread_barrier_wait(&start);
    int bad;
    if (!path || id % 3 == 0) bad = resolve_connect(id);
    else if (id % 3 == 1) bad = connect_one(id, (struct sockaddr *)&resolved, resolved_len);
    else bad = open_read(id);
    return (void *)(long)bad;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    name = argv[1];
    port = argv[2];
    path = argc == 5 ? argv[4] : NULL;
    int n = atoi(argv[3]), ok = 0;
    if (n <= 0) return 2;
    if (path) {
        struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
        if (getaddrinfo(name, port, &hints, &res) != 0) return 1;
        memcpy(&resolved, res->ai_addr, res->ai_addrlen);
        resolved_len = res->ai_addrlen;
        freeaddrinfo(res);
    }
    pthread_t *t = calloc((size_t)n, sizeof *t);
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (long i = 0; i < n; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < n; i++) {
        void *r;
        pthread_join(t[i], &r);
        ok += r == NULL;
    }
    free(t);
    pthread_barrier_destroy(&start);
    printf("threads ok=%d\n", ok);
    return ok == n ? 0 : 1;
}
