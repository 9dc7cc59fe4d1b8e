/*
 * serve.h: the parts of `simtune serve` (cmd/serve.c: options, startup, signals; serve_batcher.c:
 * the query queue, the batcher thread, the served index; serve_http.c: requests and routes on
 * libmicrohttpd; serve_page.c: the HTML pages and the JSON answers; serve_metrics.c: counters in
 * the Prometheus text format). Private to those files.
 *
 * Threads: libmicrohttpd runs one thread per connection; each reads its upload and decodes and
 * transforms the image into a prepared input (infer/embedder.h st_embedder_prepare), so decoding
 * runs on as many threads as there are requests. The prepared query goes into a bounded queue
 * (full: 503). One batcher thread owns the model: it takes up to `batch` queued queries (waiting
 * at most wait_ms for more once one is there), runs one forward pass and one top-k per metric
 * over the gallery (infer/query.h st_query_galleries: opened on the backend once per snapshot and
 * metric, at the first batch that needs it), and wakes the waiting requests.
 *
 * The index is a reference-counted snapshot (serve_index): a request keeps the snapshot its
 * results were computed on until its answer is written, so SIGHUP (reload) and POST /index
 * (append, write atomically) swap in a new snapshot without touching one in use.
 * Everything shared is guarded by server.mu; POST /index writers are serialised by write_mu.
 */
#ifndef ST_SERVE_H
#define ST_SERVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "infer/embedder.h"
#include "infer/embeddings_h5.h"
#include "infer/query.h"
#include "infer/topk.h"

typedef struct serve_options {
    const char *index_path, *weights, *host, *token_file, *device;
    int port, k, threads, queue, batch, allow_write;
    double wait_ms, request_timeout_s;
    int idle_timeout_s, max_connections;
    long max_upload_bytes;
    int64_t max_pixels;
} serve_options;

typedef struct serve_index {
    st_embeddings e;
    char warning[1024]; /* the weights mismatch warning, "" when none (infer/query.h) */
    int refs;           /* the server's own + one per request using it; under server.mu */
} serve_index;

typedef struct serve_query {
    float *input;          /* prepared image (st_embedder_input_floats) */
    st_topk_options to;    /* metric and k */
    float *vector;         /* (D) the embedding, filled by the batcher */
    /* answers, set by the batcher before done = 1 */
    serve_index *index;    /* the snapshot searched (a reference the request releases) */
    st_topk_result r;      /* q = 1 */
    int batch_size, done;
    double queued_at, embed_s, search_s, queue_s;
    struct serve_query *next;
} serve_query;

enum { SERVE_LATENCY_BUCKETS = 12, SERVE_BATCH_BUCKETS = 8, SERVE_STATUS_MAX = 600 };

typedef struct serve_metrics {
    long by_status[SERVE_STATUS_MAX];
    long latency[SERVE_LATENCY_BUCKETS + 1]; /* per bucket (not cumulative), last = +Inf */
    double latency_sum;
    long batches[SERVE_BATCH_BUCKETS + 1];
    long batch_queries;
    long n_batches;
} serve_metrics;

typedef struct server {
    serve_options o;
    char *weights;         /* the weight file used (given, else the index's model attribute) */
    st_embedder *em;
    char *token;           /* --token-file's content (trailing whitespace removed), or NULL */
    pthread_mutex_t mu, write_mu;
    pthread_cond_t work, answered;
    serve_query *head, *tail;
    int queued, stopping, in_flight;
    serve_index *index;
    serve_metrics metrics;
    long next_request_id;
    pthread_t batcher;
    /* the batcher thread's own (the thread that uses the backend): the snapshot its galleries are
     * opened on, a reference held until a batch finds another snapshot installed, and the galleries */
    serve_index *searched;
    st_query_galleries galleries;
    struct MHD_Daemon *daemon;
} server;

/* serve_batcher.c */
/* A served index from a file, or from e (taken over, freed on failure): D checked against the
 * model, the weights warning set. 0, or -1 with st_error_set. */
int serve_index_load(server *s, const char *path, serve_index **out);
int serve_index_adopt(server *s, st_embeddings *e, const char *path, serve_index **out);
serve_index *serve_index_acquire(server *s);
void serve_index_release(server *s, serve_index *ix);
void serve_index_install(server *s, serve_index *ix); /* becomes the current one */
int serve_reload(server *s);                          /* SIGHUP */
void serve_batcher_start(server *s);
void serve_batcher_stop(server *s);                   /* after the queue is drained */
/* Queue q: 0, or -1 when the queue is full. Then wait for the answer: 0, or -1 when it was
 * still queued after the request timeout (q is removed from the queue then). */
int serve_submit(server *s, serve_query *q);
int serve_wait(server *s, serve_query *q);
void serve_query_free(server *s, serve_query *q);

/* serve_index_write.c */
typedef struct serve_new_image {
    const uint8_t *bytes;
    size_t size;
    const char *name, *label;          /* label may be NULL */
    const char *const *meta_names;     /* (n_meta) given metadata, by column name */
    const char *const *meta_values;
    int n_meta;
} serve_new_image;
/* Store the image next to the index, append its row and write the index atomically; the new
 * snapshot is installed. *row gets the new row. 0; -1 for bad input (a metadata column the
 * index lacks) or -2 when a file cannot be written, with st_error_set. */
int serve_index_add(server *s, const serve_new_image *img, const float *vector, long *row);

/* serve_metrics.c */
void serve_metrics_request(server *s, int status, double seconds); /* under no lock */
void serve_metrics_batch(serve_metrics *m, int size);              /* under server.mu */
char *serve_metrics_text(server *s);                              /* malloc'ed */

/* serve_http.c */
int serve_http_start(server *s); /* 0, or -1 with st_error_set; prints the startup line */
void serve_http_stop(server *s); /* stop accepting, drain in-flight requests, close */

/* serve_page.c */
typedef struct serve_answer {
    const char *query_name, *query_label;
    const serve_query *q;
    double total_s;
    const char *request_id;
} serve_answer;
char *serve_page_upload(server *s, const char *error);          /* GET / (and the error page) */
char *serve_page_results(server *s, const serve_answer *a);     /* POST / */
char *serve_json_results(server *s, const serve_answer *a);     /* POST /search */

#endif
