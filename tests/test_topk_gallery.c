/*
 * test_topk_gallery.c: the gallery of infer/topk.h opened once for many searches, on the CPU
 * backend (the same code drives CUDA; tests/test_gpu_topk.c compares the two):
 *   - resident (loaded and prepared once) and streamed (read again per query block, through the
 *     two upload stages) give bit-identical lists, scores and keys for ip, l2 and cosine, with
 *     several query blocks, gallery tiles that do not divide N, and self-exclusion;
 *   - both equal st_topk_search_matrix (the path `simtune topk` and eval take), bit for bit;
 *   - searching one open gallery twice gives the same result (nothing is consumed);
 *   - the resident budget decides placement; a failing row callback fails the open with its
 *     message.
 * Random float data: exactness is asserted between the paths, which must run the same GEMMs.
 */
#include "infer/topk.h"
#include "kernels/check.h"
#include "test_util.h"

enum { N = 1000, D = 24, Q = 300, K = 12 };

static void same_result(const char *what, const st_topk_result *a, const st_topk_result *b) {
    size_t cells = (size_t)a->q * a->k;
    int bad = a->q != b->q || a->k != b->k;
    for (size_t i = 0; !bad && i < cells; i++)
        bad = a->index[i] != b->index[i] || memcmp(&a->score[i], &b->score[i], 4) != 0 ||
              memcmp(&a->key[i], &b->key[i], 4) != 0;
    TEST_CHECK(!bad, "%s: results differ", what);
}

static void one_metric(st_backend *be, st_metric metric, const float *gallery,
                       const float *queries, const int64_t *self) {
    st_topk_options o = {metric, K, 100 /* tiles of 100: 10 tiles, last full */, 64, self};
    const char *name = st_metric_name(metric);
    st_topk_result direct, resident, streamed, again;
    TEST_CHECK(st_topk_search_matrix(be, &o, queries, Q, gallery, N, D, &direct) == 0,
               "%s: search_matrix: %s", name, st_error_get());
    st_topk_gallery *r, *s;
    TEST_CHECK(st_topk_gallery_open_matrix(be, metric, gallery, N, D, 0, &r) == 0 &&
                   st_topk_gallery_is_resident(r),
               "%s: a %d x %d gallery must be resident with the default budget", name, N, D);
    TEST_CHECK(st_topk_gallery_open_matrix(be, metric, gallery, N, D, 1, &s) == 0 &&
                   !st_topk_gallery_is_resident(s),
               "%s: a 1-byte budget must stream", name);
    o.tile_rows = 77; /* a tile that does not divide N */
    st_topk_result direct77;
    TEST_CHECK(st_topk_search_matrix(be, &o, queries, Q, gallery, N, D, &direct77) == 0, "77");
    TEST_CHECK(st_topk_gallery_search(r, &o, queries, Q, &resident) == 0, "%s: resident", name);
    TEST_CHECK(st_topk_gallery_search(s, &o, queries, Q, &streamed) == 0, "%s: streamed", name);
    TEST_CHECK(st_topk_gallery_search(r, &o, queries, Q, &again) == 0, "%s: again", name);
    char what[64];
    snprintf(what, sizeof what, "%s resident vs streamed", name);
    same_result(what, &resident, &streamed);
    snprintf(what, sizeof what, "%s resident vs st_topk_search_matrix", name);
    same_result(what, &resident, &direct77);
    snprintf(what, sizeof what, "%s second search of one gallery", name);
    same_result(what, &resident, &again);
    /* tiles of 100 vs 77: same lists (scores of one pair do not depend on the tiling) */
    int moved = 0;
    for (size_t i = 0; i < (size_t)Q * K; i++) moved += direct.index[i] != resident.index[i];
    TEST_CHECK(moved == 0, "%s: %d entries differ between tile widths 100 and 77", name, moved);
    st_topk_gallery_close(r);
    st_topk_gallery_close(s);
    st_topk_result_free(&direct);
    st_topk_result_free(&direct77);
    st_topk_result_free(&resident);
    st_topk_result_free(&streamed);
    st_topk_result_free(&again);
}

static int failing_rows(void *ctx, long start, long count, float *dst) {
    (void)ctx;
    (void)dst;
    return st_error_set("gallery.h5: rows %ld..%ld: read error", start, start + count);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "cpu backend: %s", st_error_get());
    float *gallery = malloc(sizeof(float) * N * D), *queries = malloc(sizeof(float) * Q * D);
    for (int i = 0; i < N * D; i++) gallery[i] = (float)(2 * test_uniform() - 1);
    for (int i = 0; i < Q * D; i++) queries[i] = (float)(2 * test_uniform() - 1);
    int64_t self[Q];
    for (int i = 0; i < Q; i++) self[i] = (i * 7) % N;
    const st_metric metrics[] = {ST_METRIC_IP, ST_METRIC_L2, ST_METRIC_COSINE};
    for (int m = 0; m < 3; m++) one_metric(be, metrics[m], gallery, queries, m == 2 ? self : NULL);

    st_topk_gallery *g = (st_topk_gallery *)1;
    TEST_CHECK(st_topk_gallery_open(be, ST_METRIC_COSINE, D, N, failing_rows, NULL, 0, &g) == -1 &&
                   g == NULL && strstr(st_error_get(), "gallery.h5: rows 0.."),
               "a failing row callback must fail the open with its message: %s", st_error_get());
    free(gallery);
    free(queries);
    st_backend_close(be);
    return test_finish("test_topk_gallery");
}
