/*
 * query.h: the query path of `simtune search` (one image per process, cmd/search.c) and
 * `simtune serve` (model and gallery resident, cmd/serve.c), so that both rank a query image
 * exactly alike:
 *
 *   st_query_embedder_options  the embedder options that reproduce the index: its layer
 *                              (unless it is the model output), pooling, GeM p, normalisation
 *                              and crop size (the caller picks weights, batch and device)
 *   st_query_check_dim         the embedder's D equals the index's, else an error with a HINT
 *   st_query_weights_warning   the warning when the index records other weights (weights_id)
 *                              than the query's: the scores would compare two models
 *   st_query_label_of          the query's label: the given one, else that of the index row
 *                              with the query's path
 *   st_query_search            queries (Q, D) against the index held in memory: the one place
 *                              that picks the top-k implementation for a resident gallery
 *   st_query_galleries         the same for many query batches (serve): the index's gallery
 *                              opened on the backend once per metric, at its first search with
 *                              that metric, and reused (infer/topk.h st_topk_gallery); results
 *                              identical to st_query_search's (same tiles, same GEMMs)
 *
 * Functions returning int give 0, or -1 with st_error_set naming the file.
 */
#ifndef ST_QUERY_H
#define ST_QUERY_H

#include <stddef.h>

#include "embedder.h"
#include "embeddings_h5.h"
#include "topk.h"

int st_query_embedder_options(const st_embeddings *index, const char *index_path, st_embedder_options *eo);
int st_query_check_dim(const st_embedder *em, const st_embeddings *index, const char *index_path,
                       const char *weights);
/* Into warning[size]; "" when the weights agree or the index records none. */
void st_query_weights_warning(const st_embeddings *index, const char *index_path, const char *weights,
                              const char *query_weights_id, char *warning, size_t size);
const char *st_query_label_of(const st_embeddings *index, const char *image, const char *given);
int st_query_search(st_backend *be, const st_topk_options *o, const float *queries, int q,
                    const st_embeddings *index, st_topk_result *out);

/* The galleries of one index on one backend, one per metric searched so far. index must stay
 * valid until close (a gallery that does not fit the device streams from it); all calls on one
 * thread, the thread that uses the backend. */
typedef struct st_query_galleries {
    st_backend *be;
    const st_embeddings *index;
    st_topk_gallery *by_metric[ST_METRIC_L2 + 1]; /* NULL until first searched */
} st_query_galleries;
void st_query_galleries_init(st_query_galleries *gs, st_backend *be, const st_embeddings *index);
int st_query_galleries_search(st_query_galleries *gs, const st_topk_options *o, const float *queries,
                              int q, st_topk_result *out);
void st_query_galleries_close(st_query_galleries *gs); /* back to the state of init, no index */

#endif
