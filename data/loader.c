/*
 * loader.c: the threaded batch pipeline; contract in loader.h.
 *
 * Ring protocol (all fields below the mutex): step s of the epoch lives in slot s % n_slots.
 * A worker with nothing to do takes the next batch from the sampler into its slot once that
 * slot is FREE (FILLING), then workers claim the slot's samples one by one; the worker that
 * finishes the last sample compacts away bad samples and marks the slot READY. The consumer
 * waits for the slot of the next step to be READY, hands it out (HANDED) and gets it back as
 * FREE on release. Work is claimed in step order, so no slot waits behind a later one.
 */
#include "data/loader.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/check.h"

typedef enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HANDED } slot_state;

typedef struct slot {
    st_batch batch;
    slot_state state;
    int n_requested;    /* samples the sampler put in this batch */
    int n_claimed;      /* samples taken by workers */
    int n_finished;     /* samples done (ok or bad) */
    int32_t *requested; /* (capacity) dataset indices from the sampler */
    uint8_t *ok;        /* (capacity) 1 when the sample decoded */
} slot;

struct st_loader {
    st_loader_config cfg;
    st_sampler sampler;
    int capacity;               /* samples per batch buffer */
    size_t sample_floats;       /* h * w * 3 */
    int n_slots;
    slot *slots;                /* (n_slots) */
    pthread_t *threads;         /* (cfg.n_threads) */
    pthread_mutex_t mutex;
    pthread_cond_t work_available; /* workers wait on it */
    pthread_cond_t batch_ready;    /* the consumer waits on it */
    int epoch_active;
    int sampler_exhausted;
    int shutting_down;
    int filling;                /* slot whose samples are being claimed, -1 none */
    int next_fill_step;         /* step the sampler hands out next */
    int next_consume_step;      /* step st_loader_next hands out next */
    int fatal;                  /* strict mode: a bad image was found */
    char fatal_message[1024];
    uint8_t *warned;            /* (dataset n) file already reported bad */
    st_loader_stats stats;
};

st_loader_config st_loader_config_default(const st_dataset *ds, const st_transform *t, st_sampler_config sampler) {
    st_loader_config c;
    memset(&c, 0, sizeof c);
    c.dataset = ds;
    c.sampler = sampler;
    c.transform = *t;
    c.decode = st_decode_opts_default();
    c.decode.min_short_side = st_transform_min_decode_side(t);
    c.n_threads = 2;
    c.prefetch = 4;
    return c;
}

/* ---- workers ---------------------------------------------------------------------------- */

/* Called with the mutex held. Reports a file's first failure, counts every one. */
static void note_bad_sample(st_loader *L, int index, const char *message) {
    L->stats.images_bad++;
    if (L->warned[index]) return;
    L->warned[index] = 1;
    L->stats.bad_files++;
    if (L->cfg.strict) {
        if (!L->fatal) snprintf(L->fatal_message, sizeof L->fatal_message, "%s (strict data mode)", message);
        L->fatal = 1;
        pthread_cond_broadcast(&L->batch_ready);
        return;
    }
    fprintf(L->cfg.warnings ? L->cfg.warnings : stderr, "simtune: warning: skipping image: %s\n", message);
}

/* Decode + transform one sample into its place in the slot; outside the mutex. Returns 0 or
 * -1 with the reason in st_error_get() (thread-local). */
static int fill_sample(st_loader *L, slot *s, int position) {
    const int index = s->requested[position];
    const char *path = L->cfg.dataset->paths[index];
    st_rng rng;
    st_rng_derive(&rng, L->cfg.seed, (uint64_t)s->batch.epoch,
                  st_sampler_sample_key(&L->sampler, s->batch.step, position));
    return st_load_image_transformed(path, &L->cfg.decode, &L->cfg.transform, &rng,
                                     s->batch.x + (size_t)position * L->sample_floats);
}

/* The last finisher: squeeze out bad samples (order kept), fill labels and indices. */
static void finish_slot(st_loader *L, slot *s) {
    st_batch *b = &s->batch;
    int n = 0;
    for (int i = 0; i < s->n_requested; i++) {
        if (!s->ok[i]) continue;
        if (n != i)
            memmove(b->x + (size_t)n * L->sample_floats, b->x + (size_t)i * L->sample_floats,
                    L->sample_floats * sizeof(float));
        b->indices[n] = s->requested[i];
        b->labels[n] = L->cfg.dataset->labels[s->requested[i]];
        n++;
    }
    b->n = n;
    b->n_dropped = s->n_requested - n;
}

/* With the mutex held: start filling the next step's slot if it is free. 1 if work appeared. */
static int take_batch_from_sampler(st_loader *L) {
    slot *s = &L->slots[L->next_fill_step % L->n_slots];
    if (s->state != SLOT_FREE) return 0;
    int n = st_sampler_next_batch(&L->sampler, s->requested);
    if (n == 0) {
        L->sampler_exhausted = 1;
        pthread_cond_broadcast(&L->batch_ready);
        return 0;
    }
    s->state = SLOT_FILLING;
    s->n_requested = n;
    s->n_claimed = s->n_finished = 0;
    s->batch.epoch = L->sampler.epoch;
    s->batch.step = L->next_fill_step++;
    L->filling = (int)(s - L->slots);
    pthread_cond_broadcast(&L->work_available); /* idle workers can share its samples */
    return 1;
}

