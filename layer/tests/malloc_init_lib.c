/* An allocator that, like jemalloc, reads its settings with readlink("/etc/malloc.conf") on its
 * first call while holding its init lock: the layer may initialise right there, and must not
 * allocate (that would re-enter this init, a deadlock in jemalloc; here an abort with a message).
 * Preloaded after the layer, so its constructor, which makes the first allocation, runs first. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void __libc_free(void *);

static bool ready, initialising;

static void say(const char *s)
{
    ssize_t w = write(STDERR_FILENO, s, strlen(s));
    (void)w;
}

static void first_call(void)
{
    if (ready) return;
    if (initialising) {
        say("malloc-init: re-entered during its own init\n");
        abort();
    }
    initialising = true;
    say("malloc-init: begin\n");
    char buf[256];
    ssize_t r = readlink("/etc/malloc.conf", buf, sizeof buf);
    (void)r;
    say("malloc-init: end\n");
    initialising = false;
    ready = true;
}

void *malloc(size_t n)
{
    first_call();
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    first_call();
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    first_call();
    return __libc_realloc(p, n);
}

void free(void *p) { __libc_free(p); }

/* volatile: the compiler would drop a malloc/free pair. */
__attribute__((constructor)) static void start(void)
{
    void *volatile p = malloc(16);
    free(p);
}
