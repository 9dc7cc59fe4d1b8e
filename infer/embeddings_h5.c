/*
 * embeddings_h5.c: read, stream and write embedding files (schema and rules in embeddings_h5.h).
 * String datasets are read in whichever form h5py wrote them (variable-length or fixed-length)
 * and written variable-length UTF-8, as h5py 3 writes a list of str.
 */
#include "embeddings_h5.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/base/fileio.h"
#include "../kernels/check.h"
#include "h5util.h"

#define READ_BLOCK_ROWS 4096 /* rows per hyperslab read while loading a whole file */

/* 1 when every value of row is finite: a branch-free AND the compiler vectorises (NaN and inf
 * both fail |v| <= FLT_MAX). */
static int row_is_finite(const float *row, int d) {
    int ok = 1;
    for (int j = 0; j < d; j++) ok &= fabsf(row[j]) <= FLT_MAX;
    return ok;
}

int st_embeddings_check_finite(const float *x, long n, int d, long first_row, const char *path) {
    for (long i = 0; i < n; i++) {
        if (row_is_finite(x + (size_t)i * d, d)) continue;
        for (int j = 0; j < d; j++)
            if (!isfinite(x[(size_t)i * d + j]))
                return st_error_set("%s: /embeddings: row %ld has a non-finite value (NaN or "
                                    "inf) at column %d; HINT: re-export the embeddings, or drop "
                                    "that image",
                                    path, first_row + i, j);
    }
    return 0;
}

int st_embeddings_check_dims(const char *path_a, int d_a, const char *path_b, int d_b) {
    if (d_a == d_b) return 0;
    return st_error_set("%s: /embeddings: dimension %d differs from dimension %d of %s; HINT: "
                        "both files must come from the same model, layer and pooling",
                        path_b, d_b, d_a, path_a);
}

int st_embeddings_reader_open(const char *path, st_embeddings_reader *r) {
    memset(r, 0, sizeof *r);
    r->file = r->dataset = r->file_space = -1;
    hid_t f = st_h5_open_read(path);
    if (f < 0) return -1;
    int rank = 0;
    long long dims[2] = {0, 0};
    if (st_h5_dataset_shape(f, "embeddings", &rank, dims, 2, path, "/") != 0) {
        H5Fclose(f);
        return -1;
    }
    if (rank != 2 || dims[1] < 1) {
        H5Fclose(f);
        return st_error_set("%s: /embeddings: expected a 2-D (N, D) float32 dataset with D >= 1, "
                            "found rank %d",
                            path, rank);
    }
    r->path = ST_STRDUP(path);
    r->file = f;
    r->dataset = H5Dopen2(f, "embeddings", H5P_DEFAULT);
    r->file_space = H5Dget_space(r->dataset);
    r->n = (long)dims[0];
    r->d = (int)dims[1];
    return 0;
}

int st_embeddings_reader_rows(st_embeddings_reader *r, long start, long count, float *dst) {
    ST_CHECK(start >= 0 && count >= 0 && start + count <= r->n,
             "rows [%ld, %ld) outside the %ld rows of %s", start, start + count, r->n, r->path);
    if (count == 0) return 0;
    hsize_t offset[2] = {(hsize_t)start, 0}, size[2] = {(hsize_t)count, (hsize_t)r->d};
    hid_t mem = H5Screate_simple(2, size, NULL);
    H5Sselect_hyperslab(r->file_space, H5S_SELECT_SET, offset, NULL, size, NULL);
    herr_t rc = H5Dread(r->dataset, H5T_NATIVE_FLOAT, mem, r->file_space, H5P_DEFAULT, dst);
    H5Sclose(mem);
    if (rc < 0) {
        char why[512];
        st_h5_last_error(why, sizeof why);
        return st_error_set("%s: /embeddings: rows %ld..%ld cannot be read (%s); HINT: the file "
                            "is truncated or corrupt",
                            r->path, start, start + count - 1, why);
    }
    return st_embeddings_check_finite(dst, count, r->d, start, r->path);
}

void st_embeddings_reader_close(st_embeddings_reader *r) {
    if (r->file_space >= 0) H5Sclose(r->file_space);
    if (r->dataset >= 0) H5Dclose(r->dataset);
    if (r->file >= 0) H5Fclose(r->file);
    free(r->path);
    memset(r, 0, sizeof *r);
    r->file = r->dataset = r->file_space = -1;
}

/* Read the string dataset `name` (variable or fixed length) of the given rank (1, or 2 for a
 * row-major table) into a new array of all its strings; expected = their total count, or -1. */
