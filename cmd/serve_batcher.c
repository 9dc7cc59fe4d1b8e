/*
 * serve_batcher.c: `simtune serve`'s queue, batcher thread and index snapshots (serve.h).
 *
 * The batcher takes the queued queries in arrival order, up to the embedder's batch size B. When
 * fewer than B are waiting it waits at most wait_ms after the oldest one arrived for more to come
 * (dynamic batching: one query alone pays at most wait_ms; under load every pass is full). The
 * batch runs through one forward pass (st_embedder_run_prepared) and one top-k per metric present
 * with the largest k asked for that metric: a shorter list is a prefix of a longer one, because
 * the ranking is total (ties broken by the lower row, infer/topk.h). The gallery of a snapshot is
 * opened on the backend (normalised there, resident when it fits) at the first batch with a
 * metric and reused by the next batches; when a batch finds a new snapshot installed (SIGHUP,
 * POST /index) the batcher closes the old galleries and drops its reference to the old snapshot.
 * Only the batcher opens and closes them, because the backend belongs to its thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/base/clock.h"
#include "infer/query.h"
#include "kernels/check.h"
#include "serve.h"

int serve_index_adopt(server *s, st_embeddings *e, const char *path, serve_index **out) {
    if (st_query_check_dim(s->em, e, path, s->weights) != 0) {
        st_embeddings_free(e);
        return -1;
    }
    serve_index *ix = ST_CALLOC(1, sizeof *ix);
    ix->e = *e;
    st_query_weights_warning(&ix->e, path, s->weights, st_embedder_weights_id(s->em), ix->warning,
                             sizeof ix->warning);
    ix->refs = 1;
    *out = ix;
    return 0;
}

int serve_index_load(server *s, const char *path, serve_index **out) {
    st_embeddings e;
    if (st_embeddings_read(path, &e) != 0) return -1;
    return serve_index_adopt(s, &e, path, out);
}

serve_index *serve_index_acquire(server *s) {
    pthread_mutex_lock(&s->mu);
    serve_index *ix = s->index;
    ix->refs++;
    pthread_mutex_unlock(&s->mu);
    return ix;
}

static void index_unref_locked(serve_index *ix) {
    if (--ix->refs > 0) return;
    st_embeddings_free(&ix->e);
    free(ix);
}

void serve_index_release(server *s, serve_index *ix) {
    if (!ix) return;
    pthread_mutex_lock(&s->mu);
    index_unref_locked(ix);
    pthread_mutex_unlock(&s->mu);
}

void serve_index_install(server *s, serve_index *ix) {
    pthread_mutex_lock(&s->mu);
    serve_index *old = s->index;
    s->index = ix;
    if (old) index_unref_locked(old);
    pthread_mutex_unlock(&s->mu);
}

int serve_reload(server *s) {
    pthread_mutex_lock(&s->write_mu); /* not in the middle of a POST /index */
    serve_index *ix;
    int rc = serve_index_load(s, s->o.index_path, &ix);
    if (rc == 0) {
        serve_index_install(s, ix);
        fprintf(stderr, "serve: reloaded %s: %ld images\n", s->o.index_path, ix->e.n);
    }
    pthread_mutex_unlock(&s->write_mu);
    return rc;
}

/* ---- queue ---------------------------------------------------------------------------- */

