/*
 * keytable.c: the key-table engine (contract in keytable.h): reading with validation, writing
 * back, comparing and freeing, one switch per operation over the key types, codecs for the rest.
 */
#include "keytable.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AT ST_KEY_AT
#define AT_C ST_KEY_AT_C
typedef char **string_list; /* so AT_C(base, off, string_list) is char **const * */

/* ---- messages and key paths ----------------------------------------------------------------- */

int st_key_error(const st_ynode *node, const char *path, const char *fmt, ...) {
    char where[1200], msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return st_error_set("%s: %s: %s", st_ynode_where(node, where, sizeof where), path, msg);
}

/* A (never expected) truncation only shortens a message. */
void st_key_join_path(char *out, size_t size, const char *prefix, const char *name) {
    int len = prefix[0] ? snprintf(out, size, "%s.%s", prefix, name) : snprintf(out, size, "%s", name);
    if (len < 0) out[0] = '\0';
}

void st_key_index_path(char *out, size_t size, const char *prefix, int index) {
    if (snprintf(out, size, "%s.%d", prefix, index) < 0) out[0] = '\0';
}

static void list_names(const char *const *names, char *buf, size_t size) {
    buf[0] = '\0';
    for (int i = 0; names[i]; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", i ? ", " : "", names[i]);
    }
}

static void list_keys(const st_key *table, char *buf, size_t size) {
    buf[0] = '\0';
    for (const st_key *k = table; k->name; k++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", used ? ", " : "", k->name);
    }
}

/* ---- paths ---------------------------------------------------------------------------------- */

/* Lexically remove "." and "name/.." segments of an absolute path, in place. */
static void normalize_path(char *path) {
    char *out = path;
    const char *in = path;
    while (*in) {
        while (*in == '/') in++;
        const char *end = strchr(in, '/');
        size_t len = end ? (size_t)(end - in) : strlen(in);
        if (len == 0) break;
        if (len == 1 && in[0] == '.') {
        } else if (len == 2 && in[0] == '.' && in[1] == '.') {
            while (out > path && *--out != '/') {
            }
        } else {
            *out++ = '/';
            memmove(out, in, len);
            out += len;
        }
        in += len;
    }
    if (out == path) *out++ = '/';
    *out = '\0';
}

char *st_key_resolve_path(const st_ynode *node) {
    const char *value = node->value;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) ST_FAIL("getcwd failed: %s", strerror(errno));
    size_t size = strlen(cwd) + strlen(node->source) + strlen(value) + 4;
    char *out = ST_MALLOC(size);
    if (value[0] == '/') {
        snprintf(out, size, "%s", value);
    } else if (node->from_file) {
        const char *slash = strrchr(node->source, '/');
        int dir_len = slash ? (int)(slash - node->source) : 0;
        if (node->source[0] == '/')
            snprintf(out, size, "%.*s/%s", dir_len, node->source, value);
        else
            snprintf(out, size, "%s/%.*s/%s", cwd, dir_len, node->source, value);
    } else {
        snprintf(out, size, "%s/%s", cwd, value);
    }
    normalize_path(out);
    return out;
}

/* ---- scalar readers ------------------------------------------------------------------------- */

int st_key_expect_scalar(const st_ynode *node, const char *path, const char *what) {
    char buf[256];
    if (node->kind == ST_YNODE_SCALAR) return 0;
    return st_key_error(node, path, "expected %s, got %s", what, st_ynode_describe(node, buf, sizeof buf));
}

int st_key_range_ok(const st_key *k, double v) {
    if (!k) return 1;
    if (k->flags & ST_KEY_LO_OPEN ? !(v > k->lo) : !(v >= k->lo)) return 0;
    if (k->flags & ST_KEY_HI_OPEN ? !(v < k->hi) : !(v <= k->hi)) return 0;
    return 1;
}

int st_key_range_error(const st_ynode *node, const char *path, const st_key *k, const char *text) {
    char hi[64] = "";
    if (isfinite(k->hi))
        snprintf(hi, sizeof hi, ", %g%s", k->hi, k->flags & ST_KEY_HI_OPEN ? ")" : "]");
    else
        snprintf(hi, sizeof hi, ", inf)");
    return st_key_error(node, path, "%s is out of range: must be in %s%g%s", text,
                        k->flags & ST_KEY_LO_OPEN ? "(" : "[", k->lo, hi);
}

