/*
 * dataset.c: folder trees and TSV/CSV manifests -> st_dataset, splits and split files; contract
 * in dataset.h. Entries are gathered as (path, class name or none, metadata) triples, sorted,
 * then the class names are ranked into labels, so every source ends in the same canonical order.
 */
#include "data/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/base/fileio.h"
#include "data/image.h"
#include "data/base/rng.h"
#include "kernels/check.h"

/* ---- (path, class, metadata) entry lists ------------------------------------------------ */

typedef struct entry {
    char *path;
    char *class_name; /* NULL: unlabelled */
    char **meta;      /* (n_meta of the list) or NULL */
} entry;

typedef struct entry_list {
    entry *items;
    int n, cap;
    int n_meta;          /* metadata columns every entry carries */
    char **meta_names;   /* (n_meta) */
    char **skipped;      /* "path: reason" of files found but not taken */
    int n_skipped, cap_skipped;
} entry_list;

static void *grow(void *items, int *cap, size_t item_size) {
    *cap = *cap ? 2 * *cap : 256;
    void *bigger = realloc(items, (size_t)*cap * item_size);
    ST_CHECK(bigger, "out of memory growing a file list to %d entries", *cap);
    return bigger;
}

static void entries_push(entry_list *l, char *path, char *class_name, char **meta) {
    if (l->n == l->cap) l->items = grow(l->items, &l->cap, sizeof *l->items);
    l->items[l->n++] = (entry){path, class_name, meta};
}

static void entries_skip(entry_list *l, const char *path, const char *reason) {
    if (l->n_skipped == l->cap_skipped) l->skipped = grow(l->skipped, &l->cap_skipped, sizeof *l->skipped);
    size_t size = strlen(path) + strlen(reason) + 3;
    char *s = ST_MALLOC(size);
    snprintf(s, size, "%s: %s", path, reason);
    l->skipped[l->n_skipped++] = s;
}

static void free_strings(char **items, int n) {
    if (!items) return;
    for (int i = 0; i < n; i++) free(items[i]);
    free(items);
}

static void entries_free(entry_list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->items[i].path);
        free(l->items[i].class_name);
        free_strings(l->items[i].meta, l->n_meta);
    }
    free(l->items);
    free_strings(l->meta_names, l->n_meta);
    free_strings(l->skipped, l->n_skipped);
    memset(l, 0, sizeof *l);
}

/* Unlabelled entries first, then by (class, path). */
static int compare_entries(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (!x->class_name != !y->class_name) return x->class_name ? 1 : -1;
    int c = x->class_name ? strcmp(x->class_name, y->class_name) : 0;
    return c ? c : strcmp(x->path, y->path);
}

/* Takes ownership of the list's strings: sorts the entries, ranks classes into labels (-1 for
 * unlabelled entries), moves metadata and skipped files into out. */
static void dataset_from_entries(entry_list *l, st_dataset *out) {
    qsort(l->items, (size_t)l->n, sizeof *l->items, compare_entries);
    int rows = l->n ? l->n : 1;
    out->n = l->n;
    out->paths = ST_MALLOC((size_t)rows * sizeof(char *));
    out->labels = ST_MALLOC((size_t)rows * sizeof(int32_t));
    out->class_names = ST_MALLOC((size_t)rows * sizeof(char *));
    out->n_classes = 0;
    out->n_meta = l->n_meta;
    out->meta_names = l->meta_names;
    out->meta = l->n_meta ? ST_MALLOC((size_t)rows * l->n_meta * sizeof(char *)) : NULL;
    for (int i = 0; i < l->n; i++) {
        entry *e = &l->items[i];
        if (!e->class_name) {
            out->labels[i] = -1;
        } else {
            if (out->n_classes == 0 || strcmp(out->class_names[out->n_classes - 1], e->class_name))
                out->class_names[out->n_classes++] = e->class_name;
            else free(e->class_name);
            out->labels[i] = out->n_classes - 1;
        }
        out->paths[i] = e->path;
        if (l->n_meta) memcpy(out->meta + (size_t)i * l->n_meta, e->meta, (size_t)l->n_meta * sizeof(char *));
        free(e->meta);
    }
    out->skipped = l->skipped;
    out->n_skipped = l->n_skipped;
    free(l->items);
    memset(l, 0, sizeof *l);
}

