/*
 * gethostname / uname: the target's host name (feature.hostname). The CLI puts it in
 * MIRRORD_HOSTNAME for the session's processes; without it both report the local machine's.
 */
#define _GNU_SOURCE
#include "layer.h"

#include <errno.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

LAYER_REAL(int, gethostname, (char *, size_t))
LAYER_REAL(int, uname, (struct utsname *))

static const char *session_hostname(void)
{
    if (layer_inside() || !layer_config()->enabled) return NULL;
    const char *h = layer_setting("MIRRORD_HOSTNAME");
    return h && *h ? h : NULL;
}

int gethostname(char *name, size_t len)
{
    layer_init();
    const char *h = session_hostname();
    if (!h) {
        if (!real_gethostname_fn()) {
            errno = ENOSYS;
            return -1;
        }
        return real_gethostname_fn()(name, len);
    }
    /* As glibc: the name and its terminating zero must fit. */
    size_t n = strlen(h);
    if (n + 1 > len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(name, h, n + 1);
    return 0;
}

int uname(struct utsname *buf)
{
    layer_init();
    if (!real_uname_fn()) {
        errno = ENOSYS;
        return -1;
    }
    int r = real_uname_fn()(buf);
    const char *h = r == 0 ? session_hostname() : NULL;
    if (h) {
        /* The kernel's own limit for a node name is the field's size: a longer one is cut. */
        strncpy(buf->nodename, h, sizeof buf->nodename - 1);
        buf->nodename[sizeof buf->nodename - 1] = '\0';
    }
    return r;
}
