/*
 * checkpoint.h: the whole training state in one HDF5 file, written atomically, loaded with full
 * validation, plus the run-folder policy (last N checkpoints and the best one).
 *
 * File layout (checkpoint_version 1):
 *   /                 attrs simtune_format "checkpoint", checkpoint_version, step, epoch,
 *                     config_yaml (the effective config), params_checksum, and the family
 *                     attributes of weights_h5 (arch, family, bn_epsilon, preprocess ...)
 *   /model_weights    every model parameter incl. BN moving statistics in the Keras 2 layout
 *                     (st_weights_write_group), so a checkpoint is also a weight file for
 *                     st_weights_load / `simtune inspect`
 *   /state            attrs tensor_names, u64_names, i32_names (string lists)
 *   /state/tensors/<name>   float32 blobs (optimizer state: "optimizer/m", ...)
 *   /state/u64/<name>       uint64 words (RNG state)
 *   /state/i32/<name>       int32 arrays (data order, cursors)
 * Every blob dataset carries attr checksum (64-bit hash of its bytes); params_checksum covers
 * all model parameters in model order. Loading recomputes both, so a corrupt byte anywhere in
 * the data is reported, not trained on; best.h5 is read back and checked the same way when
 * written. Every float (parameters, BN moving statistics, optimizer state) is finite in every
 * checkpoint written, and loading refuses a file where one is not.
 *
 * Ownership: st_checkpoint owns copies of everything added to it (blobs, config); the getters
 * return pointers into it, valid until st_checkpoint_free. Callers: train/ (save every K steps,
 * resume), tests/test_checkpoint.c.
 */
#ifndef ST_CHECKPOINT_H
#define ST_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../infer/model/model.h"

typedef enum { ST_BLOB_F32, ST_BLOB_U64, ST_BLOB_I32 } st_blob_kind;

typedef struct st_checkpoint_blob {
    char *name;        /* e.g. "optimizer/m", "rng/sampler", "data/order" */
    st_blob_kind kind;
    void *data;        /* n elements of the kind's type, owned */
    size_t n;
} st_checkpoint_blob;

typedef struct st_checkpoint {
    long long step;    /* optimizer steps done */
    long long epoch;   /* epochs done */
    char *config_yaml; /* effective config, owned; NULL until set */
    st_checkpoint_blob *blobs;
    int n_blobs;
} st_checkpoint;

void st_checkpoint_init(st_checkpoint *ck);
void st_checkpoint_free(st_checkpoint *ck);

void st_checkpoint_set_config(st_checkpoint *ck, const char *yaml);
/* Copy n host values under name (replacing a blob of the same name). */
void st_checkpoint_add_tensor(st_checkpoint *ck, const char *name, const float *host, size_t n);
void st_checkpoint_add_u64(st_checkpoint *ck, const char *name, const uint64_t *words, size_t n);
void st_checkpoint_add_i32(st_checkpoint *ck, const char *name, const int32_t *values, size_t n);
/* NULL when absent or of another kind; *n set when found. */
const float *st_checkpoint_get_tensor(const st_checkpoint *ck, const char *name, size_t *n);
const uint64_t *st_checkpoint_get_u64(const st_checkpoint *ck, const char *name, size_t *n);
const int32_t *st_checkpoint_get_i32(const st_checkpoint *ck, const char *name, size_t *n);

/* Write ck + the parameters of m to path atomically (path.tmp, fsync, rename, fsync of the
 * directory). Refused, with a message saying the training diverged, when any parameter (BN
 * moving statistics included) or float blob is not finite. 0 or -1 with st_error_get() naming
 * the file and, for write errors, the OS reason. */
int st_checkpoint_save(const st_checkpoint *ck, const st_model *m, const char *path);

/* 1 when every parameter of m and every float blob of ck is finite, else 0: the typed reason a
 * save was refused as diverged (callers never match the message). */
int st_checkpoint_finite(const st_checkpoint *ck, const st_model *m);

/* Read path into ck (initialised here) and its parameters into m (same arch and head config as
 * when saved). Validates format, version, every blob's checksum and the parameters' checksum;
 * 0, or -1 with a message naming the file and the failing item (ck is then empty). */
int st_checkpoint_load(st_checkpoint *ck, st_model *m, const char *path);

/* Save run_dir/ckpt-<step>.h5, also best.h5 when is_best (a hard link, or a second write where
 * links are not supported, read back and checksummed before it is renamed into place), then
 * delete all but the newest keep_last (at least 1) ckpt-*.h5; best.h5 is never deleted. 0 or -1. */
int st_checkpoint_save_run(const st_checkpoint *ck, const st_model *m, const char *run_dir,
                           int keep_last, int is_best);

/* Newest run_dir/ckpt-<step>.h5 into path_out (for resume); 1 found, 0 none, -1 error. */
int st_checkpoint_latest(const char *run_dir, char *path_out, size_t size);

/* Resume: load the newest run_dir/ckpt-<step>.h5 that loads (readable, checksums right, every
 * tensor finite), trying older ones in turn with a warning line on log (NULL: none) for each
 * skipped. path_out gets the file loaded. 1 loaded, 0 no checkpoint, -1 none loads (the
 * message names the run folder and the newest one's problem). */
int st_checkpoint_load_latest(st_checkpoint *ck, st_model *m, const char *run_dir, char *path_out,
                              size_t size, FILE *log);

/* The model a checkpoint's parameters go into, chosen from its state (a trainer builds the
 * model of the phase the checkpoint was written in); NULL with st_error_set() when none fits. */
typedef st_model *(*st_checkpoint_model_fn)(const st_checkpoint *ck, const char *path, void *user);
/* st_checkpoint_load_latest where the model is built only once the state is read and checked:
 * model_for is called per checkpoint tried, before its parameters are loaded. */
int st_checkpoint_resume_latest(st_checkpoint *ck, st_checkpoint_model_fn model_for, void *user, const char *run_dir,
                                char *path_out, size_t size, FILE *log);

#endif