static char *path_join(const char *dir, const char *name) {
    if (name[0] == '/' || dir[0] == '\0' || !strcmp(dir, ".")) return ST_STRDUP(name);
    size_t a = strlen(dir), b = strlen(name);
    char *p = ST_MALLOC(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

/* ---- folder trees ----------------------------------------------------------------------- */

static int has_extension(const char *name, const char *const *list) {
    const char *dot = strrchr(name, '.');
    for (int i = 0; dot && list[i]; i++)
        if (!strcasecmp(dot + 1, list[i])) return 1;
    return 0;
}

static int has_image_extension(const char *name) {
    static const char *const decoded[] = {"png", "jpg", "jpeg", NULL};
    return has_extension(name, decoded);
}

/* Why a file that is not taken is left out (data/image.h decodes PNG and JPEG only). */
static const char *skip_reason(const char *name) {
    static const char *const other_images[] = {"webp", "gif", "bmp", "tif", "tiff", "heic", "heif",
                                               "avif", "pgm", "ppm", "pnm", "jxl", NULL};
    return has_extension(name, other_images) ? "unsupported image format (HINT: convert it to PNG or JPEG)"
                                             : "not a PNG or JPEG file";
}

/* Adds every image file under dir (recursively) to l with class_name; other files are listed as
 * skipped; depth bounds symlink loops. */
static int scan_class_dir(const char *dir, const char *class_name, entry_list *l, int depth) {
    if (depth > 32) return st_error_set("%s: folders nested deeper than 32 (symlink loop?)", dir);
    DIR *d = opendir(dir);
    if (!d) return st_error_set("%s: cannot open folder: %s", dir, strerror(errno));
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *path = path_join(dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) entries_skip(l, path, strerror(errno)); /* dangling symlink */
        else if (S_ISDIR(st.st_mode)) rc = scan_class_dir(path, class_name, l, depth + 1);
        else if (S_ISREG(st.st_mode) && has_image_extension(e->d_name)) {
            entries_push(l, path, ST_STRDUP(class_name), NULL);
            path = NULL;
        } else entries_skip(l, path, skip_reason(e->d_name));
        free(path);
    }
    closedir(d);
    return rc;
}

/* A class tree root/<class>/...; images directly under root have no class: unlabelled entries
 * when allowed, else skipped. A folder without subfolders is a flat folder of unlabelled images. */
static int load_folder(const char *root, int labels_required, st_dataset *out) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(root);
    if (!d) return st_error_set("%s: cannot open dataset folder: %s", root, strerror(errno));
    entry_list l = {0};
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *path = path_join(root, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) entries_skip(&l, path, strerror(errno));
        else if (S_ISDIR(st.st_mode)) rc = scan_class_dir(path, e->d_name, &l, 0);
        else if (!has_image_extension(e->d_name)) entries_skip(&l, path, skip_reason(e->d_name));
        else if (labels_required) entries_skip(&l, path, "at the root of the class tree: in no class folder");
        else {
            entries_push(&l, path, NULL, NULL);
            path = NULL;
        }
        free(path);
    }
    closedir(d);
    if (rc == 0 && l.n == 0)
        rc = st_error_set("%s: no images%s (HINT: expected root/<class>/<image>.png|.jpg%s)", root,
                          l.n_skipped ? ", only unsupported files" : "",
                          labels_required ? "" : " or root/<image>.png|.jpg");
    if (rc) {
        entries_free(&l);
        return -1;
    }
    dataset_from_entries(&l, out);
    return 0;
}

/* ---- TSV / CSV manifests ---------------------------------------------------------------- */

