/*
 * loader.h: batches of decoded, augmented, preprocessed images, prepared by worker threads
 * ahead of the trainer.
 *
 *   st_loader_config cfg = st_loader_config_default(&dataset, &transform, sampler_cfg);
 *   cfg.n_threads = 4;                      // any count gives the same batches
 *   st_loader *L;
 *   if (st_loader_create(&cfg, &L)) { report st_error_get(); }
 *   for (epoch ...) {
 *       st_loader_begin_epoch(L);
 *       st_batch *b;
 *       int rc;
 *       while ((rc = st_loader_next(L, &b)) == 1) {
 *           upload b->x (b->n, b->h, b->w, 3) and b->labels through the backend ...
 *           st_loader_release(L, b);        // the buffer goes back to the ring
 *       }
 *       if (rc < 0) { strict mode: report st_error_get(); }
 *   }
 *   st_loader_print_summary(L, stderr);
 *   st_loader_destroy(L);
 *
 * A batch: float NHWC (n, h, w, 3) already preprocessed (transform.h), int32 labels (n) and
 * int32 dataset indices (n), plus its epoch and step (batch number within the epoch). The
 * memory belongs to the loader; it is valid from st_loader_next until st_loader_release. The
 * consumer may hold up to prefetch - 1 batches at once (holding all of them and asking for
 * another is a programming error that fails loudly rather than deadlocking).
 *
 * Pipeline: a ring of cfg.prefetch host batch buffers, allocated once (the images through
 * cfg.batch_memory when set, so a GPU trainer uploads them from page-locked memory). Worker
 * threads (pthreads) take batches from the sampler in order and decode + transform their
 * samples one at a time (the samples of one batch are spread over all workers).
 * st_loader_next hands out batches strictly in step order.
 *
 * Determinism: a sample's augmentation RNG is st_rng_derive(seed, epoch, step * batch size +
 * position) (st_sampler_sample_key: the position in the whole batch, also when the loader hands
 * out one slice of it), a pure function of where it sits in the epoch, so the batches are
 * bit-identical for a given seed whatever the thread count, timing or number of slices.
 *
 * Bad images (corrupt, truncated, empty, not an image, unsupported, above the pixel limit):
 * the first failure of each file prints ONE warning line naming the file and the problem and is
 * counted; the sample is dropped from its batch (b->n shrinks, b->n_dropped says how many; a
 * batch left empty is skipped). With cfg.strict the first bad image makes st_loader_next
 * return -1 instead. Which samples drop depends only on the files, so batches stay
 * deterministic.
 *
 * Checkpoints: st_loader_save_state gives ST_LOADER_STATE_WORDS uint64 words describing the
 * position after the batches handed out so far; a fresh loader with the same config that calls
 * st_loader_restore_state before its first begin_epoch continues with exactly the next batch:
 * its first begin_epoch resumes the interrupted epoch, or, when the state was saved after an
 * epoch's last batch, starts the next epoch.
 *
 * Thread-safety: one consumer thread calls every function; the workers are internal.
 */
#ifndef ST_LOADER_H
#define ST_LOADER_H

#include <stdint.h>
#include <stdio.h>

#include "data/dataset.h"
#include "data/image.h"
#include "data/sampler.h"
#include "data/transform.h"

struct st_backend; /* kernels/backend.h: only its host_alloc / host_free, for batch_memory */

typedef struct st_loader_config {
    const st_dataset *dataset; /* borrowed; must outlive the loader */
    st_sampler_config sampler; /* its seed is replaced by `seed` below */
    st_transform transform;
    struct st_backend *batch_memory; /* NULL: batch images in malloc memory; else in this
                                      * backend's host_alloc memory (page-locked on CUDA), which
                                      * its upload_async copies without a host wait */
    st_decode_opts decode;     /* min_short_side: JPEG DCT-scaling target (0 = full decode) */
    int n_threads;             /* worker threads, >= 1 */
    int prefetch;              /* batch buffers in the ring, >= 2 */
    uint64_t seed;             /* sampler order and augmentation */
    int strict;                /* a bad image is an error rather than a warning */
    FILE *warnings;            /* where warning lines go; NULL = stderr */
    int slice, slices;         /* data parallel: this process's part of every batch
                                * (st_sampler_set_slice); slices 0 or 1: whole batches */
} st_loader_config;

typedef struct st_batch {
    int n;             /* samples in the batch */
    int n_dropped;     /* bad images removed from it */
    int h, w;          /* sample size; 3 channels */
    float *x;          /* (n, h, w, 3) NHWC, preprocessed; loader-owned host memory */
    int32_t *labels;   /* (n) class labels */
    int32_t *indices;  /* (n) dataset indices */
    int epoch, step;
} st_batch;

typedef struct st_loader_stats {
    int64_t images_ok;   /* samples decoded and transformed */
    int64_t images_bad;  /* samples dropped (a bad file counts once per time it is sampled) */
    int bad_files;       /* distinct bad files */
} st_loader_stats;

enum { ST_LOADER_STATE_WORDS = ST_SAMPLER_STATE_WORDS };

typedef struct st_loader st_loader;

/* Defaults: 2 threads, prefetch 4, seed 0, not strict, decode defaults with the JPEG
 * DCT-scaling target taken from the transform (st_transform_min_decode_side). */
st_loader_config st_loader_config_default(const st_dataset *ds, const st_transform *t, st_sampler_config sampler);

/* -1 with st_error_set for a bad config (transform, sampler, thread or buffer counts). */
int st_loader_create(const st_loader_config *cfg, st_loader **out);
void st_loader_destroy(st_loader *L);

/* Starts the next epoch (0 first), or continues a restored one. Every batch of the previous
 * epoch must have been taken (next returned 0) and released. */
void st_loader_begin_epoch(st_loader *L);
/* 1 and *batch set; 0 when the epoch is over; -1 in strict mode after a bad image. */
int st_loader_next(st_loader *L, st_batch **batch);
void st_loader_release(st_loader *L, st_batch *batch);

int st_loader_batches_per_epoch(const st_loader *L);
st_loader_stats st_loader_get_stats(st_loader *L);
/* "data: N images, M dropped from K bad files" (one line). */
void st_loader_print_summary(st_loader *L, FILE *out);

void st_loader_save_state(st_loader *L, uint64_t words[ST_LOADER_STATE_WORDS]);
int st_loader_restore_state(st_loader *L, const uint64_t words[ST_LOADER_STATE_WORDS]);

/* One file through decode + transform on the calling thread (e.g. a query image):
 * out (t->out_h, t->out_w, 3). rng may be NULL for an evaluation transform. -1 with
 * st_error_set if the image is bad. */
int st_load_image_transformed(const char *path, const st_decode_opts *opts, const st_transform *t, st_rng *rng,
                              float *out);

#endif
