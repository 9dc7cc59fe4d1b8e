/*
 * serve_metrics.c: GET /metrics of `simtune serve` in the Prometheus text format (0.0.4):
 *   simtune_requests_total{code="200"}          counter per HTTP status answered
 *   simtune_request_duration_seconds            histogram of the time from the request's first
 *                                               byte to its answer being queued
 *   simtune_queue_depth                         gauge: queries waiting for the batcher
 *   simtune_batch_size                          histogram: queries per forward pass
 *   simtune_index_images                        gauge: rows of the served index
 * Counts are kept under server.mu; the text is written with open_memstream.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/check.h"
#include "serve.h"

static const double latency_le[SERVE_LATENCY_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                          0.5,   1,    2.5,   5,    10,  30};
static const int batch_le[SERVE_BATCH_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128};

void serve_metrics_request(server *s, int status, double seconds) {
    pthread_mutex_lock(&s->mu);
    serve_metrics *m = &s->metrics;
    if (status >= 0 && status < SERVE_STATUS_MAX) m->by_status[status]++;
    int b = 0;
    while (b < SERVE_LATENCY_BUCKETS && seconds > latency_le[b]) b++;
    m->latency[b]++;
    m->latency_sum += seconds;
    pthread_mutex_unlock(&s->mu);
}

void serve_metrics_batch(serve_metrics *m, int size) {
    int b = 0;
    while (b < SERVE_BATCH_BUCKETS && size > batch_le[b]) b++;
    m->batches[b]++;
    m->batch_queries += size;
    m->n_batches++;
}

/* Prometheus buckets are cumulative: each le counts every request at or below it. */
static void latency_histogram(FILE *f, const serve_metrics *m) {
    fputs("# HELP simtune_request_duration_seconds Time to answer a request.\n"
          "# TYPE simtune_request_duration_seconds histogram\n", f);
    long total = 0;
    for (int b = 0; b < SERVE_LATENCY_BUCKETS; b++) {
        total += m->latency[b];
        fprintf(f, "simtune_request_duration_seconds_bucket{le=\"%g\"} %ld\n", latency_le[b], total);
    }
    total += m->latency[SERVE_LATENCY_BUCKETS];
    fprintf(f, "simtune_request_duration_seconds_bucket{le=\"+Inf\"} %ld\n", total);
    fprintf(f, "simtune_request_duration_seconds_sum %.6f\nsimtune_request_duration_seconds_count %ld\n",
            m->latency_sum, total);
}

static void batch_histogram(FILE *f, const serve_metrics *m) {
    fputs("# HELP simtune_batch_size Queries per forward pass.\n# TYPE simtune_batch_size histogram\n", f);
    long total = 0;
    for (int b = 0; b < SERVE_BATCH_BUCKETS; b++) {
        total += m->batches[b];
        fprintf(f, "simtune_batch_size_bucket{le=\"%d\"} %ld\n", batch_le[b], total);
    }
    total += m->batches[SERVE_BATCH_BUCKETS];
    fprintf(f, "simtune_batch_size_bucket{le=\"+Inf\"} %ld\n", total);
    fprintf(f, "simtune_batch_size_sum %ld\nsimtune_batch_size_count %ld\n", m->batch_queries, m->n_batches);
}

char *serve_metrics_text(server *s) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    ST_CHECK(f != NULL, "open_memstream");
    pthread_mutex_lock(&s->mu);
    fputs("# HELP simtune_requests_total Requests answered, by HTTP status.\n"
          "# TYPE simtune_requests_total counter\n", f);
    for (int code = 100; code < SERVE_STATUS_MAX; code++)
        if (s->metrics.by_status[code])
            fprintf(f, "simtune_requests_total{code=\"%d\"} %ld\n", code, s->metrics.by_status[code]);
    latency_histogram(f, &s->metrics);
    batch_histogram(f, &s->metrics);
    fprintf(f, "# HELP simtune_queue_depth Queries waiting for the batcher.\n# TYPE simtune_queue_depth gauge\n"
            "simtune_queue_depth %d\n", s->queued);
    fprintf(f, "# HELP simtune_index_images Images in the served index.\n# TYPE simtune_index_images gauge\n"
            "simtune_index_images %ld\n", s->index->e.n);
    pthread_mutex_unlock(&s->mu);
    fclose(f);
    return text;
}