static char *strndup_checked(const char *s, size_t n) {
    char *p = ST_MALLOC(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

enum { MAX_COLUMNS = 64 };

/* One line split into fields (owned copies). CSV fields may be double-quoted, with "" for a
 * quote inside; TSV fields are taken as they are. -1 with a reason on a malformed line. */
static int split_fields(const char *line, size_t len, char sep, char **fields, int *n_fields, const char **why) {
    int n = 0;
    size_t i = 0;
    for (;;) {
        if (n == MAX_COLUMNS) {
            *why = "more than 64 columns";
            goto fail;
        }
        if (sep == ',' && i < len && line[i] == '"') {
            char *f = ST_MALLOC(len - i + 1);
            size_t k = 0;
            for (i++;; i++) {
                if (i >= len) {
                    free(f);
                    *why = "a quoted field is not closed (HINT: quoted fields cannot span lines)";
                    goto fail;
                }
                if (line[i] == '"' && i + 1 < len && line[i + 1] == '"') f[k++] = line[i++];
                else if (line[i] == '"') break;
                else f[k++] = line[i];
            }
            f[k] = '\0';
            fields[n++] = f;
            i++;
            if (i < len && line[i] != sep) {
                *why = "text after a closing quote";
                goto fail;
            }
        } else {
            const char *end = memchr(line + i, sep, len - i);
            size_t flen = end ? (size_t)(end - (line + i)) : len - i;
            fields[n++] = strndup_checked(line + i, flen);
            i += flen;
        }
        if (i >= len) break;
        i++; /* the separator */
    }
    *n_fields = n;
    return 0;
fail:
    for (int j = 0; j < n; j++) free(fields[j]);
    return -1;
}

/* Column roles from a header line: path (required), label (or class, optional), metadata. */
typedef struct columns {
    int has_header;
    int path, label;          /* field index; label -1 when absent */
    int n;                    /* fields per line */
    char sep;
} columns;

static int is_header(char **fields, int n) {
    for (int i = 0; i < n; i++)
        if (!strcasecmp(fields[i], "path")) return 1;
    return 0;
}

static void read_header(char **fields, int n, columns *c, entry_list *l) {
    c->has_header = 1;
    c->n = n;
    c->path = c->label = -1;
    l->meta_names = ST_MALLOC((size_t)n * sizeof(char *));
    for (int i = 0; i < n; i++) {
        if (c->path < 0 && !strcasecmp(fields[i], "path")) c->path = i;
        else if (c->label < 0 && (!strcasecmp(fields[i], "label") || !strcasecmp(fields[i], "class"))) c->label = i;
        else l->meta_names[l->n_meta++] = ST_STRDUP(fields[i]);
    }
}

/* The entry of one data line; -1 with the reason when the line does not fit the columns. */
static int add_line(char **fields, int n, const columns *c, const char *base_dir, int labels_required,
                    entry_list *l, const char **why) {
    if (!c->has_header && (n > 2 || (n == 1 && labels_required))) {
        *why = labels_required ? "expected 'path<TAB>label' (HINT: one tab, both fields non-empty; "
                                 "more columns need a header line naming them, e.g. path<TAB>label<TAB>page)"
                               : "expected 'path' or 'path<TAB>label' (HINT: more columns need a header "
                                 "line naming them, e.g. path<TAB>label<TAB>page)";
        return -1;
    }
    if (c->has_header && n != c->n) {
        *why = "the number of fields differs from the header's";
        return -1;
    }
    int path_col = c->has_header ? c->path : 0, label_col = c->has_header ? c->label : (n == 2 ? 1 : -1);
    const char *label = label_col >= 0 ? fields[label_col] : "";
    if (!fields[path_col][0] || (labels_required && !label[0])) {
        *why = labels_required ? "empty path or label (HINT: both fields non-empty)" : "empty path";
        return -1;
    }
    char **meta = l->n_meta ? ST_MALLOC((size_t)l->n_meta * sizeof(char *)) : NULL;
    for (int i = 0, k = 0; i < n && l->n_meta; i++)
        if (i != path_col && i != label_col) meta[k++] = ST_STRDUP(fields[i]);
    entries_push(l, path_join(base_dir, fields[path_col]), label[0] ? ST_STRDUP(label) : NULL, meta);
    return 0;
}

static char separator_of(const char *line, size_t len, const char *source) {
    if (memchr(line, '\t', len)) return '\t';
    size_t slen = strlen(source);
    int csv_name = slen > 4 && !strcasecmp(source + slen - 4, ".csv");
    if (memchr(line, ',', len) && (csv_name || (len >= 5 && !strncasecmp(line, "path,", 5)))) return ',';
    return '\t';
}

static int parse_manifest(const char *text, size_t size, const char *source, const char *base_dir,
                          int labels_required, st_dataset *out) {
    memset(out, 0, sizeof *out);
    entry_list l = {0};
    columns c = {0, 0, 1, 2, 0};
    char *fields[MAX_COLUMNS];
    size_t pos = 0;
    for (int line_no = 1; pos < size; line_no++) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - line) : size - pos;
        pos += len + (nl ? 1 : 0);
        if (len && line[len - 1] == '\r') len--;
        if (len == 0 || line[0] == '#') continue;
        const char *why = NULL;
        int n = 0;
        if (memchr(line, '\0', len)) why = "NUL byte (not a text manifest)";
        else {
            if (!c.sep) c.sep = separator_of(line, len, source);
            if (split_fields(line, len, c.sep, fields, &n, &why) == 0) {
                if (l.n == 0 && !c.has_header && is_header(fields, n)) {
                    read_header(fields, n, &c, &l);
                    if (labels_required && c.label < 0)
                        why = "the header names no label column (HINT: training needs a column 'label')";
                } else {
                    add_line(fields, n, &c, base_dir, labels_required, &l, &why);
                }
                for (int i = 0; i < n; i++) free(fields[i]);
            }
        }
        if (why) {
            entries_free(&l);
            return st_error_set("%s: line %d: %s", source, line_no, why);
        }
    }
    if (l.n == 0) {
        entries_free(&l);
        return st_error_set("%s: no entries (HINT: lines 'path<TAB>label', or a header line naming "
                            "the columns path, label, ...)", source);
    }
    dataset_from_entries(&l, out);
    return 0;
}

