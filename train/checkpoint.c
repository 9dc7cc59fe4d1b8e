/*
 * checkpoint.c: save / load / rotate training checkpoints (layout and contract in checkpoint.h).
 * Model parameters go through the weight writer and loader of infer/weights_h5.c; the state
 * blobs are plain contiguous datasets with a checksum attribute each.
 */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/base/fileio.h"
#include "../infer/h5util.h"
#include "../infer/weights_h5.h"
#include "../kernels/check.h"

enum { CHECKPOINT_VERSION = 1 };

static const char *kind_group[] = {"tensors", "u64", "i32"};
static const char *kind_list[] = {"tensor_names", "u64_names", "i32_names"};
static const size_t kind_size[] = {sizeof(float), sizeof(uint64_t), sizeof(int32_t)};

/* 64-bit FNV-1a over 8-byte words (then the tail bytes): cheap, and any changed byte changes it. */
static uint64_t checksum_update(uint64_t h, const void *data, size_t bytes) {
    const unsigned char *p = data;
    size_t words = bytes / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
    }
    for (size_t i = 8 * words; i < bytes; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}
#define CHECKSUM_SEED 0xcbf29ce484222325ULL

void st_checkpoint_init(st_checkpoint *ck) { memset(ck, 0, sizeof *ck); }

void st_checkpoint_free(st_checkpoint *ck) {
    for (int i = 0; i < ck->n_blobs; i++) {
        free(ck->blobs[i].name);
        free(ck->blobs[i].data);
    }
    free(ck->blobs);
    free(ck->config_yaml);
    memset(ck, 0, sizeof *ck);
}

void st_checkpoint_set_config(st_checkpoint *ck, const char *yaml) {
    free(ck->config_yaml);
    ck->config_yaml = ST_STRDUP(yaml);
}

static void add_blob(st_checkpoint *ck, const char *name, st_blob_kind kind, const void *data, size_t n) {
    ST_CHECK(name && name[0] && name[0] != '/', "checkpoint blob name '%s' must be a relative path",
             name ? name : "(null)");
    st_checkpoint_blob *b = NULL;
    for (int i = 0; i < ck->n_blobs && !b; i++)
        if (strcmp(ck->blobs[i].name, name) == 0) b = &ck->blobs[i];
    if (b) {
        free(b->data);
    } else {
        ck->blobs = realloc(ck->blobs, (size_t)(ck->n_blobs + 1) * sizeof *ck->blobs);
        ST_CHECK(ck->blobs, "out of memory adding checkpoint blob %s", name);
        b = &ck->blobs[ck->n_blobs++];
        b->name = ST_STRDUP(name);
    }
    b->kind = kind;
    b->n = n;
    b->data = ST_MALLOC(n * kind_size[kind]);
    if (n) memcpy(b->data, data, n * kind_size[kind]);
}

void st_checkpoint_add_tensor(st_checkpoint *ck, const char *name, const float *host, size_t n) {
    add_blob(ck, name, ST_BLOB_F32, host, n);
}
void st_checkpoint_add_u64(st_checkpoint *ck, const char *name, const uint64_t *words, size_t n) {
    add_blob(ck, name, ST_BLOB_U64, words, n);
}
void st_checkpoint_add_i32(st_checkpoint *ck, const char *name, const int32_t *values, size_t n) {
    add_blob(ck, name, ST_BLOB_I32, values, n);
}

static const void *get_blob(const st_checkpoint *ck, const char *name, st_blob_kind kind, size_t *n) {
    for (int i = 0; i < ck->n_blobs; i++) {
        if (ck->blobs[i].kind == kind && strcmp(ck->blobs[i].name, name) == 0) {
            if (n) *n = ck->blobs[i].n;
            return ck->blobs[i].data;
        }
    }
    return NULL;
}

const float *st_checkpoint_get_tensor(const st_checkpoint *ck, const char *name, size_t *n) {
    return get_blob(ck, name, ST_BLOB_F32, n);
}
const uint64_t *st_checkpoint_get_u64(const st_checkpoint *ck, const char *name, size_t *n) {
    return get_blob(ck, name, ST_BLOB_U64, n);
}
const int32_t *st_checkpoint_get_i32(const st_checkpoint *ck, const char *name, size_t *n) {
    return get_blob(ck, name, ST_BLOB_I32, n);
}

