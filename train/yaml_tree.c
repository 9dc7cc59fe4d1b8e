/*
 * yaml_tree.c: libyaml event stream -> st_ynode tree, tree -> libyaml emitter, and the small
 * helpers around it (dotted-path set with merge, JSON values). Contract in yaml_tree.h.
 */
#include "yaml_tree.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "data/base/json.h"
#include "../kernels/check.h"

/* ---- nodes ------------------------------------------------------------------------------ */

static st_ynode *node_new(st_ynode_kind kind, const char *source, int from_file, int line, int column) {
    st_ynode *n = ST_CALLOC(1, sizeof *n);
    n->kind = kind;
    n->source = ST_STRDUP(source);
    n->from_file = from_file;
    n->line = line;
    n->column = column;
    return n;
}

st_ynode *st_ynode_new_scalar(const char *text, int plain) {
    st_ynode *n = node_new(ST_YNODE_SCALAR, "<generated>", 0, 1, 1);
    n->value = ST_STRDUP(text);
    n->plain = plain;
    return n;
}

/* Shortest text that reads back exactly; "1e-08" becomes "1.0e-08" so YAML 1.1 readers (PyYAML)
 * also take it as a float. */
static void shortest_double(char *buf, size_t size, double v) {
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) break;
    }
    char *e = strchr(buf, 'e');
    if (e && !memchr(buf, '.', (size_t)(e - buf)) && strlen(buf) + 3 <= size) {
        memmove(e + 2, e, strlen(e) + 1);
        e[0] = '.';
        e[1] = '0';
    }
}

st_ynode *st_ynode_new_int(long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return st_ynode_new_scalar(buf, 1);
}

st_ynode *st_ynode_new_number(double v) {
    char buf[40];
    shortest_double(buf, sizeof buf, v);
    return st_ynode_new_scalar(buf, 1);
}

st_ynode *st_ynode_new_seq(void) { return node_new(ST_YNODE_SEQ, "<generated>", 0, 1, 1); }
st_ynode *st_ynode_new_map(void) { return node_new(ST_YNODE_MAP, "<generated>", 0, 1, 1); }

static void grow_append(st_ynode *parent, st_ynode *key, st_ynode *item) {
    parent->items = realloc(parent->items, (size_t)(parent->n + 1) * sizeof *parent->items);
    ST_CHECK(parent->items, "out of memory growing a YAML node");
    parent->items[parent->n] = item;
    if (parent->kind == ST_YNODE_MAP) {
        parent->keys = realloc(parent->keys, (size_t)(parent->n + 1) * sizeof *parent->keys);
        ST_CHECK(parent->keys, "out of memory growing a YAML node");
        parent->keys[parent->n] = key;
    }
    parent->n++;
}

void st_ynode_seq_add(st_ynode *seq, st_ynode *item) {
    ST_CHECK(seq->kind == ST_YNODE_SEQ, "st_ynode_seq_add on a non-sequence");
    grow_append(seq, NULL, item);
}

void st_ynode_map_add(st_ynode *map, const char *key, st_ynode *value) {
    ST_CHECK(map->kind == ST_YNODE_MAP, "st_ynode_map_add on a non-mapping");
    grow_append(map, st_ynode_new_scalar(key, 1), value);
}

void st_ynode_free(st_ynode *node) {
    if (!node) return;
    for (int i = 0; i < node->n; i++) {
        st_ynode_free(node->items[i]);
        if (node->keys) st_ynode_free(node->keys[i]);
    }
    free(node->items);
    free(node->keys);
    free(node->value);
    free(node->source);
    free(node);
}

st_ynode *st_ynode_copy(const st_ynode *node) {
    st_ynode *c = node_new(node->kind, node->source, node->from_file, node->line, node->column);
    if (node->value) c->value = ST_STRDUP(node->value);
    c->plain = node->plain;
    for (int i = 0; i < node->n; i++)
        grow_append(c, node->keys ? st_ynode_copy(node->keys[i]) : NULL, st_ynode_copy(node->items[i]));
    return c;
}

static int map_index(const st_ynode *map, const char *key) {
    if (!map || map->kind != ST_YNODE_MAP) return -1;
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->keys[i]->value, key) == 0) return i;
    return -1;
}

st_ynode *st_ynode_get(const st_ynode *map, const char *key) {
    int i = map_index(map, key);
    return i < 0 ? NULL : map->items[i];
}