int st_dataset_parse_tsv(const char *text, size_t size, const char *source, const char *base_dir,
                         st_dataset *out) {
    return parse_manifest(text, size, source, base_dir, 1, out);
}

static int load_manifest(const char *path, int labels_required, st_dataset *out) {
    memset(out, 0, sizeof *out);
    uint8_t *text;
    size_t size;
    if (st_read_file(path, &text, &size)) return -1;
    char *base = ST_STRDUP(path);
    char *slash = strrchr(base, '/');
    if (slash) *slash = '\0';
    else base[0] = '\0';
    int rc = parse_manifest((const char *)text, size, path, slash == base ? "/" : base, labels_required, out);
    free(base);
    free(text);
    return rc;
}

static int load_any(const char *path, int labels_required, st_dataset *out) {
    struct stat st;
    memset(out, 0, sizeof *out);
    if (stat(path, &st) != 0) return st_error_set("%s: dataset not found: %s", path, strerror(errno));
    return S_ISDIR(st.st_mode) ? load_folder(path, labels_required, out) : load_manifest(path, labels_required, out);
}

int st_dataset_load(const char *path, st_dataset *out) { return load_any(path, 1, out); }

int st_dataset_load_index(const char *path, st_dataset *out) { return load_any(path, 0, out); }

void st_dataset_print_skipped(const st_dataset *ds, const char *source, FILE *out) {
    enum { LISTED = 20 }; /* enough to see the pattern without flooding the terminal */
    if (ds->n_skipped == 0) return;
    fprintf(out, "warning: %s: %d file%s skipped:\n", source, ds->n_skipped, ds->n_skipped == 1 ? "" : "s");
    for (int i = 0; i < ds->n_skipped && i < LISTED; i++) fprintf(out, "  %s\n", ds->skipped[i]);
    if (ds->n_skipped > LISTED) fprintf(out, "  ... and %d more\n", ds->n_skipped - LISTED);
}

/* ---- combining, subsets, splits --------------------------------------------------------- */

void st_dataset_combine(const st_dataset *parts, const char *const *names, int n_parts, st_dataset *out) {
    entry_list l = {0};
    for (int p = 0; p < n_parts; p++) {
        size_t name_len = strlen(names[p]);
        for (int i = 0; i < parts[p].n; i++) {
            const char *cls = parts[p].class_names[parts[p].labels[i]];
            char *prefixed = ST_MALLOC(name_len + strlen(cls) + 2);
            sprintf(prefixed, "%s/%s", names[p], cls);
            entries_push(&l, ST_STRDUP(parts[p].paths[i]), prefixed, NULL);
        }
    }
    dataset_from_entries(&l, out);
}