int st_key_read_float(const st_ynode *node, const char *path, const st_key *k, double *out) {
    double v;
    if (st_key_expect_scalar(node, path, "a number")) return -1;
    if (st_yaml_parse_float(node->value, &v) != 0)
        return st_key_error(node, path, "expected a number, got '%s'", node->value);
    if (!st_key_range_ok(k, v)) return st_key_range_error(node, path, k, node->value);
    *out = v;
    return 0;
}

static int read_int(const st_ynode *node, const char *path, const st_key *k, long long *out) {
    long long v;
    if (st_key_expect_scalar(node, path, "an integer")) return -1;
    if (st_yaml_parse_int(node->value, &v) != 0)
        return st_key_error(node, path, "expected an integer, got '%s'", node->value);
    if (!st_key_range_ok(k, (double)v)) return st_key_range_error(node, path, k, node->value);
    *out = v;
    return 0;
}

static int read_bool(const st_ynode *node, const char *path, int *out) {
    if (st_key_expect_scalar(node, path, "true or false")) return -1;
    const char *v = node->value;
    if (node->plain && (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE")))
        *out = 1;
    else if (node->plain && (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE")))
        *out = 0;
    else
        return st_key_error(node, path, "expected true or false, got '%s'", v);
    return 0;
}

int st_key_read_string(const st_ynode *node, const char *path, char **out) {
    if (st_key_expect_scalar(node, path, "a string")) return -1;
    if (st_ynode_is_null(node)) return st_key_error(node, path, "expected a string, got null");
    free(*out);
    *out = ST_STRDUP(node->value);
    return 0;
}

static int read_enum(const st_ynode *node, const char *path, const st_key *k, int *out) {
    char choices[512];
    if (st_key_expect_scalar(node, path, "a name")) return -1;
    for (int i = 0; k->choices[i]; i++)
        if (!strcmp(node->value, k->choices[i])) {
            *out = i + k->value_base;
            return 0;
        }
    list_names(k->choices, choices, sizeof choices);
    return st_key_error(node, path, "'%s' is not one of: %s", node->value, choices);
}

void st_key_free_strlist(char **list, int n) {
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}

int st_key_read_strlist(const st_ynode *node, const char *path, char ***list, int *n) {
    char buf[256];
    if (node->kind != ST_YNODE_SEQ)
        return st_key_error(node, path, "expected a list like [a, b], got %s", st_ynode_describe(node, buf, sizeof buf));
    char **items = ST_CALLOC((size_t)node->n, sizeof *items);
    for (int i = 0; i < node->n; i++) {
        char item_path[512];
        st_key_index_path(item_path, sizeof item_path, path, i);
        if (st_key_read_string(node->items[i], item_path, &items[i]) != 0) {
            st_key_free_strlist(items, node->n);
            return -1;
        }
    }
    st_key_free_strlist(*list, *n);
    *list = items;
    *n = node->n;
    return 0;
}

static int read_float2(const st_key *k, const st_ynode *node, void *base, const char *path) {
    double v[2];
    char buf[256];
    if (node->kind != ST_YNODE_SEQ || node->n != 2)
        return st_key_error(node, path, "expected a pair [a, b], got %s", st_ynode_describe(node, buf, sizeof buf));
    for (int i = 0; i < 2; i++) {
        char item_path[300];
        st_key_index_path(item_path, sizeof item_path, path, i);
        if (st_key_read_float(node->items[i], item_path, k, &v[i])) return -1;
    }
    if ((k->flags & ST_KEY_ORDERED) && v[0] > v[1])
        return st_key_error(node, path, "min %g is larger than max %g", v[0], v[1]);
    *AT(base, k->offset, double) = v[0];
    *AT(base, k->offset2, double) = v[1];
    return 0;
}

static int read_optional(const st_key *k, const st_ynode *node, void *base, const char *path) {
    char **slot = AT(base, k->offset, char *);
    if (st_key_expect_scalar(node, path, k->type == ST_KEY_PATH ? "a path or null" : "a string or null")) return -1;
    if (!st_ynode_is_null(node) && k->type == ST_KEY_OPTSTR) return st_key_read_string(node, path, slot);
    free(*slot);
    *slot = st_ynode_is_null(node) ? NULL : st_key_resolve_path(node);
    return 0;
}

/* ---- reading -------------------------------------------------------------------------------- */

static int read_number(const st_key *k, const st_ynode *node, void *base, const char *path) {
    long long iv = 0;
    if (k->type == ST_KEY_FLOAT) return st_key_read_float(node, path, k, AT(base, k->offset, double));
    if (read_int(node, path, k->type == ST_KEY_INT ? k : NULL, &iv)) return -1;
    if (k->type == ST_KEY_INT) {
        *AT(base, k->offset, int) = (int)iv;
        return 0;
    }
    if (iv < 0) return st_key_error(node, path, "must be >= 0, got %lld", iv);
    *AT(base, k->offset, uint64_t) = (uint64_t)iv;
    return 0;
}

static int read_value(const st_key *k, const st_ynode *node, void *base, const char *path) {
    switch (k->type) {
    case ST_KEY_INT:
    case ST_KEY_U64:
    case ST_KEY_FLOAT: return read_number(k, node, base, path);
    case ST_KEY_BOOL: {
        int v = 0;
        if (read_bool(node, path, &v)) return -1;
        *AT(base, k->offset, int) = k->flags & ST_KEY_NEGATE ? !v : v;
        return 0;
    }
    case ST_KEY_STR: return st_key_read_string(node, path, AT(base, k->offset, char *));
    case ST_KEY_OPTSTR:
    case ST_KEY_PATH: return read_optional(k, node, base, path);
    case ST_KEY_ENUM: return read_enum(node, path, k, AT(base, k->offset, int));
    case ST_KEY_FLOAT2: return read_float2(k, node, base, path);
    case ST_KEY_STRLIST: return st_key_read_strlist(node, path, AT(base, k->offset, char **), AT(base, k->offset2, int));
    case ST_KEY_SECTION:
        if ((k->flags & ST_KEY_SHORTHAND) && node->kind == ST_YNODE_SCALAR)
            return read_value(&k->sub[0], node, AT(base, k->offset, char), path);
        return st_keys_read(node, k->sub, AT(base, k->offset, char), path);
    case ST_KEY_CUSTOM: return k->codec->read(k, node, base, path);
    case ST_KEY_TREE: return 0;
    }
    ST_FAIL("keytable: key type %d not handled", (int)k->type);
}

int st_keys_read(const st_ynode *map, const st_key *table, void *base, const char *prefix) {
    char buf[256];
    if (map->kind != ST_YNODE_MAP)
        return st_key_error(map, prefix[0] ? prefix : "(top level)", "expected a mapping of keys, got %s",
                            st_ynode_describe(map, buf, sizeof buf));
    for (int i = 0; i < map->n; i++) {
        const char *name = map->keys[i]->value;
        char path[512];
        st_key_join_path(path, sizeof path, prefix, name);
        const st_key *k = table;
        while (k->name && strcmp(k->name, name) != 0) k++;
        if (!k->name) {
            char keys[1024];
            list_keys(table, keys, sizeof keys);
            return st_key_error(map->keys[i], path, "unknown key (HINT: the keys here are: %s)", keys);
        }
        if (read_value(k, map->items[i], base, path) != 0) return -1;
    }
    return 0;
}

/* ---- writing -------------------------------------------------------------------------------- */

st_ynode *st_key_strlist_node(char *const *list, int n) {
    st_ynode *seq = st_ynode_new_seq();
    for (int i = 0; i < n; i++) st_ynode_seq_add(seq, st_ynode_new_scalar(list[i], 0));
    return seq;
}

static st_ynode *optional_node(const char *v) { return v ? st_ynode_new_scalar(v, 0) : st_ynode_new_scalar("null", 1); }

static st_ynode *write_value(const st_key *k, const void *base) {
    switch (k->type) {
    case ST_KEY_INT: return st_ynode_new_int(*AT_C(base, k->offset, int));
    case ST_KEY_U64: return st_ynode_new_int((long long)*AT_C(base, k->offset, uint64_t));
    case ST_KEY_FLOAT: return st_ynode_new_number(*AT_C(base, k->offset, double));
    case ST_KEY_BOOL: {
        int v = *AT_C(base, k->offset, int);
        return st_ynode_new_scalar((k->flags & ST_KEY_NEGATE ? !v : v) ? "true" : "false", 1);
    }
    case ST_KEY_STR: return st_ynode_new_scalar(*AT_C(base, k->offset, char *), 0);
    case ST_KEY_OPTSTR:
    case ST_KEY_PATH: return optional_node(*AT_C(base, k->offset, char *));
    case ST_KEY_ENUM: return st_ynode_new_scalar(k->choices[*AT_C(base, k->offset, int) - k->value_base], 1);
    case ST_KEY_FLOAT2: {
        st_ynode *seq = st_ynode_new_seq();
        st_ynode_seq_add(seq, st_ynode_new_number(*AT_C(base, k->offset, double)));
        st_ynode_seq_add(seq, st_ynode_new_number(*AT_C(base, k->offset2, double)));
        return seq;
    }
    case ST_KEY_STRLIST: return st_key_strlist_node(*AT_C(base, k->offset, string_list), *AT_C(base, k->offset2, int));
    case ST_KEY_SECTION: return st_keys_write(k->sub, AT_C(base, k->offset, char));
    case ST_KEY_CUSTOM: return k->codec->write(k, base);
    case ST_KEY_TREE: break;
    }
    ST_FAIL("keytable: key type %d not written", (int)k->type);
}

st_ynode *st_keys_write(const st_key *table, const void *base) {
    st_ynode *map = st_ynode_new_map();
    for (const st_key *k = table; k->name; k++)
        if (k->type != ST_KEY_TREE) st_ynode_map_add(map, k->name, write_value(k, base));
    return map;
}

/* ---- comparing ------------------------------------------------------------------------------ */

static int str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

int st_key_strlist_equal(char *const *a, int na, char *const *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (!str_eq(a[i], b[i])) return 0;
    return 1;
}

static int equal_value(const st_key *k, const void *a, const void *b) {
    switch (k->type) {
    case ST_KEY_INT:
    case ST_KEY_BOOL:
    case ST_KEY_ENUM: return *AT_C(a, k->offset, int) == *AT_C(b, k->offset, int);
    case ST_KEY_U64: return *AT_C(a, k->offset, uint64_t) == *AT_C(b, k->offset, uint64_t);
    case ST_KEY_FLOAT: return *AT_C(a, k->offset, double) == *AT_C(b, k->offset, double);
    case ST_KEY_STR:
    case ST_KEY_OPTSTR:
    case ST_KEY_PATH: return str_eq(*AT_C(a, k->offset, char *), *AT_C(b, k->offset, char *));
    case ST_KEY_FLOAT2:
        return *AT_C(a, k->offset, double) == *AT_C(b, k->offset, double) &&
               *AT_C(a, k->offset2, double) == *AT_C(b, k->offset2, double);
    case ST_KEY_STRLIST:
        return st_key_strlist_equal(*AT_C(a, k->offset, string_list), *AT_C(a, k->offset2, int),
                                    *AT_C(b, k->offset, string_list), *AT_C(b, k->offset2, int));
    case ST_KEY_SECTION: return st_keys_equal(k->sub, AT_C(a, k->offset, char), AT_C(b, k->offset, char));
    case ST_KEY_CUSTOM: return k->codec->equal(k, a, b);
    case ST_KEY_TREE: return 1;
    }
    ST_FAIL("keytable: key type %d not compared", (int)k->type);
}

int st_keys_equal(const st_key *table, const void *a, const void *b) {
    for (const st_key *k = table; k->name; k++)
        if (!equal_value(k, a, b)) return 0;
    return 1;
}

/* ---- freeing -------------------------------------------------------------------------------- */

void st_keys_free(const st_key *table, void *base) {
    for (const st_key *k = table; k->name; k++) {
        switch (k->type) {
        case ST_KEY_STR:
        case ST_KEY_OPTSTR:
        case ST_KEY_PATH:
            free(*AT(base, k->offset, char *));
            *AT(base, k->offset, char *) = NULL;
            break;
        case ST_KEY_STRLIST:
            st_key_free_strlist(*AT(base, k->offset, char **), *AT(base, k->offset2, int));
            *AT(base, k->offset, char **) = NULL;
            *AT(base, k->offset2, int) = 0;
            break;
        case ST_KEY_SECTION: st_keys_free(k->sub, AT(base, k->offset, char)); break;
        case ST_KEY_CUSTOM: k->codec->free(k, base); break;
        default: break;
        }
    }
}
