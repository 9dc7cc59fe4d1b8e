/*
 * dataset.h: labelled lists of image files, deterministic, and their splits.
 *
 * Sources:
 *   folder  root/<class>/.../<image>.{png,jpg,jpeg} (case-insensitive extension); each direct
 *           subdirectory of root is a class (hidden ones skipped), searched recursively
 *   TSV     manifest lines `path<TAB>label`; relative paths are relative to the manifest's
 *           folder; an optional header line `path<TAB>label`, blank lines and `#` comments are
 *           skipped; labels are class names (any text without tab)
 * Order is deterministic: classes sorted by name (strcmp), label = rank of the class name;
 * images sorted by (class, path). The same files always give the same dataset.
 *
 * Combining datasets keeps their labels apart: class "c" of the dataset named "n" becomes
 * "n/c", so two datasets with a class "s1" never share a label.
 *
 * Splits: st_dataset_split is stratified per class (each class's images shuffled by a stream
 * derived from (seed, class name) and round(ratio * count) of them held out, leaving >= 1 in
 * train); subsets keep the parent's class list so labels agree between train and val. A fixed
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

typedef struct st_dataset {
    int n;              /* images */
    char **paths;       /* (n) file paths */
    int32_t *labels;    /* (n) in [0, n_classes) */
    int n_classes;
    char **class_names; /* (n_classes) sorted; label i is class_names[i] */
} st_dataset;

/* A directory is read as a folder tree, anything else as a TSV manifest. */
int st_dataset_load(const char *path, st_dataset *out);
int st_dataset_load_folder(const char *root, st_dataset *out);
int st_dataset_load_tsv(const char *path, st_dataset *out);
/* Parse manifest text (not NUL-terminated; `source` names it in messages). */
int st_dataset_parse_tsv(const char *text, size_t size, const char *source, const char *base_dir,
                         st_dataset *out);

/* out = the parts in order with class names prefixed "<name>/"; labels stay disjoint. */
void st_dataset_combine(const st_dataset *parts, const char *const *names, int n_parts, st_dataset *out);

/* Stratified split: val gets round(ratio * count) images of each class (train keeps >= 1). */
int st_dataset_split(const st_dataset *ds, double val_ratio, uint64_t seed, st_dataset *train, st_dataset *val);

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
