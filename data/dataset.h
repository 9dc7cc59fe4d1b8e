/*
 * dataset.h: lists of image files with their labels (and metadata), deterministic, and their
 * splits.
 *
 * Sources:
 *   folder  root/<class>/.../<image>.{png,jpg,jpeg} (case-insensitive extension); each direct
 *           subdirectory of root is a class (hidden ones skipped), searched recursively.
 *           Images directly under root belong to no class: st_dataset_load skips them (listed
 *           in `skipped`), st_dataset_load_index keeps them unlabelled, so a flat folder of
 *           images is an unlabelled dataset there
 *   TSV/CSV manifest, one image per line. With a header line (a field `path`): columns path,
 *           optional label (or class), and any other columns kept as metadata (meta_names,
 *           meta). Without one: `path<TAB>label` (st_dataset_load_index also takes `path`
 *           alone). The separator is a tab when the first line has one, else a comma in a
 *           *.csv file or after a `path,` header; CSV fields may be double-quoted ("" is a
 *           quote; no line breaks inside). Relative paths are relative to the manifest's
 *           folder; blank lines and `#` comments are skipped; labels are class names (any
 *           text). st_dataset_load requires a label on every line; st_dataset_load_index takes
 *           an empty one as unlabelled
 * Files found in a folder but not taken (other formats such as .webp, dangling links, root
 * images of a class tree) are listed in `skipped` with the reason, never dropped silently.
 * Order is deterministic: classes sorted by name (strcmp), label = rank of the class name,
 * -1 for unlabelled images; images sorted by (class, path), unlabelled ones first. The same
 * files always give the same dataset.
 *
 * Combining datasets keeps their labels apart: class "c" of the dataset named "n" becomes
 * "n/c", so two datasets with a class "s1" never share a label.
 *
 * Splits: st_dataset_split is stratified per class (each class's images shuffled by a stream
 * derived from (seed, class name) and round(ratio * count) of them held out, leaving >= 1 in
 * train); subsets keep the parent's class list so labels agree between train and val.
 * st_dataset_split_classes holds out whole classes instead (open-set validation). A fixed
 * split file lists paths (first TAB-separated field of each line, as the dataset stores them);
 * st_dataset_write_paths writes one (atomically).
 *
 * Ownership: an st_dataset owns all its strings and arrays; st_dataset_free releases them.
 * Errors (unreadable folder, malformed manifest, empty dataset) return -1 with st_error_set
 * naming the file and line. Not thread-safe to build; read-only use is thread-safe.
 */
#ifndef ST_DATASET_H
#define ST_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct st_dataset {
    int n;              /* images */
    char **paths;       /* (n) file paths */
    int32_t *labels;    /* (n) in [0, n_classes); -1 (unlabelled) only from st_dataset_load_index */
    int n_classes;
    char **class_names; /* (n_classes) sorted; label i is class_names[i] */
    int n_meta;         /* metadata columns of a manifest with a header, else 0 */
    char **meta_names;  /* (n_meta) column names in manifest order */
    char **meta;        /* (n, n_meta) row-major values, "" when empty; NULL when n_meta = 0 */
    int n_skipped;      /* files found but left out, "path: reason" (folders only) */
    char **skipped;
} st_dataset;

/* A directory is read as a folder tree, anything else as a manifest; every image labelled (the
 * trainer's datasets). */
int st_dataset_load(const char *path, st_dataset *out);
/* The same sources for indexing (`simtune embed`): unlabelled images allowed (flat folders,
 * root images of a class tree, manifests without a label column or with empty labels). */
int st_dataset_load_index(const char *path, st_dataset *out);
/* "warning: <source>: N files skipped:" and the first 20 of them, one per line; nothing when
 * none was skipped. */
void st_dataset_print_skipped(const st_dataset *ds, const char *source, FILE *out);
/* Parse manifest text (not NUL-terminated; `source` names it in messages; labels required). */
int st_dataset_parse_tsv(const char *text, size_t size, const char *source, const char *base_dir,
                         st_dataset *out);

/* out = the parts in order with class names prefixed "<name>/"; labels stay disjoint. */
void st_dataset_combine(const st_dataset *parts, const char *const *names, int n_parts, st_dataset *out);

/* Stratified split: val gets round(ratio * count) images of each class (train keeps >= 1). */
int st_dataset_split(const st_dataset *ds, double val_ratio, uint64_t seed, st_dataset *train, st_dataset *val);

/* Open-set split: held_out (n_classes flags) marks whole classes; val = every image of a marked
 * class, train = the rest; both keep ds's class list. */
void st_dataset_split_classes(const st_dataset *ds, const char *held_out, st_dataset *train, st_dataset *val);

/* Marks round(fraction * n_classes) classes (at least 1, at most n_classes - 1) in held_out:
 * those whose stream derived from (seed, class name) draws the smallest keys, so the choice
 * depends only on the seed and the names (a class's key never depends on the others). -1 when
 * ds has fewer than 2 classes. */
int st_dataset_choose_classes(const st_dataset *ds, double fraction, uint64_t seed, char *held_out);

/* Index of the class named name, -1 when absent. */
int st_dataset_find_class(const st_dataset *ds, const char *name);

/* out = ds restricted to the index list (any order; kept as given), same classes. */
void st_dataset_subset(const st_dataset *ds, const int *index, int n, st_dataset *out);

/* out = the images of ds whose path is listed in the split file; -1 if a listed path is not in
 * ds (names the line) or the file is unreadable. */
int st_dataset_select_file(const st_dataset *ds, const char *split_path, st_dataset *out);

/* Writes ds's paths with their class, `path<TAB>class` per line, to path (path.tmp + rename). */
int st_dataset_write_paths(const st_dataset *ds, const char *path);

/* counts: (n_classes) images per class, caller-allocated. */
void st_dataset_class_counts(const st_dataset *ds, int *counts);

void st_dataset_free(st_dataset *ds);

#endif