static void *worker_main(void *arg) {
    st_loader *L = arg;
    pthread_mutex_lock(&L->mutex);
    while (!L->shutting_down) {
        if (L->filling < 0) {
            if (!L->epoch_active || L->sampler_exhausted || !take_batch_from_sampler(L)) {
                pthread_cond_wait(&L->work_available, &L->mutex);
                continue;
            }
        }
        slot *s = &L->slots[L->filling];
        const int position = s->n_claimed++;
        if (s->n_claimed == s->n_requested) L->filling = -1;
        pthread_mutex_unlock(&L->mutex);

        const int ok = fill_sample(L, s, position) == 0;
        s->ok[position] = (uint8_t)ok;

        pthread_mutex_lock(&L->mutex);
        if (ok) L->stats.images_ok++;
        else note_bad_sample(L, s->requested[position], st_error_get());
        if (++s->n_finished == s->n_requested) {
            finish_slot(L, s); /* under the mutex; it only moves memory when samples were bad */
            s->state = SLOT_READY;
            pthread_cond_broadcast(&L->batch_ready);
        }
    }
    pthread_mutex_unlock(&L->mutex);
    return NULL;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

/* The images of one batch buffer: cfg->batch_memory's host_alloc, else malloc. */
static float *batch_images_alloc(const st_loader_config *cfg, size_t bytes) {
    st_backend *be = cfg->batch_memory;
    return be ? be->host_alloc(be, bytes) : ST_MALLOC(bytes);
}

static void batch_images_free(const st_loader_config *cfg, float *x) {
    st_backend *be = cfg->batch_memory;
    if (be) be->host_free(be, x);
    else free(x);
}

int st_loader_create(const st_loader_config *cfg, st_loader **out) {
    *out = NULL;
    if (st_transform_validate(&cfg->transform, "data transform")) return -1;
    if (cfg->n_threads < 1 || cfg->n_threads > 256)
        return st_error_set("data loader: %d worker threads is outside 1..256", cfg->n_threads);
    if (cfg->prefetch < 2 || cfg->prefetch > 64)
        return st_error_set("data loader: prefetch %d is outside 2..64", cfg->prefetch);
    if (cfg->decode.max_pixels < 1) return st_error_set("data loader: the pixel limit must be >= 1");
    st_loader *L = ST_CALLOC(1, sizeof *L);
    L->cfg = *cfg;
    L->cfg.sampler.seed = cfg->seed;
    if (st_sampler_init(&L->sampler, &L->cfg.sampler, cfg->dataset)) {
        free(L);
        return -1;
    }
    if (cfg->slices > 1 && st_sampler_set_slice(&L->sampler, cfg->slice, cfg->slices)) {
        st_sampler_free(&L->sampler);
        free(L);
        return -1;
    }
    L->capacity = st_sampler_batch_capacity(&L->sampler);
    L->sample_floats = (size_t)cfg->transform.out_h * cfg->transform.out_w * 3;
    L->n_slots = cfg->prefetch;
    L->slots = ST_CALLOC((size_t)L->n_slots, sizeof *L->slots);
    for (int i = 0; i < L->n_slots; i++) {
        slot *s = &L->slots[i];
        s->batch.h = cfg->transform.out_h;
        s->batch.w = cfg->transform.out_w;
        s->batch.x =
            batch_images_alloc(cfg, (size_t)L->capacity * L->sample_floats * sizeof(float));
        s->batch.labels = ST_MALLOC((size_t)L->capacity * sizeof(int32_t));
        s->batch.indices = ST_MALLOC((size_t)L->capacity * sizeof(int32_t));
        s->requested = ST_MALLOC((size_t)L->capacity * sizeof(int32_t));
        s->ok = ST_MALLOC((size_t)L->capacity);
    }
    L->warned = ST_CALLOC((size_t)cfg->dataset->n, 1);
    L->filling = -1;
    ST_CHECK(pthread_mutex_init(&L->mutex, NULL) == 0, "pthread_mutex_init failed");
    ST_CHECK(pthread_cond_init(&L->work_available, NULL) == 0, "pthread_cond_init failed");
    ST_CHECK(pthread_cond_init(&L->batch_ready, NULL) == 0, "pthread_cond_init failed");
    L->threads = ST_MALLOC((size_t)cfg->n_threads * sizeof(pthread_t));
    for (int i = 0; i < cfg->n_threads; i++)
        ST_CHECK(pthread_create(&L->threads[i], NULL, worker_main, L) == 0, "cannot start data worker %d", i);
    *out = L;
    return 0;
}

void st_loader_destroy(st_loader *L) {
    if (!L) return;
    pthread_mutex_lock(&L->mutex);
    L->shutting_down = 1;
    pthread_cond_broadcast(&L->work_available);
    pthread_mutex_unlock(&L->mutex);
    for (int i = 0; i < L->cfg.n_threads; i++) pthread_join(L->threads[i], NULL);
    pthread_mutex_destroy(&L->mutex);
    pthread_cond_destroy(&L->work_available);
    pthread_cond_destroy(&L->batch_ready);
    for (int i = 0; i < L->n_slots; i++) {
        batch_images_free(&L->cfg, L->slots[i].batch.x);
        free(L->slots[i].batch.labels);
        free(L->slots[i].batch.indices);
        free(L->slots[i].requested);
        free(L->slots[i].ok);
    }
    free(L->slots);
    free(L->threads);
    free(L->warned);
    st_sampler_free(&L->sampler);
    free(L);
}

/* ---- consumer side ---------------------------------------------------------------------- */

void st_loader_begin_epoch(st_loader *L) {
    pthread_mutex_lock(&L->mutex);
    ST_CHECK(!L->epoch_active, "data loader: begin_epoch before the previous epoch was drained");
    for (int i = 0; i < L->n_slots; i++)
        ST_CHECK(L->slots[i].state == SLOT_FREE, "data loader: begin_epoch with a batch not released");
    st_sampler_begin_epoch(&L->sampler);
    L->next_fill_step = L->next_consume_step = L->sampler.batches_done;
    L->sampler_exhausted = 0;
    L->epoch_active = 1;
    pthread_cond_broadcast(&L->work_available);
    pthread_mutex_unlock(&L->mutex);
}

int st_loader_next(st_loader *L, st_batch **batch) {
    *batch = NULL;
    pthread_mutex_lock(&L->mutex);
    ST_CHECK(L->epoch_active, "data loader: next outside an epoch (call st_loader_begin_epoch)");
    for (;;) {
        if (L->fatal) {
            pthread_mutex_unlock(&L->mutex);
            return st_error_set("%s", L->fatal_message);
        }
        slot *s = &L->slots[L->next_consume_step % L->n_slots];
        ST_CHECK(s->state != SLOT_HANDED, "data loader: the consumer holds all %d batch buffers; release one "
                 "before asking for the next (or raise prefetch)", L->n_slots);
        if (s->state == SLOT_READY && s->batch.step == L->next_consume_step) {
            L->next_consume_step++;
            if (s->batch.n == 0) { /* every image of it was bad */
                s->state = SLOT_FREE;
                pthread_cond_broadcast(&L->work_available);
                continue;
            }
            s->state = SLOT_HANDED;
            *batch = &s->batch;
            pthread_mutex_unlock(&L->mutex);
            return 1;
        }
        if (L->sampler_exhausted && L->next_consume_step == L->next_fill_step) {
            L->epoch_active = 0;
            pthread_mutex_unlock(&L->mutex);
            return 0;
        }
        pthread_cond_wait(&L->batch_ready, &L->mutex);
    }
}

void st_loader_release(st_loader *L, st_batch *batch) {
    slot *s = (slot *)((char *)batch - offsetof(slot, batch));
    ST_CHECK(s >= L->slots && s < L->slots + L->n_slots, "data loader: release of a batch it does not own");
    pthread_mutex_lock(&L->mutex);
    ST_CHECK(s->state == SLOT_HANDED, "data loader: batch released twice");
    s->state = SLOT_FREE;
    pthread_cond_broadcast(&L->work_available);
    pthread_mutex_unlock(&L->mutex);
}

int st_loader_batches_per_epoch(const st_loader *L) { return st_sampler_batches_per_epoch(&L->sampler); }

st_loader_stats st_loader_get_stats(st_loader *L) {
    pthread_mutex_lock(&L->mutex);
    st_loader_stats s = L->stats;
    pthread_mutex_unlock(&L->mutex);
    return s;
}

void st_loader_print_summary(st_loader *L, FILE *out) {
    st_loader_stats s = st_loader_get_stats(L);
    fprintf(out, "data: %lld images loaded, %lld dropped from %d bad file%s\n", (long long)s.images_ok,
            (long long)s.images_bad, s.bad_files, s.bad_files == 1 ? "" : "s");
}

void st_loader_save_state(st_loader *L, uint64_t words[ST_LOADER_STATE_WORDS]) {
    pthread_mutex_lock(&L->mutex);
    st_sampler_save_at(&L->sampler, L->next_consume_step, words);
    pthread_mutex_unlock(&L->mutex);
}

int st_loader_restore_state(st_loader *L, const uint64_t words[ST_LOADER_STATE_WORDS]) {
    pthread_mutex_lock(&L->mutex);
    ST_CHECK(!L->epoch_active && L->sampler.epoch < 0, "data loader: restore only before the first epoch");
    int rc = st_sampler_restore(&L->sampler, words);
    pthread_mutex_unlock(&L->mutex);
    return rc;
}

int st_load_image_transformed(const char *path, const st_decode_opts *opts, const st_transform *t, st_rng *rng,
                              float *out) {
    st_image img;
    if (st_image_decode_file(path, opts, &img)) return -1;
    st_transform_apply(t, &img, rng, out);
    st_image_free(&img);
    return 0;
}
