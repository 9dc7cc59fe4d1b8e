/* query.c: the query path shared by search and serve (contract in query.h). */
#include "query.h"

#include <stdio.h>
#include <string.h>

#include "../kernels/check.h"

int st_query_embedder_options(const st_embeddings *index, const char *index_path, st_embedder_options *eo) {
    if (index->layer && strcmp(index->layer, "embedding") && strcmp(index->layer, "avg_pool")) eo->layer = index->layer;
    if (index->pooling && st_embed_pool_parse(index->pooling, &eo->pool) != 0)
        return st_error_set("%s: attribute pooling: %s", index_path, st_error_get());
    if (index->gem_p > 0) eo->gem_p = index->gem_p;
    if (index->normalized >= 0) eo->normalize = index->normalized;
    if (index->image_size > 0) eo->image_size = index->image_size;
    eo->set_by = "index";
    return 0;
}

int st_query_check_dim(const st_embedder *em, const st_embeddings *index, const char *index_path,
                       const char *weights) {
    if (st_embedder_dim(em) == index->d) return 0;
    return st_error_set("%s: /embeddings has D=%d but %s embeds to D=%d (layer %s, pooling %s); HINT: "
                        "use the weights the index was embedded with",
                        index_path, index->d, weights, st_embedder_dim(em), st_embedder_layer(em),
                        st_embed_pool_name(st_embedder_settings_of(em)->pool));
}

void st_query_weights_warning(const st_embeddings *index, const char *index_path, const char *weights,
                              const char *query_weights_id, char *warning, size_t size) {
    warning[0] = '\0';
    if (index->weights_id && strcmp(index->weights_id, query_weights_id))
        snprintf(warning, size, "%s was embedded with other weights (%s, weights_id %s) than the query (%s, "
                 "weights_id %s): the scores compare two models",
                 index_path, index->model ? index->model : "?", index->weights_id, weights, query_weights_id);
}

const char *st_query_label_of(const st_embeddings *index, const char *image, const char *given) {
    if (given) return given;
    for (long i = 0; image && index->paths && i < index->n; i++)
        if (!strcmp(index->paths[i], image))
            return index->labels[i] >= 0 && index->label_names ? index->label_names[index->labels[i]] : NULL;
    return NULL;
}

int st_query_search(st_backend *be, const st_topk_options *o, const float *queries, int q,
                    const st_embeddings *index, st_topk_result *out) {
    return st_topk_search_matrix(be, o, queries, q, index->vectors, index->n, index->d, out);
}

void st_query_galleries_init(st_query_galleries *gs, st_backend *be, const st_embeddings *index) {
    *gs = (st_query_galleries){.be = be, .index = index};
}

int st_query_galleries_search(st_query_galleries *gs, const st_topk_options *o, const float *queries,
                              int q, st_topk_result *out) {
    st_topk_gallery **g = &gs->by_metric[o->metric];
    if (!*g && st_topk_gallery_open_matrix(gs->be, o->metric, gs->index->vectors, gs->index->n,
                                           gs->index->d, 0, g) != 0)
        return -1;
    return st_topk_gallery_search(*g, o, queries, q, out);
}

void st_query_galleries_close(st_query_galleries *gs) {
    for (int m = 0; m <= ST_METRIC_L2; m++) st_topk_gallery_close(gs->by_metric[m]);
    st_query_galleries_init(gs, gs->be, NULL);
}