/* Elements of the largest parameter (at least 1): the size of a host buffer for any of them. */
static size_t max_param_numel(const st_model *m) {
    size_t max_numel = 1;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].numel > max_numel) max_numel = m->params[i].numel;
    return max_numel;
}

/* Hash of every parameter value in model order (downloaded from the device). */
static uint64_t params_checksum(const st_model *m) {
    float *host = ST_MALLOC(max_param_numel(m) * sizeof *host);
    uint64_t h = CHECKSUM_SEED;
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        st_param_download(m, p, p->value, host);
        h = checksum_update(h, host, p->numel * sizeof *host);
    }
    free(host);
    return h;
}

/* uint64 attributes go through long long: the bits are what matter. */
static int write_u64_attr(hid_t obj, const char *name, uint64_t value, const char *path, const char *where) {
    long long bits;
    memcpy(&bits, &value, sizeof bits);
    return st_h5_write_long_attr(obj, name, bits, path, where);
}

static int read_u64_attr(hid_t obj, const char *name, uint64_t *value, const char *path, const char *where) {
    hid_t attr = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : -1;
    if (attr < 0) return st_error_set("%s: %s: attribute '%s' is missing", path, where, name);
    long long bits = 0;
    hid_t space = H5Aget_space(attr);
    int rc = H5Sget_simple_extent_npoints(space) == 1 && H5Aread(attr, H5T_NATIVE_LLONG, &bits) >= 0 ? 0 : -1;
    H5Sclose(space);
    H5Aclose(attr);
    if (rc) return st_error_set("%s: %s: attribute '%s' is not one 64-bit integer", path, where, name);
    memcpy(value, &bits, sizeof bits);
    return 0;
}

static int write_blob(hid_t state, const st_checkpoint_blob *b, const char *path) {
    char ds[512];
    snprintf(ds, sizeof ds, "%s/%s", kind_group[b->kind], b->name);
    int rc;
    if (b->kind == ST_BLOB_F32) {
        long long dims[1] = {(long long)b->n};
        rc = st_h5_write_floats(state, ds, b->data, 1, dims, path);
    } else if (b->kind == ST_BLOB_U64) {
        rc = st_h5_write_u64s(state, ds, b->data, b->n, path);
    } else {
        rc = st_h5_write_ints(state, ds, b->data, b->n, path);
    }
    if (rc != 0) return -1;
    hid_t d = H5Dopen2(state, ds, H5P_DEFAULT);
    rc = write_u64_attr(d, "checksum", checksum_update(CHECKSUM_SEED, b->data, b->n * kind_size[b->kind]),
                        path, ds);
    H5Dclose(d);
    return rc;
}