void st_dataset_subset(const st_dataset *ds, const int *index, int n, st_dataset *out) {
    memset(out, 0, sizeof *out); /* metadata and skipped lists stay with the parent */
    out->n = n;
    out->paths = ST_MALLOC((size_t)(n ? n : 1) * sizeof(char *));
    out->labels = ST_MALLOC((size_t)(n ? n : 1) * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        ST_CHECK(index[i] >= 0 && index[i] < ds->n, "subset index %d outside 0..%d", index[i], ds->n - 1);
        out->paths[i] = ST_STRDUP(ds->paths[index[i]]);
        out->labels[i] = ds->labels[index[i]];
    }
    out->n_classes = ds->n_classes;
    out->class_names = ST_MALLOC((size_t)ds->n_classes * sizeof(char *));
    for (int c = 0; c < ds->n_classes; c++) out->class_names[c] = ST_STRDUP(ds->class_names[c]);
}

void st_dataset_class_counts(const st_dataset *ds, int *counts) {
    memset(counts, 0, (size_t)ds->n_classes * sizeof *counts);
    for (int i = 0; i < ds->n; i++) counts[ds->labels[i]]++;
}

static uint64_t hash_string(const char *s) { /* FNV-1a: a stable per-class stream id */
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

int st_dataset_split(const st_dataset *ds, double val_ratio, uint64_t seed, st_dataset *train, st_dataset *val) {
    if (!(val_ratio >= 0 && val_ratio < 1))
        return st_error_set("split ratio %g is outside [0, 1)", val_ratio);
    char *is_val = ST_CALLOC((size_t)ds->n ? (size_t)ds->n : 1, 1);
    int *members = ST_MALLOC((size_t)(ds->n ? ds->n : 1) * sizeof(int));
    for (int c = 0; c < ds->n_classes; c++) {
        int count = 0;
        for (int i = 0; i < ds->n; i++)
            if (ds->labels[i] == c) members[count++] = i;
        int n_val = (int)(val_ratio * count + 0.5);
        if (n_val > count - 1) n_val = count - 1 > 0 ? count - 1 : 0;
        st_rng rng; /* per class: adding a class never reshuffles the others */
        st_rng_derive(&rng, seed, hash_string(ds->class_names[c]), 0x53504C4954ull /* "SPLIT" */);
        for (int k = 0; k < n_val; k++) { /* partial Fisher-Yates: the first n_val are the sample */
            int j = k + (int)st_rng_below(&rng, (uint64_t)(count - k));
            int tmp = members[k];
            members[k] = members[j];
            members[j] = tmp;
            is_val[members[k]] = 1;
        }
    }
    int n_val = 0;
    for (int i = 0; i < ds->n; i++) n_val += is_val[i];
    int *val_index = ST_MALLOC((size_t)(n_val ? n_val : 1) * sizeof(int));
    int n_train = 0, k = 0;
    for (int i = 0; i < ds->n; i++) {
        if (is_val[i]) val_index[k++] = i;
        else members[n_train++] = i;
    }
    st_dataset_subset(ds, members, n_train, train);
    st_dataset_subset(ds, val_index, n_val, val);
    free(val_index);
    free(members);
    free(is_val);
    return 0;
}

void st_dataset_split_classes(const st_dataset *ds, const char *held_out, st_dataset *train, st_dataset *val) {
    int *train_index = ST_MALLOC((size_t)(ds->n ? ds->n : 1) * sizeof(int));
    int *val_index = ST_MALLOC((size_t)(ds->n ? ds->n : 1) * sizeof(int));
    int n_train = 0, n_val = 0;
    for (int i = 0; i < ds->n; i++) {
        if (held_out[ds->labels[i]]) val_index[n_val++] = i;
        else train_index[n_train++] = i;
    }
    st_dataset_subset(ds, train_index, n_train, train);
    st_dataset_subset(ds, val_index, n_val, val);
    free(val_index);
    free(train_index);
}

typedef struct class_key {
    uint64_t key;
    int index;
} class_key;

static int compare_class_keys(const void *a, const void *b) {
    const class_key *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->index - y->index;
}

int st_dataset_choose_classes(const st_dataset *ds, double fraction, uint64_t seed, char *held_out) {
    if (ds->n_classes < 2)
        return st_error_set("%d class(es): holding out whole classes needs at least 2", ds->n_classes);
    class_key *keys = ST_MALLOC((size_t)ds->n_classes * sizeof *keys);
    for (int c = 0; c < ds->n_classes; c++) {
        st_rng rng; /* per class, as in st_dataset_split: one class's key never depends on another */
        st_rng_derive(&rng, seed, hash_string(ds->class_names[c]), 0x484F4C44ull /* "HOLD" */);
        keys[c] = (class_key){st_rng_next(&rng), c};
    }
    qsort(keys, (size_t)ds->n_classes, sizeof *keys, compare_class_keys);
    int n_held = (int)(fraction * ds->n_classes + 0.5);
    if (n_held < 1) n_held = 1;
    if (n_held > ds->n_classes - 1) n_held = ds->n_classes - 1;
    memset(held_out, 0, (size_t)ds->n_classes);
    for (int k = 0; k < n_held; k++) held_out[keys[k].index] = 1;
    free(keys);
    return 0;
}

int st_dataset_find_class(const st_dataset *ds, const char *name) {
    for (int c = 0; c < ds->n_classes; c++)
        if (!strcmp(ds->class_names[c], name)) return c;
    return -1;
}

/* ---- split files ------------------------------------------------------------------------ */

typedef struct path_slot {
    const char *path;
    int index;
} path_slot;

static int compare_slots(const void *a, const void *b) {
    return strcmp(((const path_slot *)a)->path, ((const path_slot *)b)->path);
}

int st_dataset_select_file(const st_dataset *ds, const char *split_path, st_dataset *out) {
    memset(out, 0, sizeof *out);
    uint8_t *text;
    size_t size;
    if (st_read_file(split_path, &text, &size)) return -1;
    path_slot *sorted = ST_MALLOC((size_t)(ds->n ? ds->n : 1) * sizeof *sorted);
    for (int i = 0; i < ds->n; i++) sorted[i] = (path_slot){ds->paths[i], i};
    qsort(sorted, (size_t)ds->n, sizeof *sorted, compare_slots);
    int *chosen = ST_MALLOC((size_t)(ds->n ? ds->n : 1) * sizeof(int));
    char *seen = ST_CALLOC((size_t)(ds->n ? ds->n : 1), 1);
    int n = 0, rc = 0;
    size_t pos = 0;
    for (int line_no = 1; pos < size && rc == 0; line_no++) {
        const char *line = (const char *)text + pos;
        const char *nl = memchr(line, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - line) : size - pos;
        pos += len + (nl ? 1 : 0);
        const char *tab = memchr(line, '\t', len);
        if (tab) len = (size_t)(tab - line);
        if (len && line[len - 1] == '\r') len--;
        if (len == 0 || line[0] == '#') continue;
        char *wanted = strndup_checked(line, len);
        path_slot key = {wanted, 0};
        path_slot *hit = bsearch(&key, sorted, (size_t)ds->n, sizeof *sorted, compare_slots);
        if (!hit) rc = st_error_set("%s: line %d: '%s' is not in the dataset", split_path, line_no, wanted);
        else if (!seen[hit->index]) {
            seen[hit->index] = 1;
            chosen[n++] = hit->index;
        }
        free(wanted);
    }
    if (rc == 0) st_dataset_subset(ds, chosen, n, out);
    free(seen);
    free(chosen);
    free(sorted);
    free(text);
    return rc;
}

int st_dataset_write_paths(const st_dataset *ds, const char *path) {
    size_t size = strlen(path) + 5;
    char *tmp = ST_MALLOC(size);
    FILE *f = st_atomic_open(path, tmp, size);
    int rc = -1;
    if (f) {
        for (int i = 0; i < ds->n; i++) fprintf(f, "%s\t%s\n", ds->paths[i], ds->class_names[ds->labels[i]]);
        rc = st_atomic_commit(f, tmp, path);
    }
    free(tmp);
    return rc;
}

void st_dataset_free(st_dataset *ds) {
    for (int i = 0; i < ds->n; i++) free(ds->paths[i]);
    for (int c = 0; c < ds->n_classes; c++) free(ds->class_names[c]);
    free(ds->paths);
    free(ds->labels);
    free(ds->class_names);
    for (size_t i = 0; i < (size_t)ds->n * ds->n_meta; i++) free(ds->meta[i]);
    free(ds->meta);
    free_strings(ds->meta_names, ds->n_meta);
    free_strings(ds->skipped, ds->n_skipped);
    memset(ds, 0, sizeof *ds);
}
