/*
 * test_embed_pool.c: the embedder's pooling and normalisation give the backend ops' numbers.
 *
 * A tv_resnet18 with its deterministic random initialisation embeds 3 generated 64 x 64 images
 * through st_embedder (the path of `simtune embed`) on the CPU backend. Checks, all exact (the
 * same op or the same formula on the same floats must give the same bits):
 *   - GeM of a named layer (`--layer conv5_block2_out --pool gem`, the last feature map) equals
 *     the model's own GeM head (`--pool gem`, the backend's global-pool op on that same map);
 *     before the embedder pooled named layers on the host with powf and float sums;
 *   - `--normalize` equals the backend's l2norm op (clamp 1e-12) applied to the vectors embedded
 *     without it, for a named layer (normalised on the device) and for R-MAC (normalised on the
 *     host with the op's formula, kernels/math/l2norm.h).
 * A check that the vectors are finite and not all zero keeps the equalities from being trivial.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/synthetic.h"
#include "infer/embedder.h"
#include "infer/model/model.h"
#include "infer/weights_h5.h"
#include "kernels/check.h"
#include "kernels/math/l2norm.h"
#include "test_util.h"

#define N_IMAGES 3
#define LAST_MAP "conv5_block2_out" /* tv_resnet18's last feature map, before avg_pool */
#define WEIGHTS "embed_pool_weights.h5"

static char image_paths[N_IMAGES][256];

static void make_fixtures(void) {
    const st_synth_config sc = {.n_classes = 1, .images_per_class = N_IMAGES, .width = 64,
                                .height = 64, .seed = 3};
    ST_CHECK(st_synth_write_dataset("embed_pool_images", &sc, NULL) == 0, "%s", st_error_get());
    for (int i = 0; i < N_IMAGES; i++)
        snprintf(image_paths[i], sizeof image_paths[i], "embed_pool_images/device_000/%03d.png", i);

    /* the weight file: a randomly initialised model, saved */
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "%s", st_error_get());
    const st_model_config cfg = {.arch = "tv_resnet18", .batch = 1, .height = 64, .width = 64,
                                 .pool = ST_GPOOL_AVG, .bn_momentum = 0.1f};
    st_model *m = st_model_create(be, &cfg, 7);
    ST_CHECK(m && st_weights_save(m, WEIGHTS, NULL) == 0, "%s", st_error_get());
    st_model_free(m);
    st_backend_close(be);
}

/* Embeds the images into out (N_IMAGES, dim); returns dim, 0 on failure (recorded). */
static int embed(const char *layer, st_embed_pool pool, int normalize, float *out, int capacity) {
    st_embedder_options o;
    st_embedder_defaults(&o);
    o.weights = WEIGHTS;
    o.layer = layer;
    o.pool = pool;
    o.gem_p = 3.0f;
    o.normalize = normalize;
    o.image_size = 64;
    o.batch = N_IMAGES;
    o.threads = 2;
    st_embedder *e;
    if (st_embedder_open(&o, &e) != 0) {
        TEST_CHECK(0, "embedder %s/%s: %s", layer ? layer : "output", st_embed_pool_name(pool),
                   st_error_get());
        return 0;
    }
    int dim = st_embedder_dim(e);
    TEST_CHECK(dim * N_IMAGES <= capacity, "D = %d does not fit the test's buffer", dim);
    uint8_t ok[N_IMAGES];
    const char *paths[N_IMAGES];
    for (int i = 0; i < N_IMAGES; i++) paths[i] = image_paths[i];
    long done = dim * N_IMAGES <= capacity ? st_embedder_run(e, paths, N_IMAGES, out, ok) : 0;
    TEST_CHECK(done == N_IMAGES, "embedded %ld of %d images", done, N_IMAGES);
    st_embedder_close(e);
    return done == N_IMAGES ? dim : 0;
}

/* The CPU backend's l2norm op on the rows x (n, d), into y. */
static void l2norm_op(const float *x, int n, int d, float *y) {
    st_backend *be = st_backend_open("cpu", 1);
    ST_CHECK(be, "%s", st_error_get());
    float norms[N_IMAGES];
    be->l2norm_forward(be, n, d, x, y, norms, ST_L2_EPS);
    st_backend_close(be);
}

static int count_exact_differences(const float *a, const float *b, size_t n) {
    int differ = 0;
    for (size_t i = 0; i < n; i++) differ += memcmp(&a[i], &b[i], sizeof a[i]) != 0;
    return differ;
}

static void check_substantial(const char *name, const float *v, size_t n) {
    int finite = 1;
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        finite &= isfinite(v[i]) != 0;
        ss += (double)v[i] * v[i];
    }
    TEST_CHECK(finite && ss > 0, "%s: vectors not finite or all zero (sum of squares %g)", name, ss);
}

static void test_gem_layer_equals_model_head(void) {
    static float head[N_IMAGES * 512], layer[N_IMAGES * 512];
    int d_head = embed(NULL, ST_EMBED_POOL_GEM, 0, head, N_IMAGES * 512);
    int d_layer = embed(LAST_MAP, ST_EMBED_POOL_GEM, 0, layer, N_IMAGES * 512);
    TEST_CHECK(d_head == 512 && d_layer == 512, "D: head %d, layer %d (expected 512)", d_head, d_layer);
    if (d_head != 512 || d_layer != 512) return;
    check_substantial("GeM head", head, (size_t)N_IMAGES * 512);
    int differ = count_exact_differences(layer, head, (size_t)N_IMAGES * 512);
    TEST_CHECK(differ == 0, "GeM of layer %s differs from the model's GeM head in %d of %d values "
               "(max rel error %.3g)", LAST_MAP, differ, N_IMAGES * 512,
               test_rel_error(layer, head, (size_t)N_IMAGES * 512));
}

/* --normalize equals the l2norm op applied to the vectors embedded without it. */
static void check_normalize_is_op(const char *layer, st_embed_pool pool) {
    static float raw[N_IMAGES * 512], normalized[N_IMAGES * 512], by_op[N_IMAGES * 512];
    int d_raw = embed(layer, pool, 0, raw, N_IMAGES * 512);
    int d_norm = embed(layer, pool, 1, normalized, N_IMAGES * 512);
    const char *name = st_embed_pool_name(pool);
    TEST_CHECK(d_raw > 0 && d_raw == d_norm, "%s: D %d without, %d with normalize", name, d_raw, d_norm);
    if (d_raw <= 0 || d_raw != d_norm) return;
    size_t n = (size_t)N_IMAGES * d_raw;
    check_substantial(name, raw, n);
    l2norm_op(raw, N_IMAGES, d_raw, by_op);
    int differ = count_exact_differences(normalized, by_op, n);
    TEST_CHECK(differ == 0, "%s: --normalize differs from the l2norm op in %d of %zu values "
               "(max rel error %.3g)", name, differ, n, test_rel_error(normalized, by_op, n));
}

int main(void) {
    make_fixtures();
    test_gem_layer_equals_model_head();
    check_normalize_is_op("conv4_block2_out", ST_EMBED_POOL_GEM);
    check_normalize_is_op(NULL, ST_EMBED_POOL_RMAC);
    return test_finish("test_embed_pool");
}