int serve_submit(server *s, serve_query *q) {
    pthread_mutex_lock(&s->mu);
    if (s->queued >= s->o.queue || s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    q->queued_at = st_now_seconds();
    q->next = NULL;
    if (s->tail) s->tail->next = q;
    else s->head = q;
    s->tail = q;
    s->queued++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Now + seconds (<= 0: now) as a pthread_cond_timedwait deadline. */
static struct timespec deadline_after(double seconds) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    long long ns = (long long)t.tv_nsec + (seconds > 0 ? (long long)(seconds * 1e9) : 0);
    t.tv_sec += (time_t)(ns / 1000000000);
    t.tv_nsec = (long)(ns % 1000000000);
    return t;
}

/* Remove q from the queue if it is still there (under mu): 1 when it was. */
static int unqueue_locked(server *s, serve_query *q) {
    serve_query *prev = NULL;
    for (serve_query *p = s->head; p; prev = p, p = p->next) {
        if (p != q) continue;
        if (prev) prev->next = p->next;
        else s->head = p->next;
        if (s->tail == p) s->tail = prev;
        s->queued--;
        return 1;
    }
    return 0;
}

int serve_wait(server *s, serve_query *q) {
    struct timespec until = deadline_after(s->o.request_timeout_s);
    int rc = 0, late = 0;
    pthread_mutex_lock(&s->mu);
    while (!q->done) {
        if (late) {
            pthread_cond_wait(&s->answered, &s->mu); /* taken by the batcher: it finishes in bounded time */
        } else if (pthread_cond_timedwait(&s->answered, &s->mu, &until) == ETIMEDOUT) {
            late = 1;
            if (unqueue_locked(s, q)) {
                rc = -1; /* never started */
                break;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void serve_query_free(server *s, serve_query *q) {
    serve_index_release(s, q->index);
    st_topk_result_free(&q->r);
    free(q->input);
    free(q->vector);
    memset(q, 0, sizeof *q);
}

/* ---- the batcher ---------------------------------------------------------------------- */

/* Wait for work, then up to wait_ms for a full batch; take it (under mu). n = 0: stop. */
static int take_batch_locked(server *s, serve_query **batch, int max) {
    while (!s->head && !s->stopping) pthread_cond_wait(&s->work, &s->mu);
    if (!s->head) return 0;
    struct timespec until = deadline_after(s->o.wait_ms / 1000.0 - (st_now_seconds() - s->head->queued_at));
    while (s->queued < max && !s->stopping && s->head)
        if (pthread_cond_timedwait(&s->work, &s->mu, &until) != 0) break; /* ETIMEDOUT */
    int n = 0;
    while (s->head && n < max) {
        batch[n++] = s->head;
        s->head = s->head->next;
        s->queued--;
    }
    if (!s->head) s->tail = NULL;
    return n;
}

/* The batcher's galleries follow the snapshot ix: those of an older one are closed first. */
static void galleries_follow(server *s, serve_index *ix) {
    if (s->searched == ix) return;
    st_query_galleries_close(&s->galleries);
    serve_index_release(s, s->searched);
    pthread_mutex_lock(&s->mu);
    ix->refs++;
    pthread_mutex_unlock(&s->mu);
    s->searched = ix;
    st_query_galleries_init(&s->galleries, st_embedder_backend(s->em), &ix->e);
}

/* One top-k per metric present in the batch, k = the largest asked; each query gets its prefix. */
static void search_batch(server *s, serve_query **batch, int n, const float *vectors) {
    int d = st_embedder_dim(s->em);
    float *block = ST_MALLOC((size_t)n * d * sizeof(float));
    for (int metric = ST_METRIC_COSINE; metric <= ST_METRIC_L2; metric++) {
        int m = 0, k = 0, *member = ST_MALLOC((size_t)n * sizeof(int));
        for (int i = 0; i < n; i++) {
            if ((int)batch[i]->to.metric != metric) continue;
            memcpy(block + (size_t)m * d, vectors + (size_t)i * d, (size_t)d * sizeof(float));
            if (batch[i]->to.k > k) k = batch[i]->to.k;
            member[m++] = i;
        }
        st_topk_result r = {0};
        st_topk_options to = {(st_metric)metric, k, 0, 0, NULL};
        if (m > 0) ST_CHECK(st_query_galleries_search(&s->galleries, &to, block, m, &r) == 0, "%s",
                            st_error_get()); /* a gallery in memory has no read to fail */
        for (int j = 0; j < m; j++) {
            serve_query *q = batch[member[j]];
            q->r.q = 1;
            q->r.k = q->to.k;
            q->r.index = ST_MALLOC((size_t)q->to.k * sizeof(int64_t));
            q->r.score = ST_MALLOC((size_t)q->to.k * sizeof(float));
            q->r.key = ST_MALLOC((size_t)q->to.k * sizeof(float));
            memcpy(q->r.index, r.index + (size_t)j * k, (size_t)q->to.k * sizeof(int64_t));
            memcpy(q->r.score, r.score + (size_t)j * k, (size_t)q->to.k * sizeof(float));
            memcpy(q->r.key, r.key + (size_t)j * k, (size_t)q->to.k * sizeof(float));
        }
        if (m > 0) st_topk_result_free(&r);
        free(member);
    }
    free(block);
}

/* Forward pass and search of one batch; its queries are answered under mu. */
static void run_batch(server *s, serve_query **batch, int n, float *inputs, float *vectors) {
    size_t floats = st_embedder_input_floats(s->em);
    int d = st_embedder_dim(s->em);
    double t0 = st_now_seconds();
    for (int i = 0; i < n; i++) memcpy(inputs + (size_t)i * floats, batch[i]->input, floats * sizeof(float));
    st_embedder_run_prepared(s->em, inputs, n, vectors);
    double t1 = st_now_seconds();
    serve_index *ix = serve_index_acquire(s);
    galleries_follow(s, ix);
    search_batch(s, batch, n, vectors);
    double t2 = st_now_seconds();
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < n; i++) {
        serve_query *q = batch[i];
        q->vector = ST_MALLOC((size_t)d * sizeof(float));
        memcpy(q->vector, vectors + (size_t)i * d, (size_t)d * sizeof(float));
        q->index = ix;
        ix->refs++;
        q->batch_size = n;
        q->queue_s = t0 - q->queued_at;
        q->embed_s = t1 - t0;
        q->search_s = t2 - t1;
        q->done = 1;
    }
    index_unref_locked(ix);
    serve_metrics_batch(&s->metrics, n);
    pthread_cond_broadcast(&s->answered);
    pthread_mutex_unlock(&s->mu);
}

static void *batcher_main(void *arg) {
    server *s = arg;
    int max = st_embedder_batch(s->em);
    serve_query **batch = ST_MALLOC((size_t)max * sizeof *batch);
    float *inputs = ST_MALLOC((size_t)max * st_embedder_input_floats(s->em) * sizeof(float));
    float *vectors = ST_MALLOC((size_t)max * st_embedder_dim(s->em) * sizeof(float));
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int n = take_batch_locked(s, batch, max);
        pthread_mutex_unlock(&s->mu);
        if (n == 0) break;
        run_batch(s, batch, n, inputs, vectors);
    }
    st_query_galleries_close(&s->galleries);
    serve_index_release(s, s->searched);
    s->searched = NULL;
    free(batch);
    free(inputs);
    free(vectors);
    return NULL;
}

void serve_batcher_start(server *s) {
    ST_CHECK(pthread_create(&s->batcher, NULL, batcher_main, s) == 0, "cannot start the batcher thread");
}

void serve_batcher_stop(server *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->batcher, NULL);
}