static int write_state(hid_t file, const st_checkpoint *ck, const char *path) {
    hid_t state = H5Gcreate2(file, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (state < 0) return st_error_set("%s: cannot create group /state", path);
    int rc = 0;
    for (int kind = 0; kind < 3 && rc == 0; kind++) {
        const char **names = ST_MALLOC(((size_t)ck->n_blobs + 1) * sizeof *names);
        int n = 0;
        for (int i = 0; i < ck->n_blobs; i++)
            if ((int)ck->blobs[i].kind == kind) names[n++] = ck->blobs[i].name;
        rc = st_h5_write_strlist(state, kind_list[kind], names, n, path, "/state");
        free(names);
    }
    for (int i = 0; i < ck->n_blobs && rc == 0; i++) rc = write_blob(state, &ck->blobs[i], path);
    H5Gclose(state);
    return rc;
}

static int write_all(hid_t file, const st_checkpoint *ck, const st_model *m, const char *path) {
    hid_t weights = H5Gcreate2(file, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (weights < 0) return st_error_set("%s: cannot create group /model_weights", path);
    int rc = st_weights_write_group(m, file, weights, path);
    H5Gclose(weights);
    if (rc != 0 ||
        st_h5_write_string_attr(file, "simtune_format", "checkpoint", path, "/") != 0 ||
        st_h5_write_long_attr(file, "checkpoint_version", CHECKPOINT_VERSION, path, "/") != 0 ||
        st_h5_write_long_attr(file, "step", ck->step, path, "/") != 0 ||
        st_h5_write_long_attr(file, "epoch", ck->epoch, path, "/") != 0 ||
        st_h5_write_string_attr(file, "config_yaml", ck->config_yaml ? ck->config_yaml : "", path, "/") != 0 ||
        write_u64_attr(file, "params_checksum", params_checksum(m), path, "/") != 0)
        return -1;
    return write_state(file, ck, path);
}

/* Index of the first non-finite value of n floats, or n when all are finite. */
static size_t first_non_finite(const float *x, size_t n) {
    size_t i = 0;
    while (i < n && isfinite(x[i])) i++;
    return i;
}

/* The first float blob holding a non-finite value (its element in *at), or NULL. */
static const st_checkpoint_blob *non_finite_blob(const st_checkpoint *ck, size_t *at) {
    for (int i = 0; i < ck->n_blobs; i++) {
        const st_checkpoint_blob *b = &ck->blobs[i];
        *at = b->kind == ST_BLOB_F32 ? first_non_finite(b->data, b->n) : b->n;
        if (*at < b->n) return b;
    }
    return NULL;
}

/* The first parameter of m (BN moving statistics included) holding a non-finite value, or NULL;
 * its element in *at and the value in *value. */
static const st_param *non_finite_param(const st_model *m, size_t *at, float *value) {
    float *host = ST_MALLOC(max_param_numel(m) * sizeof *host);
    const st_param *found = NULL;
    for (int i = 0; i < m->n_params && !found; i++) {
        const st_param *p = &m->params[i];
        st_param_download(m, p, p->value, host);
        *at = first_non_finite(host, p->numel);
        if (*at < p->numel) {
            found = p;
            *value = host[*at];
        }
    }
    free(host);
    return found;
}

int st_checkpoint_finite(const st_checkpoint *ck, const st_model *m) {
    size_t at;
    float value;
    return !non_finite_param(m, &at, &value) && !non_finite_blob(ck, &at);
}

/* A diverged run must never replace a good checkpoint: refuse when any parameter (BN moving
 * statistics included) or state tensor holds an inf or NaN. Callers tell a divergence from other
 * failures with st_checkpoint_finite, not by the message. */
static int check_finite(const st_checkpoint *ck, const st_model *m, const char *path) {
    size_t at;
    float value;
    const st_param *p = non_finite_param(m, &at, &value);
    int rc = 0;
    if (p)
        rc = st_error_set("%s: not written: layer %s, weight %s, element %zu is %g: training "
                          "diverged (HINT: lower optimizer.lr or set optimizer.grad_clip)",
                          path, p->layer, p->weight, at, (double)value);
    const st_checkpoint_blob *b = rc == 0 ? non_finite_blob(ck, &at) : NULL;
    if (b)
        rc = st_error_set("%s: not written: %s, element %zu is %g: training diverged (HINT: lower "
                          "optimizer.lr or set optimizer.grad_clip)",
                          path, b->name, at, (double)((const float *)b->data)[at]);
    return rc;
}

/* Write ck and m to tmp (a complete, closed file, not yet renamed); path names it in messages. */
static int write_tmp(const st_checkpoint *ck, const st_model *m, const char *tmp, const char *path) {
    if (ck->config_yaml && strlen(ck->config_yaml) > ST_H5_ATTR_LIMIT)
        return st_error_set("%s: config_yaml: %zu bytes, more than the %d an attribute holds",
                            path, strlen(ck->config_yaml), ST_H5_ATTR_LIMIT);
    if (check_finite(ck, m, path) != 0) return -1;
    hid_t f = st_h5_create(tmp);
    if (f < 0) return -1;
    if (write_all(f, ck, m, path) != 0) {
        st_h5_discard(f, tmp);
        return -1;
    }
    return st_h5_close_written(f, tmp, path);
}

int st_checkpoint_save(const st_checkpoint *ck, const st_model *m, const char *path) {
    char tmp[4200];
    if (st_tmp_path(path, tmp, sizeof tmp) != 0 || write_tmp(ck, m, tmp, path) != 0) return -1;
    return st_file_commit(tmp, path);
}

/* ---- loading --------------------------------------------------------------------------- */

static int read_blob(hid_t state, st_checkpoint *ck, st_blob_kind kind, const char *name, const char *path) {
    char ds[512];
    snprintf(ds, sizeof ds, "%s/%s", kind_group[kind], name);
    int rank = 0;
    long long dims[1] = {0};
    if (st_h5_dataset_shape(state, ds, &rank, dims, 1, path, "/state") != 0) return -1;
    if (rank != 1) return st_error_set("%s: /state/%s: expected a 1-D dataset", path, ds);
    size_t n = (size_t)dims[0];
    void *data = ST_MALLOC((n ? n : 1) * kind_size[kind]);
    int rc;
    if (kind == ST_BLOB_F32) rc = st_h5_read_floats(state, ds, data, n, path, "/state");
    else if (kind == ST_BLOB_U64) rc = st_h5_read_u64s(state, ds, (unsigned long long *)data, n, path);
    else rc = st_h5_read_ints(state, ds, data, n, path);
    uint64_t stored = 0;
    if (rc == 0) {
        hid_t d = H5Dopen2(state, ds, H5P_DEFAULT);
        rc = read_u64_attr(d, "checksum", &stored, path, ds);
        H5Dclose(d);
    }
    if (rc == 0 && stored != checksum_update(CHECKSUM_SEED, data, n * kind_size[kind]))
        rc = st_error_set("%s: /state/%s: checksum mismatch, the data is corrupt; HINT: resume from "
                          "an older checkpoint of the run",
                          path, ds);
    if (rc == 0) add_blob(ck, name, kind, data, n);
    free(data);
    return rc;
}

static int read_state(hid_t file, st_checkpoint *ck, const char *path) {
    if (!st_h5_has(file, "state")) return st_error_set("%s: group /state is missing", path);
    hid_t state = H5Gopen2(file, "state", H5P_DEFAULT);
    if (state < 0) return st_error_set("%s: /state is not a group", path);
    int rc = 0;
    for (int kind = 0; kind < 3 && rc == 0; kind++) {
        st_strlist names;
        int found = st_h5_read_strlist(state, kind_list[kind], &names, path, "/state");
        if (found == 0) rc = st_error_set("%s: /state: attribute '%s' is missing", path, kind_list[kind]);
        if (found <= 0) {
            rc = -1;
            break;
        }
        for (int i = 0; i < names.n && rc == 0; i++) rc = read_blob(state, ck, (st_blob_kind)kind, names.items[i], path);
        st_strlist_free(&names);
    }
    H5Gclose(state);
    return rc;
}

static int read_header(hid_t file, st_checkpoint *ck, uint64_t *params_sum, const char *path) {
    char *format = NULL;
    double version = 0, step = -1, epoch = -1;
    if (st_h5_read_string_attr(file, "simtune_format", &format, path, "/") < 0) return -1;
    int is_ckpt = format && strcmp(format, "checkpoint") == 0;
    free(format);
    if (!is_ckpt)
        return st_error_set("%s: not a simtune checkpoint (root attribute simtune_format is not "
                            "'checkpoint'); HINT: weight files are loaded with the weights: key, "
                            "not resumed",
                            path);
    if (st_h5_read_double_attr(file, "checkpoint_version", &version, path, "/") <= 0 ||
        version != CHECKPOINT_VERSION)
        return st_error_set("%s: checkpoint_version %g is not %d (written by another simtune)", path,
                            version, CHECKPOINT_VERSION);
    if (st_h5_read_double_attr(file, "step", &step, path, "/") <= 0 || step < 0 ||
        st_h5_read_double_attr(file, "epoch", &epoch, path, "/") <= 0 || epoch < 0)
        return st_error_set("%s: attributes step/epoch are missing or negative", path);
    ck->step = (long long)step;
    ck->epoch = (long long)epoch;
    if (st_h5_read_string_attr(file, "config_yaml", &ck->config_yaml, path, "/") <= 0)
        return st_error_set("%s: attribute config_yaml is missing", path);
    return read_u64_attr(file, "params_checksum", params_sum, path, "/");
}

/* Header and state of path into ck (initialised here), every blob's checksum checked and the
 * float blobs finite; the parameters' checksum into *params_sum. 0, or -1 with ck empty. */
static int read_checkpoint(st_checkpoint *ck, const char *path, uint64_t *params_sum) {
    st_checkpoint_init(ck);
    hid_t file = st_h5_open_read(path);
    if (file < 0) return -1;
    int rc = read_header(file, ck, params_sum, path);
    if (rc == 0) rc = read_state(file, ck, path);
    H5Fclose(file);
    /* the parameters' finiteness is checked by st_weights_load; here the optimizer state's */
    size_t at;
    const st_checkpoint_blob *b = rc == 0 ? non_finite_blob(ck, &at) : NULL;
    if (b)
        rc = st_error_set("%s: /state/tensors/%s: element %zu is %g: the training had diverged "
                          "when this was written; HINT: resume from an older checkpoint of the run",
                          path, b->name, at, (double)((const float *)b->data)[at]);
    if (rc != 0) st_checkpoint_free(ck);
    return rc;
}

/* The parameters of path into m, all of them (the head must fit) and matching params_sum. */
static int load_params(st_model *m, const char *path, uint64_t params_sum) {
    st_weights_report rep;
    int rc = st_weights_load(m, path, &rep);
    if (rc == 0 && (rep.n_kept || rep.n_ignored))
        rc = st_error_set("%s: the checkpoint's head does not fit the model (%s%s); HINT: resume "
                          "with the config the run was started with",
                          path, rep.n_ignored ? "ignored " : "not in the file: ",
                          rep.n_ignored ? rep.ignored[0] : rep.kept[0]);
    st_weights_report_free(&rep);
    if (rc == 0 && params_checksum(m) != params_sum)
        rc = st_error_set("%s: /model_weights: parameter checksum mismatch, the data is corrupt; "
                          "HINT: resume from an older checkpoint of the run",
                          path);
    return rc;
}

/* read_checkpoint, then the parameters into the model model_for builds for it. */
static int load_for(st_checkpoint *ck, st_checkpoint_model_fn model_for, void *user, const char *path) {
    uint64_t params_sum = 0;
    if (read_checkpoint(ck, path, &params_sum)) return -1;
    st_model *m = model_for(ck, path, user);
    int rc = m ? load_params(m, path, params_sum) : -1;
    if (rc != 0) st_checkpoint_free(ck);
    return rc;
}

static st_model *given_model(const st_checkpoint *ck, const char *path, void *model) {
    (void)ck;
    (void)path;
    return model;
}

int st_checkpoint_load(st_checkpoint *ck, st_model *m, const char *path) { return load_for(ck, given_model, m, path); }

/* ---- run folder ------------------------------------------------------------------------ */

/* Steps of run_dir/ckpt-<step>.h5 files, ascending; returns the count (malloc'ed *steps). */
static int list_steps(const char *run_dir, long long **steps) {
    *steps = NULL;
    DIR *dir = opendir(run_dir);
    if (!dir) return st_error_set("%s: cannot list: %s", run_dir, strerror(errno));
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        long long step;
        int used = 0;
        if (sscanf(e->d_name, "ckpt-%lld.h5%n", &step, &used) == 1 && used > 0 && e->d_name[used] == '\0') {
            *steps = realloc(*steps, (size_t)(n + 1) * sizeof **steps);
            ST_CHECK(*steps, "out of memory listing %s", run_dir);
            int i = n++;
            while (i > 0 && (*steps)[i - 1] > step) {
                (*steps)[i] = (*steps)[i - 1];
                i--;
            }
            (*steps)[i] = step;
        }
    }
    closedir(dir);
    return n;
}

/* Read file back (a just-written checkpoint) and checksum it: every parameter dataset in model
 * order against the stored params_checksum, every state blob against its own (read_state). */
static int verify_file(const char *file, const st_model *m, const char *path) {
    hid_t f = st_h5_open_read(file);
    if (f < 0) return -1;
    uint64_t stored = 0, sum = CHECKSUM_SEED;
    int rc = read_u64_attr(f, "params_checksum", &stored, path, "/");
    float *host = ST_MALLOC(max_param_numel(m) * sizeof *host);
    for (int i = 0; i < m->n_params && rc == 0; i++) {
        const st_param *p = &m->params[i];
        const char *layer = st_model_layer_name(m, p->layer_index);
        char ds[512];
        snprintf(ds, sizeof ds, "model_weights/%s/%s/%s:0", layer, layer, p->weight);
        rc = st_h5_read_floats(f, ds, host, p->numel, path, "read back after writing");
        if (rc == 0) sum = checksum_update(sum, host, p->numel * sizeof *host);
    }
    free(host);
    st_checkpoint scratch;
    st_checkpoint_init(&scratch);
    if (rc == 0) rc = read_state(f, &scratch, path);
    st_checkpoint_free(&scratch);
    H5Fclose(f);
    if (rc == 0 && sum != stored) rc = st_error_set("/model_weights: parameter checksum mismatch");
    return rc;
}

/* run_dir/best.h5 from the checkpoint just written at ckpt_path: verified, then renamed into
 * place, so a bad copy never replaces the previous best. */
static int save_best(const st_checkpoint *ck, const st_model *m, const char *run_dir, const char *ckpt_path) {
    char best[4096], tmp[4200];
    snprintf(best, sizeof best, "%s/best.h5", run_dir);
    if (st_tmp_path(best, tmp, sizeof tmp) != 0) return -1;
    unlink(tmp);
    /* A hard link is a complete copy that survives pruning; without links, a second write. */
    if (link(ckpt_path, tmp) != 0 && write_tmp(ck, m, tmp, best) != 0) return -1;
    if (verify_file(tmp, m, best) != 0) {
        char why[1024];
        const char *inner = st_error_get();
        if (strncmp(inner, best, strlen(best)) == 0 && strncmp(inner + strlen(best), ": ", 2) == 0)
            inner += strlen(best) + 2; /* the file is named once, below */
        snprintf(why, sizeof why, "%s", inner);
        char *hint = strstr(why, "; HINT");
        if (hint) *hint = '\0';
        unlink(tmp);
        return st_error_set("%s: not replaced: the new copy does not read back as written (%s); HINT: the "
                            "disk or file system corrupts data, check it; the run folder keeps the previous best.h5",
                            best, why);
    }
    return st_file_commit(tmp, best);
}

int st_checkpoint_save_run(const st_checkpoint *ck, const st_model *m, const char *run_dir,
                           int keep_last, int is_best) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ckpt-%lld.h5", run_dir, ck->step);
    if (st_checkpoint_save(ck, m, path) != 0) return -1;
    if (is_best && save_best(ck, m, run_dir, path) != 0) return -1;
    long long *steps;
    int n = list_steps(run_dir, &steps);
    if (n < 0) return -1;
    for (int i = 0; i + (keep_last > 1 ? keep_last : 1) < n; i++) {
        snprintf(path, sizeof path, "%s/ckpt-%lld.h5", run_dir, steps[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            free(steps);
            return st_error_set("%s: cannot delete an old checkpoint: %s", path, strerror(errno));
        }
    }
    free(steps);
    return 0;
}

int st_checkpoint_latest(const char *run_dir, char *path_out, size_t size) {
    long long *steps;
    int n = list_steps(run_dir, &steps);
    if (n <= 0) return n;
    snprintf(path_out, size, "%s/ckpt-%lld.h5", run_dir, steps[n - 1]);
    free(steps);
    return 1;
}

int st_checkpoint_resume_latest(st_checkpoint *ck, st_checkpoint_model_fn model_for, void *user, const char *run_dir,
                                char *path_out, size_t size, FILE *log) {
    long long *steps;
    int n = list_steps(run_dir, &steps);
    if (n <= 0) return n;
    int rc = -1;
    char newest_error[1024] = "";
    for (int i = n - 1; i >= 0 && rc != 0; i--) {
        snprintf(path_out, size, "%s/ckpt-%lld.h5", run_dir, steps[i]);
        rc = load_for(ck, model_for, user, path_out);
        if (rc == 0) break;
        if (i == n - 1) snprintf(newest_error, sizeof newest_error, "%s", st_error_get());
        if (log)
            fprintf(log, "warning: cannot resume from %s: %s%s\n", path_out, st_error_get(),
                    i > 0 ? "; trying the checkpoint before it" : "");
    }
    free(steps);
    if (rc != 0)
        return st_error_set("%s: none of its %d checkpoints can be resumed from; the newest: %s",
                            run_dir, n, newest_error);
    return 1;
}

int st_checkpoint_load_latest(st_checkpoint *ck, st_model *m, const char *run_dir, char *path_out,
                              size_t size, FILE *log) {
    return st_checkpoint_resume_latest(ck, given_model, m, run_dir, path_out, size, log);
}