static int read_string_dataset(hid_t file, const char *name, int rank, long expected, char ***out,
                               long *count, const char *path) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) return st_error_set("%s: /%s: not a readable dataset", path, name);
    hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    int rc = -1;
    long n = (long)H5Sget_simple_extent_npoints(space);
    if (H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_ndims(space) != rank) {
        st_error_set("%s: /%s: expected a %d-D dataset of strings", path, name, rank);
    } else if (expected >= 0 && n != expected) {
        st_error_set("%s: /%s: has %ld entries, expected %ld (%s)", path, name, n, expected,
                     rank == 1 ? "one per row of /embeddings" : "rows of /embeddings x /metadata_columns");
    } else {
        char **items = ST_CALLOC((size_t)n, sizeof *items);
        if (H5Tis_variable_str(type) > 0) {
            hid_t mem = H5Tcopy(H5T_C_S1);
            H5Tset_size(mem, H5T_VARIABLE);
            H5Tset_cset(mem, H5Tget_cset(type));
            char **raw = ST_CALLOC((size_t)n, sizeof *raw);
            if (n == 0 || H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0) {
                for (long i = 0; i < n; i++) items[i] = ST_STRDUP(raw[i] ? raw[i] : "");
                if (n > 0) H5Dvlen_reclaim(mem, space, H5P_DEFAULT, raw);
                rc = 0;
            }
            free(raw);
            H5Tclose(mem);
        } else {
            size_t width = H5Tget_size(type);
            hid_t mem = H5Tcopy(H5T_C_S1);
            H5Tset_size(mem, width);
            H5Tset_strpad(mem, H5T_STR_NULLPAD);
            char *raw = ST_CALLOC((size_t)n + 1, width);
            if (n == 0 || H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0) {
                for (long i = 0; i < n; i++) {
                    items[i] = ST_CALLOC(width + 1, 1);
                    memcpy(items[i], raw + (size_t)i * width, width);
                }
                rc = 0;
            }
            free(raw);
            H5Tclose(mem);
        }
        if (rc == 0) {
            *out = items;
            *count = n;
        } else {
            for (long i = 0; i < n; i++) free(items[i]);
            free(items);
            st_error_set("%s: /%s: strings cannot be read", path, name);
        }
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
    return rc;
}

/* A 1-D dataset of n strings, or with cols > 0 a 2-D (n, cols) table of n * cols row-major. */
static int write_string_dataset(hid_t file, const char *name, char *const *items, long n, long cols,
                                const char *path) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)cols};
    hid_t space = H5Screate_simple(cols > 0 ? 2 : 1, dims, NULL);
    hid_t d = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d >= 0 && (n * (cols > 0 ? cols : 1) == 0 || H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, items) >= 0)
                 ? 0
                 : -1;
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    H5Tclose(type);
    if (rc) st_error_set("%s: /%s: cannot write", path, name);
    return rc;
}

static void free_strings(char **items, long n) {
    if (!items) return;
    for (long i = 0; i < n; i++) free(items[i]);
    free(items);
}

void st_embeddings_free(st_embeddings *e) {
    free(e->vectors);
    free(e->labels);
    free_strings(e->label_names, e->n_label_names);
    free_strings(e->paths, e->n);
    free_strings(e->meta_names, e->n_meta);
    free_strings(e->meta, e->meta ? e->n * e->n_meta : 0);
    free(e->model);
    free(e->layer);
    free(e->pooling);
    free(e->weights_id);
    memset(e, 0, sizeof *e);
}

/* /metadata_columns (M) and /metadata (N, M), both or neither. */
static int read_metadata(hid_t f, const char *path, st_embeddings *e) {
    int has_columns = st_h5_has(f, "metadata_columns"), has_values = st_h5_has(f, "metadata");
    if (!has_columns && !has_values) return 0;
    if (!has_columns || !has_values)
        return st_error_set("%s: /%s without /%s", path, has_columns ? "metadata_columns" : "metadata",
                            has_columns ? "metadata" : "metadata_columns");
    long m = 0, total = 0;
    if (read_string_dataset(f, "metadata_columns", 1, -1, &e->meta_names, &m, path) != 0) return -1;
    e->n_meta = (int)m;
    return read_string_dataset(f, "metadata", 2, e->n * m, &e->meta, &total, path);
}

static int read_labels(hid_t f, const char *path, st_embeddings *e) {
    e->labels = ST_MALLOC((size_t)(e->n ? e->n : 1) * sizeof *e->labels);
    if (!st_h5_has(f, "labels")) {
        for (long i = 0; i < e->n; i++) e->labels[i] = -1;
        return 0;
    }
    if (st_h5_read_ints(f, "labels", e->labels, (size_t)e->n, path) != 0) return -1;
    for (long i = 0; i < e->n; i++) {
        int32_t l = e->labels[i];
        if (l < -1 || (e->label_names && l >= e->n_label_names))
            return st_error_set("%s: /labels: row %ld has label %d, expected -1 (unknown) or "
                                "0..%d",
                                path, i, (int)l,
                                e->label_names ? e->n_label_names - 1 : (int)INT32_MAX);
    }
    return 0;
}

