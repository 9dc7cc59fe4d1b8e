/*
 * sampler.c: epoch orders for the four sampling modes and their checkpointable state;
 * contract in sampler.h. Every epoch's order is materialised at begin_epoch from the running
 * RNG, so next_batch is a slice and a restore is "regenerate from the saved RNG words, skip".
 */
#include "data/sampler.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/check.h"

static const uint64_t SAMPLER_STATE_VERSION = 0x53414d5001ull; /* "SAMP" v1 */

static void swap_ints(int *a, int *b) {
    int t = *a;
    *a = *b;
    *b = t;
}

/* Samples of one whole (global) batch. */
static int global_capacity(const st_sampler *s) {
    return s->cfg.mode == ST_SAMPLE_PK ? s->cfg.p * s->cfg.k : s->cfg.batch_size;
}

static int n_slices(const st_sampler *s) { return s->slices > 1 ? s->slices : 1; }

/* Slicing needs every batch full and of a size the slices divide. */
int st_sampler_set_slice(st_sampler *s, int slice, int slices) {
    int global = global_capacity(s);
    if (slices < 1 || slice < 0 || slice >= slices)
        return st_error_set("sampler: slice %d of %d does not exist", slice, slices);
    if (global % slices != 0)
        return st_error_set("sampler: a batch of %d images cannot be split evenly across %d processes "
                            "(%d %% %d = %d; HINT: a batch size that is a multiple of the process count)",
                            global, slices, global, slices, global % slices);
    if (s->cfg.mode != ST_SAMPLE_PK && !s->cfg.drop_last && s->n % global != 0)
        return st_error_set("sampler: a batch split across processes must be full (drop_last)");
    s->slice = slice;
    s->slices = slices;
    return 0;
}

int st_sampler_init(st_sampler *s, const st_sampler_config *cfg, const st_dataset *ds) {
    memset(s, 0, sizeof *s);
    if (ds->n < 1) return st_error_set("sampler: the dataset is empty");
    if (cfg->mode == ST_SAMPLE_PK) {
        if (cfg->p < 1 || cfg->k < 1) return st_error_set("sampler: PK needs P >= 1 and K >= 1 (got %d, %d)", cfg->p, cfg->k);
    } else if (cfg->batch_size < 1) {
        return st_error_set("sampler: batch size %d must be >= 1", cfg->batch_size);
    }
    s->cfg = *cfg;
    s->n = ds->n;
    s->n_classes = ds->n_classes;
    s->class_offsets = ST_CALLOC((size_t)ds->n_classes + 1, sizeof(int));
    s->class_members = ST_MALLOC((size_t)ds->n * sizeof(int));
    for (int i = 0; i < ds->n; i++) s->class_offsets[ds->labels[i] + 1]++;
    for (int c = 0; c < ds->n_classes; c++) s->class_offsets[c + 1] += s->class_offsets[c];
    int *fill = ST_MALLOC((size_t)(ds->n_classes ? ds->n_classes : 1) * sizeof(int));
    memcpy(fill, s->class_offsets, (size_t)ds->n_classes * sizeof(int));
    for (int i = 0; i < ds->n; i++) s->class_members[fill[ds->labels[i]]++] = i;
    free(fill);
    s->nonempty = ST_MALLOC((size_t)(ds->n_classes ? ds->n_classes : 1) * sizeof(int));
    for (int c = 0; c < ds->n_classes; c++)
        if (s->class_offsets[c + 1] > s->class_offsets[c]) s->nonempty[s->n_nonempty++] = c;
    if (cfg->mode == ST_SAMPLE_PK && cfg->p > s->n_nonempty) {
        st_sampler_free(s);
        return st_error_set("sampler: PK wants P = %d classes per batch but the dataset has %d "
                            "(HINT: lower P)", cfg->p, s->n_nonempty);
    }
    s->scratch = ST_MALLOC(((size_t)ds->n + ds->n_classes) * sizeof(int)); /* PK: classes + one pool */
    s->order_len = st_sampler_batches_per_epoch(s) * global_capacity(s);
    if (cfg->mode != ST_SAMPLE_PK && s->order_len < s->n) s->order_len = s->n;
    s->order = ST_MALLOC((size_t)s->order_len * sizeof(int));
    s->epoch = -1;
    st_rng_seed(&s->rng, cfg->seed);
    return 0;
}

void st_sampler_free(st_sampler *s) {
    free(s->class_offsets);
    free(s->class_members);
    free(s->nonempty);
    free(s->order);
    free(s->scratch);
    memset(s, 0, sizeof *s);
}

int st_sampler_batch_capacity(const st_sampler *s) { return global_capacity(s) / n_slices(s); }

uint64_t st_sampler_sample_key(const st_sampler *s, long step, int position) {
    int share = st_sampler_batch_capacity(s);
    return (uint64_t)step * (uint64_t)global_capacity(s) + (uint64_t)s->slice * share +
           (uint64_t)position;
}

int st_sampler_batches_per_epoch(const st_sampler *s) {
    int cap = global_capacity(s);
    if (s->cfg.mode == ST_SAMPLE_PK) return s->n / cap > 0 ? s->n / cap : 1;
    return s->cfg.drop_last ? s->n / cap : (s->n + cap - 1) / cap;
}

