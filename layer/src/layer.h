/* Shared by every hook family: settings, logging, the real libc functions, re-entry guard. */
#ifndef MIRRORD_LAYER_H
#define MIRRORD_LAYER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <sys/types.h>

enum layer_log_level { LOG_OFF = 0, LOG_ERROR = 1, LOG_DEBUG = 2 };

struct layer_config {
    bool enabled;                /* MIRRORD_LAYER_ADDR (or the session file's) set and valid */
    bool from_file;              /* settings from a live devcontainer session file (session_file.c) */
    struct sockaddr_in intproxy; /* where the intproxy listens */
    int log_level;
    int timeout_ms; /* receive timeout on the intproxy connection */
};

/* Idempotent, safe from any thread and from other libraries' constructors. */
void layer_init(void);
const struct layer_config *layer_config(void);

/* A MIRRORD_* setting: from the session file when the session came from there, else the environment. */
const char *layer_setting(const char *name);

/* True while this thread runs layer code: hooks then go straight to libc. */
bool layer_inside(void);
void layer_enter(void);
void layer_leave(void);

void layer_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The next definition of `name` after the layer, or NULL when it is missing or is our own. */
void *layer_next_symbol(const char *name, void *self);

/* Declares `real_NAME`, resolved lazily on first use. `self` is the hook of the same name. */
#define LAYER_REAL(ret, name, params)                                                                   \
    static ret(*real_##name##_ptr) params;                                                              \
    static ret(*real_##name##_fn(void)) params                                                          \
    {                                                                                                   \
        if (!__atomic_load_n(&real_##name##_ptr, __ATOMIC_ACQUIRE)) {                                   \
            __atomic_store_n(&real_##name##_ptr, (ret(*) params)layer_next_symbol(#name, (void *)name), \
                             __ATOMIC_RELEASE);                                                         \
        }                                                                                               \
        return real_##name##_ptr;                                                                       \
    }

#endif