static int read_attributes(hid_t f, const char *path, st_embeddings *e) {
    if (st_h5_read_string_attr(f, "model", &e->model, path, "/") < 0) return -1;
    if (st_h5_read_string_attr(f, "layer", &e->layer, path, "/") < 0) return -1;
    if (st_h5_read_string_attr(f, "pooling", &e->pooling, path, "/") < 0) return -1;
    if (st_h5_read_string_attr(f, "weights_id", &e->weights_id, path, "/") < 0) return -1;
    double normalized = 0;
    int found = st_h5_read_double_attr(f, "normalized", &normalized, path, "/");
    if (found < 0) return -1;
    e->normalized = found ? normalized != 0 : -1;
    double image_size = 0;
    if (st_h5_read_double_attr(f, "image_size", &image_size, path, "/") < 0) return -1;
    e->image_size = (int)image_size;
    double gem_p = 0;
    if (st_h5_read_double_attr(f, "gem_p", &gem_p, path, "/") < 0) return -1;
    e->gem_p = (float)gem_p;
    return 0;
}

int st_embeddings_read(const char *path, st_embeddings *out) {
    memset(out, 0, sizeof *out);
    out->normalized = -1;
    st_embeddings_reader r;
    if (st_embeddings_reader_open(path, &r) != 0) return -1;
    out->n = r.n;
    out->d = r.d;
    out->vectors = ST_MALLOC((size_t)(r.n ? r.n : 1) * (size_t)r.d * sizeof(float));
    int rc = 0;
    for (long start = 0; rc == 0 && start < r.n; start += READ_BLOCK_ROWS) {
        long count = r.n - start < READ_BLOCK_ROWS ? r.n - start : READ_BLOCK_ROWS;
        rc = st_embeddings_reader_rows(&r, start, count, out->vectors + (size_t)start * r.d);
    }
    hid_t f = r.file;
    long n_names = 0, n_paths = 0;
    if (rc == 0 && st_h5_has(f, "label_names")) {
        rc = read_string_dataset(f, "label_names", 1, -1, &out->label_names, &n_names, path);
        out->n_label_names = (int)n_names;
    }
    if (rc == 0) rc = read_labels(f, path, out);
    if (rc == 0 && st_h5_has(f, "paths"))
        rc = read_string_dataset(f, "paths", 1, out->n, &out->paths, &n_paths, path);
    if (rc == 0) rc = read_metadata(f, path, out);
    if (rc == 0) rc = read_attributes(f, path, out);
    st_embeddings_reader_close(&r);
    if (rc != 0) st_embeddings_free(out);
    return rc;
}

int st_embeddings_write(const char *path, const st_embeddings *e) {
    ST_CHECK(e->n >= 0 && e->d >= 1, "embeddings (%ld, %d) to write", e->n, e->d);
    if (st_embeddings_check_finite(e->vectors, e->n, e->d, 0, path) != 0) return -1;
    char tmp[4096];
    if (st_tmp_path(path, tmp, sizeof tmp) != 0) return -1;
    hid_t f = st_h5_create(tmp);
    if (f < 0) return -1;
    long long dims[2] = {e->n, e->d};
    int32_t *labels = ST_MALLOC((size_t)(e->n ? e->n : 1) * sizeof *labels);
    for (long i = 0; i < e->n; i++) labels[i] = e->labels ? e->labels[i] : -1;
    int rc = st_h5_write_floats(f, "embeddings", e->vectors, 2, dims, path);
    if (rc == 0) rc = st_h5_write_ints(f, "labels", labels, (size_t)e->n, path);
    if (rc == 0 && e->label_names)
        rc = write_string_dataset(f, "label_names", e->label_names, e->n_label_names, 0, path);
    if (rc == 0 && e->paths) rc = write_string_dataset(f, "paths", e->paths, e->n, 0, path);
    if (rc == 0 && e->n_meta > 0)
        rc = write_string_dataset(f, "metadata_columns", e->meta_names, e->n_meta, 0, path);
    if (rc == 0 && e->n_meta > 0) rc = write_string_dataset(f, "metadata", e->meta, e->n, e->n_meta, path);
    if (rc == 0 && e->weights_id) rc = st_h5_write_string_attr(f, "weights_id", e->weights_id, path, "/");
    if (rc == 0 && e->model) rc = st_h5_write_string_attr(f, "model", e->model, path, "/");
    if (rc == 0 && e->layer) rc = st_h5_write_string_attr(f, "layer", e->layer, path, "/");
    if (rc == 0 && e->pooling) rc = st_h5_write_string_attr(f, "pooling", e->pooling, path, "/");
    if (rc == 0 && e->normalized >= 0)
        rc = st_h5_write_long_attr(f, "normalized", e->normalized, path, "/");
    if (rc == 0 && e->image_size > 0)
        rc = st_h5_write_long_attr(f, "image_size", e->image_size, path, "/");
    if (rc == 0 && e->gem_p > 0) rc = st_h5_write_double_attr(f, "gem_p", e->gem_p, path, "/");
    free(labels);
    if (rc != 0) {
        st_h5_discard(f, tmp);
        return -1;
    }
    return st_h5_commit_atomic(f, tmp, path);
}