/* One PK batch into out (P*K): P distinct classes, K images each. */
static void draw_pk_batch(st_sampler *s, int *out) {
    int *classes = s->scratch; /* (n_nonempty) partial Fisher-Yates picks the first P */
    memcpy(classes, s->nonempty, (size_t)s->n_nonempty * sizeof(int));
    const int k = s->cfg.k;
    for (int p = 0; p < s->cfg.p; p++) {
        swap_ints(&classes[p], &classes[p + (int)st_rng_below(&s->rng, (uint64_t)(s->n_nonempty - p))]);
        const int c = classes[p];
        const int *members = s->class_members + s->class_offsets[c];
        const int count = s->class_offsets[c + 1] - s->class_offsets[c];
        int *dst = out + (size_t)p * k;
        if (count >= k) { /* K distinct: a partial shuffle of a copy of the members */
            int *pool = s->scratch + s->n_nonempty;
            const int pool_len = count;
            memcpy(pool, members, (size_t)count * sizeof(int));
            for (int j = 0; j < k; j++) {
                swap_ints(&pool[j], &pool[j + (int)st_rng_below(&s->rng, (uint64_t)(pool_len - j))]);
                dst[j] = pool[j];
            }
        } else { /* every image once, in random order, then draws with replacement */
            for (int j = 0; j < count; j++) dst[j] = members[j];
            for (int j = count - 1; j > 0; j--) swap_ints(&dst[j], &dst[(int)st_rng_below(&s->rng, (uint64_t)j + 1)]);
            for (int j = count; j < k; j++) dst[j] = members[st_rng_below(&s->rng, (uint64_t)count)];
        }
    }
}

static void generate_order(st_sampler *s) {
    switch (s->cfg.mode) {
    case ST_SAMPLE_SEQUENTIAL:
        for (int i = 0; i < s->n; i++) s->order[i] = i;
        break;
    case ST_SAMPLE_SHUFFLE:
        for (int i = 0; i < s->n; i++) s->order[i] = i;
        for (int i = s->n - 1; i > 0; i--) swap_ints(&s->order[i], &s->order[st_rng_below(&s->rng, (uint64_t)i + 1)]);
        break;
    case ST_SAMPLE_BALANCED:
        for (int i = 0; i < s->n; i++) {
            int c = s->nonempty[st_rng_below(&s->rng, (uint64_t)s->n_nonempty)];
            int count = s->class_offsets[c + 1] - s->class_offsets[c];
            s->order[i] = s->class_members[s->class_offsets[c] + (int)st_rng_below(&s->rng, (uint64_t)count)];
        }
        break;
    case ST_SAMPLE_PK: {
        const int cap = global_capacity(s);
        for (int b = 0; b < st_sampler_batches_per_epoch(s); b++) draw_pk_batch(s, s->order + (size_t)b * cap);
        break;
    }
    }
}

void st_sampler_begin_epoch(st_sampler *s) {
    if (s->resume_pending) {
        s->resume_pending = 0;
        return;
    }
    s->epoch++;
    s->epoch_start = s->rng;
    s->batches_done = 0;
    generate_order(s);
}

int st_sampler_next_batch(st_sampler *s, int *index) {
    ST_CHECK(s->epoch >= 0 && !s->resume_pending, "sampler: next_batch before begin_epoch");
    if (s->batches_done >= st_sampler_batches_per_epoch(s)) return 0;
    const int cap = global_capacity(s);
    const int start = s->batches_done * cap;
    int len = s->cfg.mode == ST_SAMPLE_PK ? cap : (s->n - start < cap ? s->n - start : cap);
    const int share = len / n_slices(s); /* full batches when sliced (slice_check) */
    const int first = start + s->slice * share;
    len = share;
    memcpy(index, s->order + first, (size_t)len * sizeof(int));
    s->batches_done++;
    return len;
}

void st_sampler_save_at(const st_sampler *s, int batches_done, uint64_t words[ST_SAMPLER_STATE_WORDS]) {
    words[0] = SAMPLER_STATE_VERSION;
    words[1] = (uint64_t)(int64_t)s->epoch;
    words[2] = (uint64_t)batches_done;
    for (int i = 0; i < ST_RNG_STATE_WORDS; i++) words[3 + i] = s->epoch_start.s[i];
}

void st_sampler_save(const st_sampler *s, uint64_t words[ST_SAMPLER_STATE_WORDS]) {
    st_sampler_save_at(s, s->batches_done, words);
}

int st_sampler_restore(st_sampler *s, const uint64_t words[ST_SAMPLER_STATE_WORDS]) {
    if (words[0] != SAMPLER_STATE_VERSION) return st_error_set("sampler state: unknown format %#llx", (unsigned long long)words[0]);
    int64_t epoch = (int64_t)words[1];
    if (epoch < 0 || epoch > 1000000000 || words[2] > (uint64_t)st_sampler_batches_per_epoch(s))
        return st_error_set("sampler state: epoch %lld batch %llu is out of range", (long long)epoch,
                            (unsigned long long)words[2]);
    if (!(words[3] | words[4] | words[5] | words[6])) return st_error_set("sampler state: all-zero RNG state");
    for (int i = 0; i < ST_RNG_STATE_WORDS; i++) s->epoch_start.s[i] = words[3 + i];
    s->rng = s->epoch_start;
    s->epoch = (int)epoch;
    generate_order(s);
    s->batches_done = (int)words[2];
    /* saved after the epoch's last batch: the next begin_epoch starts the following epoch */
    s->resume_pending = s->batches_done < st_sampler_batches_per_epoch(s);
    return 0;
}
