/*
 * The C codec against test/vectors/layer-protocol.json, the file the TS codec is tested with:
 * every vector must decode to its message and its message must encode to the same bytes, and
 * every malformed frame must be rejected. Holds a minimal JSON reader (just what the file uses).
 */
#define _GNU_SOURCE
#include "lp_codec.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
struct json {
    enum jtype type;
    double num;
    char *str;   /* J_STR */
    size_t n;    /* J_ARR / J_OBJ: items */
    char **keys; /* J_OBJ */
    struct json **items;
};

static const char *p;

static void skip(void)
{
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
}

static void die(const char *what)
{
    fprintf(stderr, "lp_vectors: bad JSON near '%.20s': %s\n", p, what);
    exit(2);
}

static char *parse_string(void)
{
    if (*p != '"') die("string expected");
    p++;
    size_t max = 0; /* escapes only shrink: the raw length bounds the decoded one */
    while (p[max] && p[max] != '"') max += p[max] == '\\' && p[max + 1] ? 2 : 1;
    char *out = malloc(max + 1), *o = out;
    while (*p != '"') {
        if (!*p) die("unterminated string");
        if (*p == '\\') {
            p++;
            char c = *p++;
            if (c == 'n') *o++ = '\n';
            else if (c == 't') *o++ = '\t';
            else if (c == 'u') {
                unsigned cp;
                if (sscanf(p, "%4x", &cp) != 1) die("bad \\u");
                p += 4;
                if (cp < 0x80) *o++ = (char)cp;
                else if (cp < 0x800) {
                    *o++ = (char)(0xc0 | cp >> 6);
                    *o++ = (char)(0x80 | (cp & 0x3f));
                } else {
                    *o++ = (char)(0xe0 | cp >> 12);
                    *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                    *o++ = (char)(0x80 | (cp & 0x3f));
                }
            } else *o++ = c;
        } else {
            *o++ = *p++;
        }
    }
    p++;
    *o = '\0';
    return out;
}

static struct json *parse_value(void)
{
    struct json *j = calloc(1, sizeof *j);
    skip();
    if (*p == '{' || *p == '[') {
        bool obj = *p == '{';
        char close = obj ? '}' : ']';
        j->type = obj ? J_OBJ : J_ARR;
        p++;
        skip();
        while (*p != close) {
            if (obj) j->keys = realloc(j->keys, (j->n + 1) * sizeof *j->keys);
            j->items = realloc(j->items, (j->n + 1) * sizeof *j->items);
            if (obj) {
                j->keys[j->n] = parse_string();
                skip();
                if (*p++ != ':') die("':' expected");
            }
            j->items[j->n++] = parse_value();
            skip();
            if (*p == ',') {
                p++;
                skip();
            } else if (*p != close) die("',' expected");
        }
        p++;
    } else if (*p == '"') {
        j->type = J_STR;
        j->str = parse_string();
    } else if (!strncmp(p, "true", 4) || !strncmp(p, "false", 5)) {
        j->type = J_BOOL;
        j->num = *p == 't';
        p += *p == 't' ? 4 : 5;
    } else if (!strncmp(p, "null", 4)) {
        p += 4;
    } else {
        char *end;
        j->type = J_NUM;
        j->num = strtod(p, &end);
        if (end == p) die("value expected");
        p = end;
    }
    return j;
}

static void json_free(struct json *j)
{
    for (size_t i = 0; i < j->n; i++) {
        if (j->keys) free(j->keys[i]);
        json_free(j->items[i]);
    }
    free(j->keys);
    free(j->items);
    free(j->str);
    free(j);
}

