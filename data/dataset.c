/*
 * dataset.c: folder trees and TSV manifests -> st_dataset, splits and split files; contract in
 * dataset.h. Entries are gathered as (path, class name) pairs, sorted, then the class names are
 * ranked into labels, so both sources end in the same canonical order.
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

#include "data/image.h"
#include "data/rng.h"
#include "kernels/check.h"

/* ---- (path, class) entry lists ---------------------------------------------------------- */

typedef struct entry {
    char *path;
    char *class_name;
} entry;

typedef struct entry_list {
    entry *items;
    int n, cap;
} entry_list;

static void entries_push(entry_list *l, char *path, char *class_name) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        entry *bigger = realloc(l->items, (size_t)l->cap * sizeof *bigger);
        ST_CHECK(bigger, "out of memory growing a file list to %d entries", l->cap);
        l->items = bigger;
    }
    l->items[l->n].path = path;
    l->items[l->n].class_name = class_name;
    l->n++;
}

static void entries_free(entry_list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->items[i].path);
        free(l->items[i].class_name);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int compare_entries(const void *a, const void *b) {
    const entry *x = a, *y = b;
    int c = strcmp(x->class_name, y->class_name);
    return c ? c : strcmp(x->path, y->path);
}

/* Takes ownership of the entries' strings: sorts by (class, path), ranks classes into labels. */
static void dataset_from_entries(entry_list *l, st_dataset *out) {
    qsort(l->items, (size_t)l->n, sizeof *l->items, compare_entries);
    out->n = l->n;
    out->paths = ST_MALLOC((size_t)l->n * sizeof(char *));
    out->labels = ST_MALLOC((size_t)l->n * sizeof(int32_t));
    out->class_names = ST_MALLOC((size_t)l->n * sizeof(char *));
    out->n_classes = 0;
    for (int i = 0; i < l->n; i++) {
        if (out->n_classes == 0 || strcmp(out->class_names[out->n_classes - 1], l->items[i].class_name)) {
            out->class_names[out->n_classes++] = l->items[i].class_name;
        } else {
            free(l->items[i].class_name);
        }
        out->paths[i] = l->items[i].path;
        out->labels[i] = out->n_classes - 1;
    }
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

static int has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Adds every image file under dir (recursively) to l with class_name; depth bounds symlink loops. */
static int scan_class_dir(const char *dir, const char *class_name, entry_list *l, int depth) {
    if (depth > 32) return st_error_set("%s: folders nested deeper than 32 (symlink loop?)", dir);
    DIR *d = opendir(dir);
    if (!d) return st_error_set("%s: cannot open folder: %s", dir, strerror(errno));
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *path = path_join(dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) { /* a dangling symlink: the loader would warn anyway */
            free(path);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = scan_class_dir(path, class_name, l, depth + 1);
            free(path);
        } else if (S_ISREG(st.st_mode) && has_image_extension(e->d_name)) {
            entries_push(l, path, ST_STRDUP(class_name));
        } else {
            free(path);
        }
    }
    closedir(d);
    return rc;
}

int st_dataset_load_folder(const char *root, st_dataset *out) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(root);
    if (!d) return st_error_set("%s: cannot open dataset folder: %s", root, strerror(errno));
    entry_list l = {0};
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *path = path_join(root, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) rc = scan_class_dir(path, e->d_name, &l, 0);
        free(path);
    }
    closedir(d);
    if (rc == 0 && l.n == 0)
        rc = st_error_set("%s: no images (HINT: expected root/<class>/<image>.png|.jpg)", root);
    if (rc) {
        entries_free(&l);
        return -1;
    }
    dataset_from_entries(&l, out);
    return 0;
}

/* ---- TSV manifests ---------------------------------------------------------------------- */

static char *strndup_checked(const char *s, size_t n) {
    char *p = ST_MALLOC(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int st_dataset_parse_tsv(const char *text, size_t size, const char *source, const char *base_dir,
                         st_dataset *out) {
    memset(out, 0, sizeof *out);
    entry_list l = {0};
    size_t pos = 0;
    for (int line_no = 1; pos < size; line_no++) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - line) : size - pos;
        pos += len + (nl ? 1 : 0);
        if (len && line[len - 1] == '\r') len--;
        if (len == 0 || line[0] == '#') continue;
        if (memchr(line, '\0', len)) {
            entries_free(&l);
            return st_error_set("%s: line %d: NUL byte (not a text manifest)", source, line_no);
        }
        const char *tab = memchr(line, '\t', len);
        size_t path_len = tab ? (size_t)(tab - line) : 0;
        size_t label_len = tab ? len - path_len - 1 : 0;
        if (!tab || path_len == 0 || label_len == 0 || memchr(tab + 1, '\t', label_len)) {
            entries_free(&l);
            return st_error_set("%s: line %d: expected 'path<TAB>label' (HINT: one tab, both fields non-empty)",
                                source, line_no);
        }
        if (l.n == 0 && path_len == 4 && !strncasecmp(line, "path", 4)) continue; /* header */
        char *rel = strndup_checked(line, path_len);
        entries_push(&l, path_join(base_dir, rel), strndup_checked(tab + 1, label_len));
        free(rel);
    }
    if (l.n == 0) return st_error_set("%s: no entries (HINT: lines 'path<TAB>label')", source);
    dataset_from_entries(&l, out);
    return 0;
}

int st_dataset_load_tsv(const char *path, st_dataset *out) {
    memset(out, 0, sizeof *out);
    uint8_t *text;
    size_t size;
    if (st_read_file(path, &text, &size)) return -1;
    char *base = ST_STRDUP(path);
    char *slash = strrchr(base, '/');
    if (slash) *slash = '\0';
    else base[0] = '\0';
    int rc = st_dataset_parse_tsv((const char *)text, size, path, slash == base ? "/" : base, out);
    free(base);
    free(text);
    return rc;
}

int st_dataset_load(const char *path, st_dataset *out) {
    struct stat st;
    memset(out, 0, sizeof *out);
    if (stat(path, &st) != 0) return st_error_set("%s: dataset not found: %s", path, strerror(errno));
    return S_ISDIR(st.st_mode) ? st_dataset_load_folder(path, out) : st_dataset_load_tsv(path, out);
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
            entries_push(&l, ST_STRDUP(parts[p].paths[i]), prefixed);
        }
    }
    dataset_from_entries(&l, out);
}

void st_dataset_subset(const st_dataset *ds, const int *index, int n, st_dataset *out) {
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
    size_t len = strlen(path);
    char *tmp = ST_MALLOC(len + 5);
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int e = errno;
        free(tmp);
        return st_error_set("%s: cannot write split file: %s", path, strerror(e));
    }
    for (int i = 0; i < ds->n; i++) fprintf(f, "%s\t%s\n", ds->paths[i], ds->class_names[ds->labels[i]]);
    int failed = fflush(f) != 0 || fsync(fileno(f)) != 0;
    failed |= fclose(f) != 0;
    if (failed || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        free(tmp);
        return st_error_set("%s: cannot write split file: %s", path, strerror(e));
    }
    free(tmp);
    return 0;
}

void st_dataset_free(st_dataset *ds) {
    for (int i = 0; i < ds->n; i++) free(ds->paths[i]);
    for (int c = 0; c < ds->n_classes; c++) free(ds->class_names[c]);
    free(ds->paths);
    free(ds->labels);
    free(ds->class_names);
    memset(ds, 0, sizeof *ds);
}