void st_ynode_remove(st_ynode *map, const char *key) {
    int i = map_index(map, key);
    if (i < 0) return;
    st_ynode_free(map->keys[i]);
    st_ynode_free(map->items[i]);
    memmove(map->keys + i, map->keys + i + 1, (size_t)(map->n - i - 1) * sizeof *map->keys);
    memmove(map->items + i, map->items + i + 1, (size_t)(map->n - i - 1) * sizeof *map->items);
    map->n--;
}

int st_ynode_is_null(const st_ynode *node) {
    if (!node || node->kind != ST_YNODE_SCALAR || !node->plain) return 0;
    const char *v = node->value;
    return !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL") || !strcmp(v, "~") || !v[0];
}

const char *st_ynode_where(const st_ynode *node, char *buf, size_t size) {
    snprintf(buf, size, "%s:%d:%d", node->source, node->line, node->column);
    return buf;
}

const char *st_ynode_describe(const st_ynode *node, char *buf, size_t size) {
    if (node->kind == ST_YNODE_MAP) return "a mapping";
    if (node->kind == ST_YNODE_SEQ) return "a sequence";
    snprintf(buf, size, "'%.200s'", node->value);
    return buf;
}

int st_ynode_equal(const st_ynode *a, const st_ynode *b) {
    if (a->kind != b->kind || a->n != b->n) return 0;
    if (a->kind == ST_YNODE_SCALAR) return strcmp(a->value, b->value) == 0;
    for (int i = 0; i < a->n; i++) {
        if (a->kind == ST_YNODE_MAP && strcmp(a->keys[i]->value, b->keys[i]->value) != 0) return 0;
        if (!st_ynode_equal(a->items[i], b->items[i])) return 0;
    }
    return 1;
}

/* ---- dotted-path set with merge ------------------------------------------------------------ */

static void merge_into(st_ynode **slot, const st_ynode *value) {
    st_ynode *old = *slot;
    if (old->kind == ST_YNODE_MAP && value->kind == ST_YNODE_MAP) {
        for (int i = 0; i < value->n; i++) {
            int j = map_index(old, value->keys[i]->value);
            if (j >= 0)
                merge_into(&old->items[j], value->items[i]);
            else
                grow_append(old, st_ynode_copy(value->keys[i]), st_ynode_copy(value->items[i]));
        }
        return;
    }
    st_ynode_free(old);
    *slot = st_ynode_copy(value);
}

static int parse_index(const char *segment, int *index) {
    long long v;
    if (st_yaml_parse_int(segment, &v) != 0 || v < 0 || v > 1000000) return -1;
    *index = (int)v;
    return 0;
}

int st_ynode_set_path(st_ynode *root, const char *path, const st_ynode *value) {
    char *copy = ST_STRDUP(path);
    st_ynode **slot = NULL;
    st_ynode *cur = root;
    int rc = 0;
    for (char *seg = copy, *next; seg; seg = next) {
        next = strchr(seg, '.');
        if (next) *next++ = '\0';
        if (!seg[0]) {
            rc = st_error_set("%s: empty key in the path", path);
            break;
        }
        if (slot) cur = *slot;
        if (cur->kind == ST_YNODE_SEQ) {
            int index;
            if (parse_index(seg, &index) != 0 || index >= cur->n) {
                rc = st_error_set("%s: '%s' is not an index of the sequence (it has %d items)", path, seg, cur->n);
                break;
            }
            slot = &cur->items[index];
            if (!next) merge_into(slot, value);
            continue;
        }
        if (cur->kind != ST_YNODE_MAP) {
            rc = st_error_set("%s: '%s' is inside a scalar value, not a section", path, seg);
            break;
        }
        int i = map_index(cur, seg);
        if (i < 0) {
            st_ynode *fresh = next ? node_new(ST_YNODE_MAP, value->source, value->from_file, value->line, value->column)
                                   : st_ynode_copy(value);
            st_ynode *key = node_new(ST_YNODE_SCALAR, value->source, value->from_file, value->line, 1);
            key->value = ST_STRDUP(seg);
            key->plain = 1;
            grow_append(cur, key, fresh);
            if (!next) break;
            i = cur->n - 1;
        } else if (!next) {
            merge_into(&cur->items[i], value);
            break;
        }
        slot = &cur->items[i];
    }
    free(copy);
    return rc;
}

/* ---- loading -------------------------------------------------------------------------------- */

typedef struct {
    yaml_parser_t parser;
    const char *source;
    int from_file;
} loader;

