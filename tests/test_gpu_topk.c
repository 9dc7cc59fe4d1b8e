/*
 * test_gpu_topk.c: exact top-k on the CUDA backend against the CPU backend at gallery sizes a
 * user searches (issue 15, point 7): N = 100000 rows, D = 64, 300 queries in query blocks of 128
 * (3 blocks, so the gallery is opened resident and serves every block), k = 10 and k = 4000
 * (4000 > 3840: the merge's 96 KiB shared-memory path), through the library calls `simtune topk`,
 * eval and the k-NN graph use (infer/topk.h).
 *
 *   ip, l2       integer vectors in [-4, 4]: every dot product and squared distance is an
 *                integer below 2^24, exact in FP32 on both backends whatever the summation
 *                order (SIMTUNE_CUDA_MATH=fp32, set here: TF32 would round the inputs), and the
 *                many exact ties are broken by the lower index on both. So the lists, keys and
 *                scores must be IDENTICAL, tie order included.
 *   cosine       random floats, the gallery normalised on the device (l2norm_forward) against
 *                the CPU's: scores agree to COSINE_TOL = 1e-5 absolute per rank (unit vectors,
 *                64-term float dot products: rounding ~ sqrt(64) * 6e-8 = 5e-7, and the two
 *                normalisations differ by an ulp or two; 20x margin, while a wrong row or a
 *                missing normalisation is off by > 1e-2). Where the indices at a rank differ the
 *                two rows must tie to that tolerance: both lists are then valid top-k lists;
 *                the exact cosine (double) of each GPU entry must equal its score to
 *                COSINE_TOL. Self-exclusion is on (query i excludes row 7i).
 *   resident     on the GPU, a gallery opened resident and one forced to stream (budget 1 byte,
 *                double-buffered uploads) give the same lists and scores to COSINE_TOL, and
 *                an open gallery searched twice gives bit-identical results (deterministic).
 *
 * Usage: test_gpu_topk [BACKEND] (default cuda). Exits 77 without a device (a failure under
 * SIMTUNE_REQUIRE_GPU=1). Label gpu. The CPU reference takes ~10 s on 2 cores.
 */
#include <math.h>

#include "infer/topk.h"
#include "kernels/check.h"
#include "test_util.h"

enum { N = 100000, D = 64, Q = 300, BLOCK = 128 };
static const double COSINE_TOL = 1e-5;

static st_backend *ref, *dev;

static float *random_matrix(long rows, int integers) {
    float *x = ST_MALLOC((size_t)rows * D * sizeof(float));
    for (size_t i = 0; i < (size_t)rows * D; i++)
        x[i] = integers ? (float)((int)(9 * test_uniform()) - 4) : (float)(2 * test_uniform() - 1);
    return x;
}

static void check_identical(const char *what, const st_topk_result *got,
                            const st_topk_result *want) {
    size_t cells = (size_t)want->q * want->k, bad = 0, first = 0;
    for (size_t i = 0; i < cells; i++)
        if (got->index[i] != want->index[i] || got->key[i] != want->key[i] ||
            got->score[i] != want->score[i]) {
            if (!bad) first = i;
            bad++;
        }
    TEST_CHECK(bad == 0, "%s: %zu of %zu entries differ, first (query %zu, rank %zu): index "
               "%lld vs %lld, score %.9g vs %.9g", what, bad, cells, first / want->k,
               first % want->k, (long long)got->index[first], (long long)want->index[first],
               got->score[first], want->score[first]);
}

static double exact_cosine(const float *a, const float *b) {
    double ab = 0, aa = 0, bb = 0;
    for (int j = 0; j < D; j++) {
        ab += (double)a[j] * b[j];
        aa += (double)a[j] * a[j];
        bb += (double)b[j] * b[j];
    }
    return ab / (sqrt(aa) * sqrt(bb));
}

/* Same scores rank by rank; differing indices only where the rows tie within COSINE_TOL. */
static void check_cosine(const char *what, const st_topk_result *got, const st_topk_result *want,
                         const float *gallery, const float *queries) {
    size_t cells = (size_t)want->q * want->k, bad = 0, swapped = 0, first = 0;
    for (size_t i = 0; i < cells; i++) {
        const float *qrow = queries + (i / want->k) * D;
        int ok = fabs((double)got->score[i] - want->score[i]) <= COSINE_TOL && got->index[i] >= 0;
        if (ok && got->index[i] != want->index[i]) {
            swapped++;
            ok = fabs(exact_cosine(qrow, gallery + got->index[i] * D) -
                      exact_cosine(qrow, gallery + want->index[i] * D)) <= 2 * COSINE_TOL;
        }
        ok = ok && fabs(exact_cosine(qrow, gallery + got->index[i] * D) - got->score[i]) <=
                       COSINE_TOL;
        if (!ok && !bad++) first = i;
    }
    TEST_CHECK(bad == 0, "%s: %zu of %zu entries wrong, first (query %zu, rank %zu): index %lld "
               "score %.9g vs index %lld score %.9g", what, bad, cells, first / want->k,
               first % want->k, (long long)got->index[first], got->score[first],
               (long long)want->index[first], want->score[first]);
    printf("%s: %zu of %zu ranks hold another row of a tied score\n", what, swapped, cells);
}

