/*
 * sampler.h: which dataset indices form each batch of each epoch.
 *
 * Modes:
 *   SEQUENTIAL  0, 1, ..., n-1 in batches of batch_size (embedding/evaluation; no randomness)
 *   SHUFFLE     a fresh permutation every epoch
 *   PK          batches of P distinct classes x K images each (batch-hard triplet training);
 *               a class with >= K images gives K different ones, a class with fewer gives all
 *               of its images plus draws with replacement up to K; n / (P*K) batches per epoch
 *               (at least one)
 *   BALANCED    n samples per epoch, each one a uniformly chosen class then a uniformly chosen
 *               image of it (class-balanced sampling)
 * The last partial batch is kept unless drop_last (PK batches are always full).
 *
 * Slices (data-parallel training, one process of `slices`, st_sampler_set_slice): the batches
 * are drawn exactly as without slicing (the GLOBAL batch, from the shared seed), and next_batch
 * hands out only the slice-th of `slices` equal contiguous parts of each, so the samples every
 * rank sees together do not depend on the number of ranks; the saved state is the global
 * position, valid for any number of slices. A slice needs full batches of a size `slices`
 * divides (PK, or drop_last); anything else is refused with the numbers.
 *
 * Randomness: one xoshiro256** stream seeded with cfg.seed, consumed epoch after epoch. An
 * epoch's whole order is drawn when it begins, so the state to checkpoint is small:
 * st_sampler_save writes ST_SAMPLER_STATE_WORDS uint64 words (format version, epoch, batches
 * already handed out in it, the four RNG words at the epoch's start); st_sampler_restore
 * regenerates that epoch and continues with its next batch (or, saved after its last batch,
 * with the first batch of the following epoch), giving exactly the batches the uninterrupted
 * run would have given.
 *
 * Lifecycle: init -> begin_epoch -> next_batch ... (0 = epoch over) -> begin_epoch ... -> free.
 * The sampler copies what it needs from the dataset. Not thread-safe (the loader serialises it).
 */
#ifndef ST_SAMPLER_H
#define ST_SAMPLER_H

#include <stdint.h>

#include "data/dataset.h"
#include "data/base/rng.h"

typedef enum { ST_SAMPLE_SEQUENTIAL, ST_SAMPLE_SHUFFLE, ST_SAMPLE_PK, ST_SAMPLE_BALANCED } st_sample_mode;

typedef struct st_sampler_config {
    st_sample_mode mode;
    int batch_size; /* SEQUENTIAL, SHUFFLE, BALANCED */
    int p, k;       /* PK: classes per batch, images per class */
    int drop_last;  /* drop a final partial batch */
    uint64_t seed;
} st_sampler_config;

enum { ST_SAMPLER_STATE_WORDS = 3 + ST_RNG_STATE_WORDS };

typedef struct st_sampler {
    st_sampler_config cfg;
    int n;                /* dataset size */
    int n_classes;
    int *class_offsets;   /* (n_classes + 1) */
    int *class_members;   /* (n) dataset indices grouped by class, ascending within a class */
    int *nonempty;        /* (n_nonempty) classes with >= 1 image */
    int n_nonempty;
    int epoch;            /* current epoch, -1 before the first begin_epoch */
    st_rng rng;           /* running stream */
    st_rng epoch_start;   /* stream at the start of the current epoch */
    int *order;           /* (order_len) the epoch's indices, batch after batch */
    int order_len;
    int batches_done;     /* batches handed out in the current epoch */
    int resume_pending;   /* restored: the next begin_epoch continues the restored epoch */
    int *scratch;         /* (n + n_classes) workspace for PK draws */
    int slice, slices;    /* this process's part of each batch; slices 1: the whole batch */
} st_sampler;

/* -1 with st_error_set for an unusable config (batch < 1, PK with P > classes, empty dataset). */
int st_sampler_init(st_sampler *s, const st_sampler_config *cfg, const st_dataset *ds);
void st_sampler_free(st_sampler *s);
/* Hand out only part `slice` of `slices` of every batch (before the first begin_epoch); -1 with
 * st_error_set when the batches cannot be split so (sizes above). */
int st_sampler_set_slice(st_sampler *s, int slice, int slices);

void st_sampler_begin_epoch(st_sampler *s);
/* Writes the next batch's dataset indices (of the slice) into index (capacity
 * st_sampler_batch_capacity); returns how many, 0 when the epoch is over. */
int st_sampler_next_batch(st_sampler *s, int *index);
/* Samples next_batch hands out at most: the slice's share of a batch. */
int st_sampler_batch_capacity(const st_sampler *s);
int st_sampler_batches_per_epoch(const st_sampler *s);
/* Position of sample `position` of the slice in batch `step` among all samples of all slices
 * (step * global batch + slice offset + position): the key of its augmentation randomness, so
 * an image is augmented alike whatever the number of slices. */
uint64_t st_sampler_sample_key(const st_sampler *s, long step, int position);

/* State of the batch stream after the batches handed out so far. */
void st_sampler_save(const st_sampler *s, uint64_t words[ST_SAMPLER_STATE_WORDS]);
/* Continue from saved words: epoch `words[1]`, next batch `words[2]` (the next begin_epoch
 * resumes that epoch, or starts the one after it when words[2] is its batch count). -1 if the
 * words are not a state of this format or the batch is past the epoch's end. */
int st_sampler_restore(st_sampler *s, const uint64_t words[ST_SAMPLER_STATE_WORDS]);
/* The state as it was after `batches_done` batches of the current epoch (the loader saves the
 * consumer's position, which lags the prefetching sampler). */
void st_sampler_save_at(const st_sampler *s, int batches_done, uint64_t words[ST_SAMPLER_STATE_WORDS]);

#endif