static int loader_error(loader *ld) {
    const yaml_parser_t *p = &ld->parser;
    const yaml_mark_t *m = p->problem ? &p->problem_mark : &p->context_mark;
    if (p->context)
        return st_error_set("%s:%zu:%zu: malformed YAML: %s %s (HINT: check indentation and quoting)", ld->source,
                            m->line + 1, m->column + 1, p->problem ? p->problem : "error", p->context);
    return st_error_set("%s:%zu:%zu: malformed YAML: %s", ld->source, m->line + 1, m->column + 1,
                        p->problem ? p->problem : "error");
}

static int next_event(loader *ld, yaml_event_t *ev) {
    if (!yaml_parser_parse(&ld->parser, ev)) return loader_error(ld);
    return 0;
}

static st_ynode *parse_node(loader *ld, yaml_event_t *ev);

static st_ynode *parse_children(loader *ld, st_ynode *parent, yaml_event_type_t end) {
    for (;;) {
        yaml_event_t ev;
        if (next_event(ld, &ev) != 0) goto fail;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return parent;
        }
        st_ynode *first = parse_node(ld, &ev);
        yaml_event_delete(&ev);
        if (!first) goto fail;
        if (parent->kind == ST_YNODE_SEQ) {
            grow_append(parent, NULL, first);
            continue;
        }
        if (first->kind != ST_YNODE_SCALAR) {
            st_error_set("%s:%d:%d: a mapping key must be a plain scalar", first->source, first->line, first->column);
            st_ynode_free(first);
            goto fail;
        }
        if (map_index(parent, first->value) >= 0) {
            st_error_set("%s:%d:%d: duplicate key '%s'", first->source, first->line, first->column, first->value);
            st_ynode_free(first);
            goto fail;
        }
        yaml_event_t vev;
        if (next_event(ld, &vev) != 0) {
            st_ynode_free(first);
            goto fail;
        }
        st_ynode *value = parse_node(ld, &vev);
        yaml_event_delete(&vev);
        if (!value) {
            st_ynode_free(first);
            goto fail;
        }
        grow_append(parent, first, value);
    }
fail:
    st_ynode_free(parent);
    return NULL;
}

static st_ynode *parse_node(loader *ld, yaml_event_t *ev) {
    int line = (int)ev->start_mark.line + 1, column = (int)ev->start_mark.column + 1;
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        if (ev->data.scalar.anchor) break;
        st_ynode *n = node_new(ST_YNODE_SCALAR, ld->source, ld->from_file, line, column);
        n->value = ST_STRDUP((const char *)ev->data.scalar.value);
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        return n;
    }
    case YAML_SEQUENCE_START_EVENT:
        if (ev->data.sequence_start.anchor) break;
        return parse_children(ld, node_new(ST_YNODE_SEQ, ld->source, ld->from_file, line, column),
                              YAML_SEQUENCE_END_EVENT);
    case YAML_MAPPING_START_EVENT:
        if (ev->data.mapping_start.anchor) break;
        return parse_children(ld, node_new(ST_YNODE_MAP, ld->source, ld->from_file, line, column),
                              YAML_MAPPING_END_EVENT);
    case YAML_ALIAS_EVENT: break;
    default: st_error_set("%s:%d:%d: unexpected YAML event", ld->source, line, column); return NULL;
    }
    st_error_set("%s:%d:%d: anchors and aliases are not supported (HINT: write the value out)", ld->source, line,
                 column);
    return NULL;
}

/* Stream: STREAM_START, [DOCUMENT_START node DOCUMENT_END], STREAM_END. */
static st_ynode *load(loader *ld) {
    yaml_event_t ev;
    st_ynode *root = NULL;
    if (next_event(ld, &ev) != 0) return NULL; /* STREAM_START */
    yaml_event_delete(&ev);
    if (next_event(ld, &ev) != 0) return NULL;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return node_new(ST_YNODE_MAP, ld->source, ld->from_file, 1, 1);
    }
    yaml_event_delete(&ev); /* DOCUMENT_START */
    if (next_event(ld, &ev) != 0) return NULL;
    root = parse_node(ld, &ev);
    yaml_event_delete(&ev);
    if (!root) return NULL;
    if (next_event(ld, &ev) != 0) goto fail; /* DOCUMENT_END */
    yaml_event_delete(&ev);
    if (next_event(ld, &ev) != 0) goto fail;
    int more = ev.type != YAML_STREAM_END_EVENT;
    int line = (int)ev.start_mark.line + 1;
    yaml_event_delete(&ev);
    if (more) {
        st_error_set("%s:%d: a second YAML document; one file holds one document", ld->source, line);
        goto fail;
    }
    /* "---" alone: an empty document is an empty mapping. An explicit null (`null`, `~`) is a
     * value, e.g. of --set model.weights=null, and stays a null scalar. */
    if (root->kind == ST_YNODE_SCALAR && root->plain && root->value[0] == '\0') {
        st_ynode_free(root);
        return node_new(ST_YNODE_MAP, ld->source, ld->from_file, 1, 1);
    }
    return root;
