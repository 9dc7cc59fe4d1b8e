/*
 * yaml_tree.h: a small document tree over libyaml events, with the source and file:line:column of
 * every node, so config errors can say where a value came from.
 *
 * Used by train/keytable.c (the key-table engine of train configs and sweep files), train/config.c
 * (--set overrides), train/sweep.c (sweep files) and cmd/sweep.c.
 *
 * Ownership: a tree owns all its nodes and strings; st_ynode_free() frees a node and everything
 * below it. Every node records `source` (a file path, or a label such as "--set optimizer.lr=1"
 * for text that did not come from a file; `from_file` says which), so a node moved into another
 * tree (st_ynode_set_path) keeps its origin: relative paths are later resolved against the
 * directory of the file the value was written in.
 *
 * Scalars keep their text and whether they were written plain (unquoted): only plain scalars are
 * resolved to null/bool/number by the readers; a quoted "null" is the string null.
 * Anchors and aliases are rejected (configs stay explicit); duplicate keys are errors.
 */
#ifndef ST_YAML_TREE_H
#define ST_YAML_TREE_H

#include <jansson.h>
#include <stdio.h>

#include "data/base/fileio.h" /* st_atomic_open, st_atomic_commit: used with this writer */

typedef enum { ST_YNODE_SCALAR, ST_YNODE_SEQ, ST_YNODE_MAP } st_ynode_kind;

typedef struct st_ynode {
    st_ynode_kind kind;
    char *source;            /* file path or label; owned */
    int from_file;           /* 1: source is a file path */
    int line, column;        /* 1-based position of the node's start */
    char *value;             /* SCALAR: text; owned */
    int plain;               /* SCALAR: written unquoted */
    int n;                   /* SEQ: items; MAP: pairs */
    struct st_ynode **items; /* SEQ: n items; MAP: n values; owned */
    struct st_ynode **keys;  /* MAP: n scalar keys; owned */
} st_ynode;

/* Parse one document. Empty input (only comments, or `---` alone) gives an empty mapping; a
 * document that is just `null` or `~` is a null scalar. Returns NULL with st_error_set()
 * "source:line:column: <libyaml problem>" on malformed YAML, aliases or duplicate keys. */
st_ynode *st_yaml_load_file(const char *path);
st_ynode *st_yaml_load_string(const char *text, const char *source);
void st_ynode_free(st_ynode *node);

/* Constructors for writers (source "<generated>"). st_ynode_map_add takes ownership of value. */
st_ynode *st_ynode_new_scalar(const char *text, int plain);
st_ynode *st_ynode_new_seq(void);
st_ynode *st_ynode_new_map(void);
/* Plain number scalars: integers as %lld, doubles as the shortest text that reads back exactly. */
st_ynode *st_ynode_new_int(long long v);
st_ynode *st_ynode_new_number(double v);
void st_ynode_seq_add(st_ynode *seq, st_ynode *item);
void st_ynode_map_add(st_ynode *map, const char *key, st_ynode *value);
st_ynode *st_ynode_copy(const st_ynode *node);

/* Lookup of a key in a mapping; NULL when absent or when map is not a mapping. */
st_ynode *st_ynode_get(const st_ynode *map, const char *key);
/* Remove a key from a mapping (no-op when absent). */
void st_ynode_remove(st_ynode *map, const char *key);

/* Set the value at a dotted path ("optimizer.lr", "phases.1.epochs") to a copy of value.
 * Missing mappings on the way are created; a numeric segment indexes a sequence. When both the
 * existing value and the new one are mappings they are merged key by key (recursively), so
 * `model: {arch: x}` changes the architecture and keeps the other model keys.
 * Returns -1 with st_error_set() when the path crosses a scalar or an index is out of range. */
int st_ynode_set_path(st_ynode *root, const char *path, const st_ynode *value);

/* 1 when the scalar is plain and reads as YAML null (null, Null, NULL, ~) */
int st_ynode_is_null(const st_ynode *node);
/* "source:line:column" of a node into buf. */
const char *st_ynode_where(const st_ynode *node, char *buf, size_t size);
/* Short description for messages: "mapping", "sequence", or the scalar text in quotes. */
const char *st_ynode_describe(const st_ynode *node, char *buf, size_t size);
/* 1 when two trees hold the same kinds, keys and scalar texts (positions ignored). */
int st_ynode_equal(const st_ynode *a, const st_ynode *b);

/* Block YAML text of a tree by libyaml's emitter (caller frees), NULL with st_error_set() when
 * the emitter refuses it. Plain scalars stay plain; quoted ones are double-quoted when plain
 * text would read differently. header: optional comment lines first (each prefixed "# ").
 * st_yaml_write_file: the same text written atomically (path.tmp, fsync, rename). */
char *st_yaml_text(const st_ynode *root, const char *header);
int st_yaml_write_file(const st_ynode *root, const char *path, const char *header);
/* Compact one-line YAML flow text ("{arch: x, weights: null}") into buf for messages/CSV. */
const char *st_ynode_flow(const st_ynode *node, char *buf, size_t size);
/* The JSON value of a tree (caller owns the reference): plain scalars that read as
 * null/bool/int/float become those JSON types, all else a JSON string. */
json_t *st_ynode_to_json(const st_ynode *node);

/* Plain-scalar number parsing used by every reader: whole text must be consumed. */
int st_yaml_parse_int(const char *text, long long *out);
int st_yaml_parse_float(const char *text, double *out);

#endif