static struct json *get(const struct json *o, const char *key)
{
    for (size_t i = 0; o && o->type == J_OBJ && i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return o->items[i];
    fprintf(stderr, "lp_vectors: missing key %s\n", key);
    exit(2);
}

static bool has(const struct json *o, const char *key)
{
    for (size_t i = 0; o && o->type == J_OBJ && i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return true;
    return false;
}

static double num(const struct json *o, const char *key) { return get(o, key)->num; }
static const char *str(const struct json *o, const char *key) { return get(o, key)->str; }

static size_t unhex(const char *hex, uint8_t *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
    return n;
}

static void addr_bytes(int family, const char *text, uint8_t bytes[16])
{
    memset(bytes, 0, 16);
    if (inet_pton(family == 4 ? AF_INET : AF_INET6, text, bytes) != 1) {
        fprintf(stderr, "lp_vectors: bad address %s\n", text);
        exit(2);
    }
}

static void to_addr(const struct json *a, struct lp_addr *out)
{
    out->family = (uint8_t)num(a, "family");
    addr_bytes(out->family, str(a, "address"), out->bytes);
    out->port = (uint16_t)num(a, "port");
}

static struct lp_str lstr(const char *s) { return (struct lp_str){ s, (uint16_t)strlen(s) }; }

/* The JSON message (TS field names) as the C struct. */
static void to_msg(const struct json *m, bool response, struct lp_msg *out, uint8_t *entries)
{
    memset(out, 0, sizeof *out);
    const char *kind = str(m, "kind");
    out->id = (uint32_t)num(m, "id");
    uint16_t resp = response ? LP_RESPONSE : 0;
    if (response) out->status = (int32_t)num(m, "status");
    if (!strcmp(kind, "hello")) {
        out->type = LP_HELLO | resp;
        if (!response) {
            out->version = (uint16_t)num(m, "version");
            out->pid = (uint32_t)num(m, "pid");
            out->ppid = (uint32_t)num(m, "ppid");
            out->parent_pid = (uint32_t)num(m, "parentPid");
            out->exe = lstr(str(m, "exe"));
        }
    } else if (!strcmp(kind, "connect")) {
        out->type = LP_CONNECT | resp;
        if (response) to_addr(get(m, "via"), &out->addr);
        else {
            out->proto = !strcmp(str(m, "proto"), "tcp") ? LP_PROTO_TCP : LP_PROTO_UDP;
            if (has(m, "takeSocket")) out->proto |= LP_PROTO_TAKE_SOCKET;
            to_addr(get(m, "remote"), &out->addr);
        }
    } else if (!strcmp(kind, "listen") || !strcmp(kind, "unlisten")) {
        out->type = (!strcmp(kind, "listen") ? LP_LISTEN : LP_UNLISTEN) | resp;
        if (!response) {
            to_addr(get(m, "requested"), &out->addr);
            if (!strcmp(kind, "listen")) to_addr(get(m, "bound"), &out->addr2);
        }
    } else if (!strcmp(kind, "connect_unix")) {
        out->type = LP_CONNECT_UNIX | resp;
        out->path = lstr(str(m, response ? "via" : "path"));
    } else if (!strcmp(kind, "env")) {
        out->type = LP_ENV | resp;
        if (!response) {
            out->env_start = (uint32_t)num(m, "start");
        } else {
            const struct json *list = get(m, "entries");
            out->env_total = (uint32_t)num(m, "total");
            out->env_count = (uint16_t)list->n;
            size_t len = 0;
            for (size_t i = 0; i < list->n; i++) {
                const struct json *e = list->items[i];
                const char *name = str(e, "name"), *value = has(e, "value") ? str(e, "value") : "";
                entries[len++] = has(e, "value") ? LP_ENV_SET : LP_ENV_UNSET;
                size_t nl = strlen(name), vl = strlen(value);
                entries[len++] = (uint8_t)nl;
                entries[len++] = (uint8_t)(nl >> 8);
                memcpy(entries + len, name, nl);
                len += nl;
                entries[len++] = (uint8_t)vl;
                entries[len++] = (uint8_t)(vl >> 8);
                memcpy(entries + len, value, vl);
                len += vl;
            }
            out->env_entries = entries;
            out->env_len = len;
        }
    } else if (!strcmp(kind, "accept") || !strcmp(kind, "accept_take")) {
        out->type = (!strcmp(kind, "accept") ? LP_ACCEPT : LP_ACCEPT_TAKE) | resp;
        to_addr(get(m, response ? "remote" : "peer"), &out->addr);
        if (response && has(m, "take")) out->take = lstr(str(m, "take"));
    } else {
        out->type = LP_GETADDRINFO | resp;
        if (response) {
            const struct json *list = get(m, "addresses");
            out->count = (uint16_t)list->n;
            for (size_t i = 0; i < list->n; i++) {
                uint8_t *e = entries + i * LP_GAI_ENTRY_SIZE;
                e[0] = (uint8_t)num(list->items[i], "family");
                addr_bytes(e[0], str(list->items[i], "address"), e + 1);
            }
            out->entries = entries;
            out->canonname = lstr(str(m, "canonname"));
        } else {
            out->node = lstr(str(m, "node"));
            out->family = (int32_t)num(m, "family");
        }
    }
}

static bool str_eq(struct lp_str a, struct lp_str b)
{
    return a.len == b.len && (!a.len || !memcmp(a.ptr, b.ptr, a.len));
}

static bool msg_eq(const struct lp_msg *a, const struct lp_msg *b)
{
    return a->id == b->id && a->type == b->type && a->status == b->status && a->version == b->version &&
           a->pid == b->pid && a->ppid == b->ppid && a->parent_pid == b->parent_pid && str_eq(a->exe, b->exe) &&
           a->proto == b->proto && a->addr.family == b->addr.family && a->addr.port == b->addr.port &&
           !memcmp(a->addr.bytes, b->addr.bytes, 16) && a->addr2.family == b->addr2.family &&
           a->addr2.port == b->addr2.port && !memcmp(a->addr2.bytes, b->addr2.bytes, 16) && str_eq(a->node, b->node) &&
           a->family == b->family && a->count == b->count &&
           (!a->count || !memcmp(a->entries, b->entries, a->count * LP_GAI_ENTRY_SIZE)) &&
           str_eq(a->canonname, b->canonname) && str_eq(a->path, b->path) && str_eq(a->take, b->take) &&
           a->env_start == b->env_start && a->env_total == b->env_total && a->env_count == b->env_count &&
           a->env_len == b->env_len && (!a->env_len || !memcmp(a->env_entries, b->env_entries, a->env_len));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: lp_vectors VECTORS.json\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    static char text[1 << 20];
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    p = text;
    struct json *doc = parse_value();

    static uint8_t want[LP_MAX_FRAME], got[LP_MAX_FRAME], entries[LP_MAX_FRAME];
    int failures = 0, checks = 0;
    const struct json *vectors = get(doc, "vectors");
    for (size_t i = 0; i < vectors->n; i++) {
        const struct json *v = vectors->items[i];
        const char *name = str(v, "name");
        size_t n = unhex(str(v, "hex"), want);
        struct lp_msg expected, decoded;
        to_msg(get(v, "message"), !strcmp(str(v, "direction"), "response"), &expected, entries);
        size_t len = lp_encode(&expected, got, sizeof got);
        checks += 2;
        if (len != n || memcmp(got, want, n)) {
            printf("FAIL encode: %s\n", name);
            failures++;
        }
        if (lp_decode(want, n, &decoded) != 0 || !msg_eq(&decoded, &expected)) {
            printf("FAIL decode: %s\n", name);
            failures++;
        }
    }
    const struct json *malformed = get(doc, "malformed");
    for (size_t i = 0; i < malformed->n; i++) {
        size_t n = unhex(str(malformed->items[i], "hex"), want);
        struct lp_msg m;
        checks++;
        /* Also exercised the way the layer reads: the announced size must match what arrived. */
        bool rejected = n < 4 || lp_frame_size(want) == 0 || lp_frame_size(want) != n || lp_decode(want, n, &m) != 0;
        if (!rejected) {
            printf("FAIL accepted malformed: %s\n", str(malformed->items[i], "name"));
            failures++;
        }
    }
    const struct json *lengths = get(doc, "lengths");
    for (size_t i = 0; i < lengths->n; i++) {
        unhex(str(lengths->items[i], "header"), want);
        checks++;
        if ((lp_frame_size(want) != 0) != (get(lengths->items[i], "ok")->num != 0)) {
            printf("FAIL length: %s\n", str(lengths->items[i], "name"));
            failures++;
        }
    }
    /* Remote files (section `files`): the C codec decodes each frame the TS codec wrote and
     * re-encodes it byte for byte (the TS test compares the decoded message field by field). */
    for (size_t i = 0; i < doc->n; i++) {
        if (strcmp(doc->keys[i], "files")) continue;
        const struct json *files = doc->items[i];
        for (size_t k = 0; k < files->n; k++) {
            const char *name = str(files->items[k], "name");
            size_t n = unhex(str(files->items[k], "hex"), want);
            struct lp_msg m;
            checks += 2;
            if (lp_decode(want, n, &m) != 0) {
                printf("FAIL decode: %s\n", name);
                failures++;
                continue;
            }
            size_t len = lp_encode(&m, got, sizeof got);
            if (len != n || memcmp(got, want, n)) {
                printf("FAIL re-encode: %s\n", name);
                failures++;
            }
        }
    }
    json_free(doc);
    printf("lp_vectors: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