fail:
    st_ynode_free(root);
    return NULL;
}

st_ynode *st_yaml_load_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        st_error_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    loader ld = {.source = path, .from_file = 1};
    ST_CHECK(yaml_parser_initialize(&ld.parser), "yaml_parser_initialize failed");
    yaml_parser_set_input_file(&ld.parser, f);
    st_ynode *root = load(&ld);
    yaml_parser_delete(&ld.parser);
    fclose(f);
    return root;
}

st_ynode *st_yaml_load_string(const char *text, const char *source) {
    loader ld = {.source = source, .from_file = 0};
    ST_CHECK(yaml_parser_initialize(&ld.parser), "yaml_parser_initialize failed");
    yaml_parser_set_input_string(&ld.parser, (const unsigned char *)text, strlen(text));
    st_ynode *root = load(&ld);
    yaml_parser_delete(&ld.parser);
    return root;
}

/* ---- scalars ------------------------------------------------------------------------------- */

int st_yaml_parse_int(const char *text, long long *out) {
    if (!text[0]) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int st_yaml_parse_float(const char *text, double *out) {
    if (!text[0]) return -1;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || *end || !isfinite(v)) return -1;
    /* strtod also reads hex floats and "infinity"; YAML numbers start with a digit, sign or dot */
    if (strpbrk(text, "xXnN")) return -1;
    *out = v;
    return 0;
}

/* Plain text that a reader would not take as a string. */
static int reads_as_non_string(const char *v) {
    long long i;
    double d;
    if (st_yaml_parse_int(v, &i) == 0 || st_yaml_parse_float(v, &d) == 0) return 1;
    static const char *const words[] = {"null",  "Null",  "NULL", "~",   "true", "True", "TRUE", "false",
                                        "False", "FALSE", "yes",  "Yes", "YES",  "no",   "No",   "NO",
                                        "on",    "On",    "ON",   "off", "Off",  "OFF",  ""};
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
        if (!strcmp(v, words[k])) return 1;
    return 0;
}

/* ---- emitting -------------------------------------------------------------------------------- */

static int emit(yaml_emitter_t *e, yaml_event_t *ev) { return yaml_emitter_emit(e, ev) ? 0 : -1; }

static int emit_scalar(yaml_emitter_t *e, const char *text, int plain) {
    yaml_event_t ev;
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    if (plain)
        style = YAML_PLAIN_SCALAR_STYLE;
    else if (reads_as_non_string(text))
        style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1, 1, style);
    return emit(e, &ev);
}

static int emit_node(yaml_emitter_t *e, const st_ynode *n, int flow) {
    yaml_event_t ev;
    if (n->kind == ST_YNODE_SCALAR) return emit_scalar(e, n->value, n->plain);
    if (n->kind == ST_YNODE_SEQ) {
        /* sequences of scalars read best in flow style: [hit@1, map@10] */
        int all_scalars = 1;
        for (int i = 0; i < n->n; i++) all_scalars &= n->items[i]->kind == ST_YNODE_SCALAR;
        yaml_sequence_start_event_initialize(
            &ev, NULL, NULL, 1, flow || all_scalars ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE);
        if (emit(e, &ev)) return -1;
        for (int i = 0; i < n->n; i++)
            if (emit_node(e, n->items[i], flow)) return -1;
        yaml_sequence_end_event_initialize(&ev);
        return emit(e, &ev);
    }
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, flow ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE);
    if (emit(e, &ev)) return -1;
    for (int i = 0; i < n->n; i++)
        if (emit_scalar(e, n->keys[i]->value, 1) || emit_node(e, n->items[i], flow)) return -1;
    yaml_mapping_end_event_initialize(&ev);
    return emit(e, &ev);
}