static void exact_metrics(const float *gallery, const float *queries) {
    const st_metric metrics[] = {ST_METRIC_IP, ST_METRIC_L2};
    const int ks[] = {10, 4000};
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < 2; i++) {
            st_topk_options o = {metrics[m], ks[i], 0, BLOCK, NULL};
            st_topk_result r, d;
            ST_CHECK(st_topk_search_matrix(ref, &o, queries, Q, gallery, N, D, &r) == 0, "cpu");
            ST_CHECK(st_topk_search_matrix(dev, &o, queries, Q, gallery, N, D, &d) == 0, "%s: %s",
                     dev->name, st_error_get());
            char what[64];
            snprintf(what, sizeof what, "%s k=%d N=%d", st_metric_name(metrics[m]), ks[i], N);
            check_identical(what, &d, &r);
            st_topk_result_free(&r);
            st_topk_result_free(&d);
        }
}

static void cosine_gallery(const float *gallery, const float *queries) {
    int64_t *self = ST_MALLOC(Q * sizeof *self);
    for (int i = 0; i < Q; i++) self[i] = 7L * i;
    st_topk_options o = {ST_METRIC_COSINE, 4000, 0, BLOCK, self};
    st_topk_gallery *resident, *streamed;
    int rc = st_topk_gallery_open_matrix(dev, ST_METRIC_COSINE, gallery, N, D, 0, &resident);
    rc |= st_topk_gallery_open_matrix(dev, ST_METRIC_COSINE, gallery, N, D, 1, &streamed);
    ST_CHECK(rc == 0, "gallery open: %s", st_error_get());
    TEST_CHECK(st_topk_gallery_is_resident(resident) && !st_topk_gallery_is_resident(streamed),
               "a 25.6 MB gallery must be resident by default, and stream with a 1-byte budget");
    st_topk_result r, d, d2, s;
    ST_CHECK(st_topk_search_matrix(ref, &o, queries, Q, gallery, N, D, &r) == 0, "cpu");
    ST_CHECK(st_topk_gallery_search(resident, &o, queries, Q, &d) == 0 &&
                 st_topk_gallery_search(resident, &o, queries, Q, &d2) == 0 &&
                 st_topk_gallery_search(streamed, &o, queries, Q, &s) == 0,
             "gallery search: %s", st_error_get());
    check_cosine("cosine k=4000 resident gallery vs cpu", &d, &r, gallery, queries);
    check_cosine("cosine k=4000 streamed vs resident gallery", &s, &d, gallery, queries);
    check_identical("cosine resident gallery searched twice", &d2, &d);
    for (int i = 0; i < Q; i++)
        for (int j = 0; j < o.k; j++)
            if (d.index[(size_t)i * o.k + j] == self[i]) {
                TEST_CHECK(0, "query %d: its own row %lld is in the list", i, (long long)self[i]);
                i = Q;
                break;
            }
    st_topk_result *all[] = {&r, &d, &d2, &s};
    for (int i = 0; i < 4; i++) st_topk_result_free(all[i]);
    st_topk_gallery_close(resident);
    st_topk_gallery_close(streamed);
    free(self);
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "cuda";
    setenv("SIMTUNE_CUDA_MATH", "fp32", 1); /* exact integer products need FP32 inputs */
    unsetenv("SIMTUNE_CUDA_TF32");
    dev = st_backend_open(name, 0);
    if (!dev) test_skip_no_gpu(st_error_get());
    ref = st_backend_open("cpu", 2);
    float *gi = random_matrix(N, 1), *qi = random_matrix(Q, 1);
    exact_metrics(gi, qi);
    free(gi);
    free(qi);
    float *gf = random_matrix(N, 0), *qf = random_matrix(Q, 0);
    cosine_gallery(gf, qf);
    free(gf);
    free(qf);
    st_backend_close(ref);
    st_backend_close(dev);
    return test_finish("test_gpu_topk");
}
