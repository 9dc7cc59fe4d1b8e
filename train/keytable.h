/*
 * keytable.h: the one engine that reads a YAML tree (train/yaml_tree.h) into a C struct, writes
 * the struct back as a tree, compares two structs and frees what they own, all driven by a key
 * table: one st_key per key with its type, the field's offset in the struct and its range. Train
 * configs (train/config.c) and sweep files (train/sweep.c) are tables over this engine, so a key
 * is validated, reported and written back the same way in both.
 *
 * Reading: every key of the mapping must be in the table ("unknown key (HINT: the keys here
 * are: ...)"); a key absent from the mapping keeps the value already in the struct (the
 * caller's default). Errors are -1 with st_error_get() = "SOURCE:LINE:COLUMN: key.path:
 * problem", where SOURCE:LINE:COLUMN is where the offending node was written.
 *
 * Types the engine knows are listed in st_key_type; a key whose value needs more (a list of
 * datasets, phases) names an st_key_codec with the four operations. ST_KEY_TREE keys are
 * accepted but left to the caller (it reads them from the tree itself) and not written back.
 *
 * Ownership: strings and lists read into a struct are owned by it (st_keys_free releases them);
 * st_keys_write returns a new tree the caller frees.
 */
#ifndef ST_KEYTABLE_H
#define ST_KEYTABLE_H

#include <stddef.h>

#include "../kernels/check.h"
#include "yaml_tree.h"

typedef enum {
    ST_KEY_INT,     /* int, range lo..hi */
    ST_KEY_U64,     /* uint64_t, >= 0 (a YAML integer) */
    ST_KEY_FLOAT,   /* double, range lo..hi (ST_KEY_LO_OPEN/HI_OPEN make a bound strict) */
    ST_KEY_BOOL,    /* int 0/1 from true/false (ST_KEY_NEGATE: stored as 1/0) */
    ST_KEY_STR,     /* char *, non-empty and not null */
    ST_KEY_OPTSTR,  /* char *, or NULL for null */
    ST_KEY_PATH,    /* char *, NULL for null, resolved absolute against the source (st_key_resolve_path) */
    ST_KEY_ENUM,    /* int index into choices, plus value_base */
    ST_KEY_FLOAT2,  /* double at offset and double at offset2, each in range (ST_KEY_ORDERED: first <= second) */
    ST_KEY_STRLIST, /* char ** at offset, int count at offset2 */
    ST_KEY_SECTION, /* nested mapping; sub-table offsets relative to base + offset
                     * (ST_KEY_SHORTHAND: a scalar stands for the sub-table's first key) */
    ST_KEY_CUSTOM,  /* codec's operations */
    ST_KEY_TREE     /* accepted, read and written by the caller */
} st_key_type;

enum { ST_KEY_LO_OPEN = 1, ST_KEY_HI_OPEN = 2, ST_KEY_NEGATE = 4, ST_KEY_ORDERED = 8, ST_KEY_SHORTHAND = 16 };

struct st_key;
typedef struct st_key_codec {
    int (*read)(const struct st_key *k, const st_ynode *node, void *base, const char *path);
    st_ynode *(*write)(const struct st_key *k, const void *base);
    int (*equal)(const struct st_key *k, const void *a, const void *b);
    void (*free)(const struct st_key *k, void *base);
} st_key_codec;

typedef struct st_key {
    const char *name; /* NULL ends a table */
    st_key_type type;
    size_t offset;
    size_t offset2;
    double lo, hi;
    unsigned flags;
    const char *const *choices;  /* ENUM: NULL-terminated */
    int value_base;              /* ENUM: stored value = index + value_base */
    const struct st_key *sub;    /* SECTION: the sub-table */
    const st_key_codec *codec;   /* CUSTOM */
} st_key;

/* Table-building macros: define STRUCT as the struct type the table fills first. */
#define ST_KEY(key, kind, field, min, max, fl) \
    {.name = key, .type = kind, .offset = offsetof(STRUCT, field), .lo = min, .hi = max, .flags = fl}
#define ST_KEY_ENUM_OF(key, field, names, base) \
    {.name = key, .type = ST_KEY_ENUM, .offset = offsetof(STRUCT, field), .choices = names, .value_base = base}
#define ST_KEY_PAIR(key, kind, field, field2) \
    {.name = key, .type = kind, .offset = offsetof(STRUCT, field), .offset2 = offsetof(STRUCT, field2)}
#define ST_KEY_SUB(key, field, table, fl) \
    {.name = key, .type = ST_KEY_SECTION, .offset = offsetof(STRUCT, field), .sub = table, .flags = fl}
#define ST_KEY_FLAT(key, table) {.name = key, .type = ST_KEY_SECTION, .sub = table} /* keys of the same struct */
#define ST_KEY_WITH(key, kind_codec, field, field2, min, max, fl)                                                   \
    {.name = key, .type = ST_KEY_CUSTOM, .offset = offsetof(STRUCT, field), .offset2 = offsetof(STRUCT, field2), \
     .lo = min, .hi = max, .flags = fl, .codec = kind_codec}
#define ST_KEY_CALLER(key) {.name = key, .type = ST_KEY_TREE}
#define ST_KEY_END {.name = NULL}

/* Field access for codecs. */
#define ST_KEY_AT(base, off, type) ((type *)((char *)(base) + (off)))
#define ST_KEY_AT_C(base, off, type) ((const type *)((const char *)(base) + (off)))

/* Read a mapping into base; prefix is the key path of the mapping ("" at the top). */
int st_keys_read(const st_ynode *map, const st_key *table, void *base, const char *prefix);
/* The struct as a mapping with every key of the table (ST_KEY_TREE keys left out). */
st_ynode *st_keys_write(const st_key *table, const void *base);
/* 1 when every key of the table has the same value in a and b. */
int st_keys_equal(const st_key *table, const void *a, const void *b);
/* Free what the table's keys own in base and zero those fields. */
void st_keys_free(const st_key *table, void *base);

/* "SOURCE:LINE:COLUMN: path: message" into st_error; returns -1. */
int st_key_error(const st_ynode *node, const char *path, const char *fmt, ...) ST_PRINTF(3, 4);

/* Scalar readers for codecs, with the engine's messages; range checks use k (NULL: none). */
int st_key_read_float(const st_ynode *node, const char *path, const st_key *k, double *out);
int st_key_read_string(const st_ynode *node, const char *path, char **out);
int st_key_read_strlist(const st_ynode *node, const char *path, char ***list, int *n);
int st_key_range_ok(const st_key *k, double v);
int st_key_range_error(const st_ynode *node, const char *path, const st_key *k, const char *text);
int st_key_expect_scalar(const st_ynode *node, const char *path, const char *what);
void st_key_free_strlist(char **list, int n);
st_ynode *st_key_strlist_node(char *const *list, int n);
int st_key_strlist_equal(char *const *a, int na, char *const *b, int nb);
/* "prefix.index" / "prefix.name" key paths for messages. */
void st_key_index_path(char *out, size_t size, const char *prefix, int index);
void st_key_join_path(char *out, size_t size, const char *prefix, const char *name);

/* The absolute path of a scalar node, resolved against the directory of the file it was
 * written in (the current directory when it came from --set), "." and ".." removed. Caller frees. */
char *st_key_resolve_path(const st_ynode *node);

#endif