static int emit_document(yaml_emitter_t *e, const st_ynode *root, int flow) {
    yaml_event_t ev;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    if (emit(e, &ev)) return -1;
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    if (emit(e, &ev) || emit_node(e, root, flow)) return -1;
    yaml_document_end_event_initialize(&ev, 1);
    if (emit(e, &ev)) return -1;
    yaml_stream_end_event_initialize(&ev);
    return emit(e, &ev);
}

char *st_yaml_text(const st_ynode *root, const char *header) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    ST_CHECK(f, "open_memstream failed");
    for (const char *line = header; line && *line;) {
        const char *eol = strchr(line, '\n');
        int len = eol ? (int)(eol - line) : (int)strlen(line);
        fprintf(f, "# %.*s\n", len, line);
        line = eol ? eol + 1 : NULL;
    }
    yaml_emitter_t e;
    ST_CHECK(yaml_emitter_initialize(&e), "yaml_emitter_initialize failed");
    yaml_emitter_set_output_file(&e, f);
    yaml_emitter_set_width(&e, 100);
    yaml_emitter_set_unicode(&e, 1);
    int rc = emit_document(&e, root, 0);
    if (rc == 0) rc = yaml_emitter_flush(&e) ? 0 : -1;
    if (rc != 0) st_error_set("YAML emitter: %s", e.problem ? e.problem : "error");
    yaml_emitter_delete(&e);
    ST_CHECK(fclose(f) == 0, "closing a memory stream failed");
    if (rc == 0) return text;
    free(text);
    return NULL;
}

int st_yaml_write_file(const st_ynode *root, const char *path, const char *header) {
    char tmp[4096];
    char *text = st_yaml_text(root, header);
    if (!text) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", st_error_get());
        return st_error_set("%s: %s", path, msg);
    }
    FILE *f = st_atomic_open(path, tmp, sizeof tmp);
    if (f) fputs(text, f);
    free(text);
    return f ? st_atomic_commit(f, tmp, path) : -1;
}

typedef struct {
    char *buf;
    size_t size, used;
} flow_buffer;

static int flow_write(void *data, unsigned char *bytes, size_t n) {
    flow_buffer *fb = data;
    for (size_t i = 0; i < n && fb->used + 1 < fb->size; i++) fb->buf[fb->used++] = (char)bytes[i];
    fb->buf[fb->used] = '\0';
    return 1;
}

const char *st_ynode_flow(const st_ynode *node, char *buf, size_t size) {
    flow_buffer fb = {buf, size, 0};
    buf[0] = '\0';
    yaml_emitter_t e;
    ST_CHECK(yaml_emitter_initialize(&e), "yaml_emitter_initialize failed");
    yaml_emitter_set_output(&e, flow_write, &fb);
    yaml_emitter_set_width(&e, -1);
    yaml_emitter_set_unicode(&e, 1);
    emit_document(&e, node, 1);
    yaml_emitter_flush(&e);
    yaml_emitter_delete(&e);
    /* drop the document markers and trailing newline the emitter adds */
    size_t len = strlen(buf);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) buf[--len] = '\0';
    if (len >= 4 && !strcmp(buf + len - 4, "\n...")) buf[len -= 4] = '\0';
    while (len && buf[len - 1] == '\n') buf[--len] = '\0';
    return buf;
}

/* ---- JSON -------------------------------------------------------------------------------------- */

static json_t *json_of_scalar(const st_ynode *n) {
    long long i;
    double d;
    if (n->plain) {
        if (st_ynode_is_null(n)) return json_null();
        if (!strcmp(n->value, "true") || !strcmp(n->value, "false")) return json_boolean(!strcmp(n->value, "true"));
        if (st_yaml_parse_int(n->value, &i) == 0) return json_integer((json_int_t)i);
        if (st_yaml_parse_float(n->value, &d) == 0) return st_json_number(d);
    }
    return st_json_text(n->value);
}

json_t *st_ynode_to_json(const st_ynode *node) {
    if (node->kind == ST_YNODE_SCALAR) return json_of_scalar(node);
    json_t *out = node->kind == ST_YNODE_SEQ ? json_array() : json_object();
    for (int i = 0; i < node->n; i++) {
        if (node->kind == ST_YNODE_SEQ)
            json_array_append_new(out, st_ynode_to_json(node->items[i]));
        else
            json_object_set_new(out, node->keys[i]->value, st_ynode_to_json(node->items[i]));
    }
    return out;
}
