/*
 * test_resnet_model.c: the ResNet builder without any oracle (infer/model/).
 *
 * Checks, for every architecture of infer/model/arch.c:
 *   - layer names: Keras names of weighted and weightless layers (conv4_block6_out, post_bn,
 *     max_pooling2d, conv1_pad ...), torchvision BasicBlocks without _3_conv
 *   - layer counts equal Keras len(model.layers) (docs/resnet-weights-hdf5.md 2.5)
 *   - parameter counts: Keras totals include BN moving statistics and conv biases (2.5);
 *     torchvision counts are parameters() without fc, i.e. without running statistics (5.2)
 *   - output sizes at 32x32 and at the odd 97x123, and a forward at those sizes
 *   - bad configs return NULL with a message naming the thing
 *   - freezing: frozen parameters have no gradient slot; forward on n < batch images gives the
 *     same rows as the full batch in inference mode
 *   - the deterministic initialisation (same seed, same weights; He-normal scale)
 *   - an inference model keeps the freeze_until layer's output (st_model_layer_output)
 *   - backward stops at the delimiting layer and loses nothing above it.
 *   - every parameter (conv and dense kernels, biases, BN vectors) and every gradient buffer
 *     round-trips exactly through st_param_upload / st_param_download, whatever the backend's
 *     storage layout, and takes at least its file numel (st_param_storage_numel).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../infer/model/layer.h"
#include "../kernels/check.h"
#include "test_util.h"

static st_model_config base_config(const char *arch, int batch, int h, int w) {
    st_model_config cfg = {.arch = arch, .batch = batch, .height = h, .width = w, .training = 0,
                           .freeze_until = NULL, .pool = ST_GPOOL_AVG, .gem_p = 3.0f,
                           .embed_dim = 0, .num_classes = 0, .bn_momentum = 0.1f};
    return cfg;
}

typedef struct arch_counts {
    const char *arch;
    size_t params;      /* Keras: all weights incl. moving statistics; torchvision: parameters() */
    int keras_family;
    int weighted_layers; /* Keras notop: layers with weights (2.5) */
    int layers_full;     /* Keras len(model.layers) with top (2.5) */
} arch_counts;

/* The 152-layer variants differ from the 101 ones only by the block counts of arch.c and cost
 * 0.25 GB each to build, so they are left out to keep the test fast. */
static const arch_counts COUNTS[] = {
    {"resnet50", 23587712, 1, 106, 177},    {"resnet101", 42658176, 1, 208, 347},
    {"resnet50v2", 23564800, 1, 102, 192},  {"resnet101v2", 42626560, 1, 204, 379},
    /* torchvision parameters() minus fc (512*1000+1000 or 2048*1000+1000), section 5.2 */
    {"tv_resnet18", 11689512 - 513000, 0, 0, 0},  {"tv_resnet34", 21797672 - 513000, 0, 0, 0},
    {"tv_resnet50", 25557032 - 2049000, 0, 0, 0}, {"tv_resnet101", 44549160 - 2049000, 0, 0, 0},
};

static void check_counts(st_backend *be) {
    for (size_t i = 0; i < sizeof COUNTS / sizeof COUNTS[0]; i++) {
        const arch_counts *c = &COUNTS[i];
        st_model_config cfg = base_config(c->arch, 1, 32, 32);
        cfg.num_classes = 1000; /* the full Keras model: avg_pool + predictions */
        st_model *m = st_model_create(be, &cfg, 1);
        TEST_CHECK(m != NULL, "%s: create: %s", c->arch, st_error_get());
        if (!m) continue;
        size_t total = 0, without_moving = 0, head = 0;
        int weighted = 0, last_layer = -1;
        for (int p = 0; p < m->n_params; p++) {
            const st_param *q = &m->params[p];
            if (strcmp(q->layer, "predictions") == 0) {
                head += q->numel;
                continue;
            }
            total += q->numel;
            if (strncmp(q->weight, "moving_", 7) != 0) without_moving += q->numel;
            if (q->layer_index != last_layer) weighted++;
            last_layer = q->layer_index;
        }
        size_t got = c->keras_family ? total : without_moving;
        TEST_CHECK(got == c->params, "%s: %zu parameters, expected %zu", c->arch, got, c->params);
        TEST_CHECK(head == (size_t)m->feature_dim * 1000 + 1000, "%s: predictions has %zu", c->arch, head);
        if (c->keras_family) {
            TEST_CHECK(weighted == c->weighted_layers, "%s: %d weighted layers, Keras has %d",
                       c->arch, weighted, c->weighted_layers);
            TEST_CHECK(m->n_layers == c->layers_full, "%s: %d layers, Keras has %d", c->arch,
                       m->n_layers, c->layers_full);
        }
        st_model_free(m);
    }
}

static int has_layer(const st_model *m, const char *name) { return st_model_layer_index(m, name) >= 0; }

static void check_names(st_backend *be) {
    st_model_config cfg = base_config("resnet50", 1, 32, 32);
    st_model *m = st_model_create(be, &cfg, 1);
    TEST_CHECK(m != NULL, "resnet50: %s", st_error_get());
    if (m) {
        const char *expect[] = {"input_1", "conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu",
                                "pool1_pad", "pool1_pool", "conv2_block1_0_conv", "conv2_block1_0_bn",
                                "conv2_block1_1_relu", "conv2_block1_3_bn", "conv2_block1_add",
                                "conv4_block6_out", "conv5_block3_out", "avg_pool"};
        for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
            TEST_CHECK(has_layer(m, expect[i]), "resnet50 lacks %s", expect[i]);
        TEST_CHECK(!has_layer(m, "post_bn") && !has_layer(m, "conv2_block2_0_conv"),
                   "resnet50 has v2 / extra shortcut layers");
        TEST_CHECK(strcmp(st_model_layer_name(m, 0), "input_1") == 0, "first layer %s",
                   st_model_layer_name(m, 0));
        const st_param *k = st_model_find_param(m, "conv3_block1_1_conv", "kernel");
        TEST_CHECK(k && k->rank == 4 && k->dims[0] == 1 && k->dims[2] == 256 && k->dims[3] == 128,
                   "conv3_block1_1_conv kernel shape");
        TEST_CHECK(st_model_find_param(m, "conv3_block1_1_conv", "bias") != NULL, "v1 conv bias");
        TEST_CHECK(st_model_find_param(m, "conv1_bn", "moving_variance") != NULL, "BN statistics");
        st_model_free(m);
    }

    cfg = base_config("resnet50v2", 1, 32, 32);
    m = st_model_create(be, &cfg, 1);
    TEST_CHECK(m != NULL, "resnet50v2: %s", st_error_get());
    if (m) {
        const char *expect[] = {"conv1_pad", "conv1_conv", "pool1_pad", "pool1_pool",
                                "conv2_block1_preact_bn", "conv2_block1_preact_relu",
                                "conv2_block1_0_conv", "conv2_block3_2_pad", "max_pooling2d",
                                "max_pooling2d_1", "max_pooling2d_2", "conv4_block6_out",
                                "post_bn", "post_relu", "avg_pool"};
        for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
            TEST_CHECK(has_layer(m, expect[i]), "resnet50v2 lacks %s", expect[i]);
        TEST_CHECK(!has_layer(m, "conv1_bn") && !has_layer(m, "conv2_block1_add"),
                   "resnet50v2 has v1 layers");
        TEST_CHECK(st_model_find_param(m, "conv2_block1_1_conv", "bias") == NULL &&
                       st_model_find_param(m, "conv2_block1_3_conv", "bias") != NULL &&
                       st_model_find_param(m, "conv2_block1_0_conv", "bias") != NULL,
                   "v2 biases as in pitfall 6.6");
        const st_param *k = st_model_find_param(m, "conv2_block3_2_conv", "kernel");
        TEST_CHECK(k && k->dims[0] == 3, "conv2_block3_2_conv kernel");
        st_model_free(m);
    }

    cfg = base_config("tv_resnet18", 1, 32, 32);
    m = st_model_create(be, &cfg, 1);
    TEST_CHECK(m != NULL, "tv_resnet18: %s", st_error_get());
    if (m) {
        TEST_CHECK(has_layer(m, "conv5_block2_out") && has_layer(m, "conv3_block1_0_conv") &&
                       has_layer(m, "conv1_pad") && has_layer(m, "pool1_pool"),
                   "tv_resnet18 lacks Keras-mapped layers");
        TEST_CHECK(!has_layer(m, "conv2_block1_3_conv") && !has_layer(m, "conv2_block1_0_conv") &&
                       !has_layer(m, "conv5_block3_out"),
                   "tv_resnet18 has bottleneck layers or an extra block");
        TEST_CHECK(st_model_find_param(m, "conv2_block1_1_conv", "bias") == NULL, "tv has no conv bias");
        st_model_free(m);
    }
}

/* Stage output sizes: conv1 and pool1 halve with floor((in+pad-k)/2)+1, each later stride 2
 * gives ceil(in/2); all families agree (pitfall 6.5). */
static void check_sizes(st_backend *be) {
    const char *archs[] = {"resnet50", "resnet50v2", "tv_resnet18", "tv_resnet50"};
    const int sizes[][2] = {{32, 32}, {97, 123}};
    const char *stage_out[][4] = {
        {"conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"},
        {"conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"},
        {"conv2_block2_out", "conv3_block2_out", "conv4_block2_out", "conv5_block2_out"},
        {"conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"}};
    for (size_t a = 0; a < 4; a++)
        for (size_t s = 0; s < 2; s++) {
            int h = sizes[s][0], w = sizes[s][1];
            st_model_config cfg = base_config(archs[a], 2, h, w);
            st_model *m = st_model_create(be, &cfg, 3);
            TEST_CHECK(m != NULL, "%s %dx%d: %s", archs[a], h, w, st_error_get());
            if (!m) continue;
            int eh = (h + 6 - 7) / 2 + 1, ew = (w + 6 - 7) / 2 + 1; /* conv1 */
            eh = (eh + 2 - 3) / 2 + 1;                              /* pool1 */
            ew = (ew + 2 - 3) / 2 + 1;
            int is_v2 = strcmp(archs[a], "resnet50v2") == 0;
            for (int st = 0; st < 4; st++) {
                /* v1/tv downsample at the start of conv3..5; v2 at the end of conv2..4 */
                if (is_v2 ? st < 3 : st > 0) {
                    eh = (eh + 1) / 2;
                    ew = (ew + 1) / 2;
                }
                int idx = st_model_layer_index(m, stage_out[a][st]);
                TEST_CHECK(idx >= 0, "%s: no %s", archs[a], stage_out[a][st]);
                if (idx < 0) continue;
                st_tensor t = m->layers[idx].out;
                TEST_CHECK(t.h == eh && t.w == ew, "%s %dx%d: %s is %dx%d, expected %dx%d", archs[a],
                           h, w, stage_out[a][st], t.h, t.w, eh, ew);
            }
            int feat = strncmp(archs[a], "tv_resnet18", 11) == 0 ? 512 : 2048;
            TEST_CHECK(m->feature_dim == feat && m->features.n == 2 && m->features.c == feat,
                       "%s: features (%d, %d)", archs[a], m->features.n, m->features.c);
            /* a forward at this size runs and gives finite, non-constant features */
            size_t n_in = st_numel(m->input);
            float *x = malloc(n_in * sizeof(float));
            for (size_t i = 0; i < n_in; i++) x[i] = (float)sin(0.37 * (double)i);
            be->upload(be, m->input.data, x, n_in * sizeof(float));
            st_model_forward(m, 2, 0);
            size_t nf = st_numel(m->features);
            float *f = malloc(nf * sizeof(float));
            be->download(be, f, m->features.data, nf * sizeof(float));
            int finite = 1;
            double spread = 0;
            for (size_t i = 0; i < nf; i++) {
                finite &= isfinite(f[i]) != 0;
                spread += fabs(f[i] - f[0]);
            }
            TEST_CHECK(finite && spread > 0, "%s %dx%d: features not finite or constant", archs[a], h, w);
            free(x);
            free(f);
            st_model_free(m);
        }
}

static void check_bad_configs(st_backend *be) {
    st_model_config cfg = base_config("resnet51", 1, 64, 64);
    TEST_CHECK(st_model_create(be, &cfg, 1) == NULL && strstr(st_error_get(), "resnet51"),
               "unknown arch accepted or not named: %s", st_error_get());
    cfg = base_config("resnet50", 1, 31, 64);
    TEST_CHECK(st_model_create(be, &cfg, 1) == NULL && strstr(st_error_get(), "32"),
               "input 31 accepted: %s", st_error_get());
    cfg = base_config("resnet50", 1, 64, 64);
    cfg.training = 1;
    cfg.freeze_until = "conv4_block9_out";
    TEST_CHECK(st_model_create(be, &cfg, 1) == NULL && strstr(st_error_get(), "conv4_block9_out"),
               "unknown freeze_until accepted: %s", st_error_get());
}

/* Which parameters get gradient slots under freeze_until; forward on fewer images. */
static void check_freeze(st_backend *be) {
    const char *freeze[] = {"conv4_block6_out", "all", "none", "conv2_block1_1_bn"};
    for (size_t f = 0; f < sizeof freeze / sizeof freeze[0]; f++) {
        st_model_config cfg = base_config("resnet50", 2, 32, 32);
        cfg.training = 1;
        cfg.freeze_until = freeze[f];
        cfg.embed_dim = 8;
        st_model *m = st_model_create(be, &cfg, 5);
        TEST_CHECK(m != NULL, "freeze %s: %s", freeze[f], st_error_get());
        if (!m) continue;
        int limit = strcmp(freeze[f], "none") == 0 ? -1
                    : strcmp(freeze[f], "all") == 0 ? st_model_layer_index(m, "avg_pool") - 1
                                                    : st_model_layer_index(m, freeze[f]);
        TEST_CHECK(m->freeze_index == limit, "freeze %s: index %d, expected %d", freeze[f],
                   m->freeze_index, limit);
        int bad = 0, misaligned = 0;
        const st_param *first = NULL;
        for (int i = 0; i < m->n_params; i++) {
            const st_param *p = &m->params[i];
            int should = p->layer_index > limit && strncmp(p->weight, "moving_", 7) != 0;
            if (should != (p->grad != NULL) || should != p->trainable) bad++;
            if (!p->grad) continue;
            if (!first) first = p;
            /* trainable values are one slice mirrored by the grads arena (flat optimizer steps) */
            if (p->value - first->value != p->grad - first->grad) misaligned++;
        }
        TEST_CHECK(bad == 0, "freeze %s: %d parameters with a wrong gradient slot", freeze[f], bad);
        TEST_CHECK(misaligned == 0, "freeze %s: %d gradients not at their value's offset", freeze[f],
                   misaligned);
        st_model_free(m);
    }

    /* inference mode on 1 of 2 images equals the first row of the full batch */
    st_model_config cfg = base_config("tv_resnet18", 2, 40, 36);
    st_model *m = st_model_create(be, &cfg, 9);
    TEST_CHECK(m != NULL, "tv_resnet18: %s", st_error_get());
    if (!m) return;
    size_t n_in = st_numel(m->input), nf = st_numel(m->features);
    float *x = malloc(n_in * sizeof(float)), *full = malloc(nf * sizeof(float)), *one = malloc(nf * sizeof(float));
    for (size_t i = 0; i < n_in; i++) x[i] = (float)cos(0.11 * (double)i);
    be->upload(be, m->input.data, x, n_in * sizeof(float));
    st_model_forward(m, 2, 0);
    be->download(be, full, m->features.data, nf * sizeof(float));
    st_model_forward(m, 1, 0);
    be->download(be, one, m->features.data, nf / 2 * sizeof(float));
    /* same kernels on the same rows; only the batch-size dependent blocking of the conv
     * library may change the summation order, hence a float32 rounding tolerance */
    TEST_CLOSE("n=1 vs n=2 first row", one, full, nf / 2, 1e-5, 1e-4);
    free(x);
    free(full);
    free(one);
    st_model_free(m);
}

/* An inference model keeps the freeze_until layer's output: it equals the same layer of a
 * training model (unfolded BN) with the same weights. Other trunk outputs are not kept. */
static void check_layer_output(st_backend *be) {
    st_model_config cfg = base_config("tv_resnet18", 2, 48, 40);
    cfg.freeze_until = "conv4_block2_out";
    st_model *infer = st_model_create(be, &cfg, 11);
    cfg.freeze_until = NULL;
    cfg.training = 1;
    st_model *train = st_model_create(be, &cfg, 11);
    TEST_CHECK(infer && train, "tv_resnet18: %s", st_error_get());
    if (infer && train) {
        int idx = st_model_layer_index(infer, "conv4_block2_out");
        st_tensor a = st_model_layer_output(infer, idx), b = st_model_layer_output(train, idx);
        TEST_CHECK(a.data && b.data && a.h == 3 && a.w == 3 && a.c == 256,
                   "conv4_block2_out not kept or wrong shape (%d, %d, %d)", a.h, a.w, a.c);
        TEST_CHECK(st_model_layer_output(infer, st_model_layer_index(infer, "conv3_block1_out")).data == NULL,
                   "inference model keeps conv3_block1_out");
        size_t n_in = st_numel(infer->input), n = st_numel(a);
        float *x = malloc(n_in * sizeof(float)), *ha = malloc(n * sizeof(float)), *hb = malloc(n * sizeof(float));
        for (size_t i = 0; i < n_in; i++) x[i] = (float)sin(0.05 * (double)i);
        be->upload(be, infer->input.data, x, n_in * sizeof(float));
        be->upload(be, train->input.data, x, n_in * sizeof(float));
        st_model_forward(infer, 2, 0);
        st_model_forward(train, 2, 0);
        if (a.data && b.data) {
            be->download(be, ha, a.data, n * sizeof(float));
            be->download(be, hb, b.data, n * sizeof(float));
            /* folded vs separate BN: float32 rounding of the folded weights, ~1e-6 relative */
            double err = test_rel_error(ha, hb, n);
            TEST_CHECK(err < 1e-4, "conv4_block2_out folded vs unfolded: relative error %.3g", err);
        }
        free(x);
        free(ha);
        free(hb);
    }
    st_model_free(infer);
    st_model_free(train);
}

/* Freezing only conv1_conv changes no forward value (conv1_bn still uses batch statistics), so
 * every other gradient must equal the unfrozen model's: this checks that backward stops at the
 * delimiting layer without losing anything above it (conv1_bn's input gradient goes nowhere). */
static void check_stop_at_delimiter(st_backend *be) {
    const char *freeze[2] = {"none", "conv1_conv"};
    st_model *m[2];
    for (int k = 0; k < 2; k++) {
        st_model_config cfg = base_config("tv_resnet18", 2, 32, 32);
        cfg.training = 1;
        cfg.freeze_until = freeze[k];
        m[k] = st_model_create(be, &cfg, 21);
        TEST_CHECK(m[k] != NULL, "freeze %s: %s", freeze[k], st_error_get());
    }
    if (m[0] && m[1]) {
        size_t n_in = st_numel(m[0]->input), nf = st_numel(m[0]->features);
        float *x = malloc(n_in * sizeof(float)), *df = malloc(nf * sizeof(float));
        for (size_t i = 0; i < n_in; i++) x[i] = (float)sin(0.21 * (double)i);
        for (size_t i = 0; i < nf; i++) df[i] = (float)cos(0.13 * (double)i);
        for (int k = 0; k < 2; k++) {
            be->upload(be, m[k]->input.data, x, n_in * sizeof(float));
            st_model_forward(m[k], 2, 1);
            be->upload(be, m[k]->d_features.data, df, nf * sizeof(float));
            st_model_backward(m[k], 2);
        }
        int compared = 0;
        for (int i = 0; i < m[1]->n_params; i++) {
            const st_param *a = &m[0]->params[i], *b = &m[1]->params[i];
            if (strcmp(a->layer, "conv1_conv") == 0) {
                TEST_CHECK(a->grad && !b->grad, "conv1_conv/%s gradient slots", a->weight);
                continue;
            }
            if (!a->grad) continue;
            TEST_CHECK(b->grad != NULL, "%s/%s lost its gradient", b->layer, b->weight);
            if (!b->grad) continue;
            float *ga = malloc(a->numel * sizeof(float)), *gb = malloc(a->numel * sizeof(float));
            st_param_download(m[0], a, a->grad, ga);
            st_param_download(m[1], b, b->grad, gb);
            /* same kernels on the same values in the same order: equal up to the conv
             * library's run-to-run rounding */
            double err = test_rel_error(gb, ga, a->numel);
            TEST_CHECK(err < 1e-5, "%s/%s: frozen-conv1 gradient differs by %.3g", a->layer, a->weight, err);
            compared++;
            free(ga);
            free(gb);
        }
        TEST_CHECK(compared == 59, "%d gradients compared, tv_resnet18 has 59 besides conv1_conv", compared);
        free(x);
        free(df);
    }
    st_model_free(m[0]);
    st_model_free(m[1]);
}

/* Same seed, same weights; another seed, other weights; He-normal scale on a conv kernel. */
static void check_init(st_backend *be) {
    st_model_config cfg = base_config("tv_resnet18", 1, 32, 32);
    st_model *a = st_model_create(be, &cfg, 5), *b = st_model_create(be, &cfg, 5),
             *c = st_model_create(be, &cfg, 6);
    TEST_CHECK(a && b && c, "tv_resnet18: %s", st_error_get());
    if (a && b && c) {
        const st_param *pa = st_model_find_param(a, "conv3_block1_2_conv", "kernel");
        const st_param *pb = st_model_find_param(b, "conv3_block1_2_conv", "kernel");
        const st_param *pc = st_model_find_param(c, "conv3_block1_2_conv", "kernel");
        size_t n = pa->numel; /* (3, 3, 128, 128) */
        float *wa = malloc(n * sizeof(float)), *wb = malloc(n * sizeof(float)), *wc = malloc(n * sizeof(float));
        st_param_download(a, pa, pa->value, wa);
        st_param_download(b, pb, pb->value, wb);
        st_param_download(c, pc, pc->value, wc);
        TEST_CHECK(memcmp(wa, wb, n * sizeof(float)) == 0, "same seed gave different weights");
        TEST_CHECK(memcmp(wa, wc, n * sizeof(float)) != 0, "seeds 5 and 6 gave the same weights");
        double sum = 0, sq = 0;
        for (size_t i = 0; i < n; i++) {
            sum += wa[i];
            sq += (double)wa[i] * wa[i];
        }
        double mean = sum / (double)n, std = sqrt(sq / (double)n - mean * mean);
        double he = sqrt(2.0 / (3 * 3 * 128));
        /* 147456 samples: the sample std is within ~0.2% of the true one, the mean within
         * 3e-3 std; 2% and 1% leave room without hiding a wrong fan-in (factor >= 1.7) */
        TEST_CHECK(fabs(std / he - 1.0) < 0.02 && fabs(mean) < 0.01 * he,
                   "He normal: std %.5f (expected %.5f), mean %.2g", std, he, mean);
        free(wa);
        free(wb);
        free(wc);
    }
    st_model_free(a);
    st_model_free(b);
    st_model_free(c);
}

/* Host (file layout) -> device -> host is the identity for one buffer of p's storage. */
static int round_trips(const st_model *m, const st_param *p, float *device) {
    float *host = malloc(p->numel * sizeof(float)), *back = malloc(p->numel * sizeof(float));
    for (size_t i = 0; i < p->numel; i++) host[i] = (float)(2.0 * test_uniform() - 1.0);
    st_param_upload(m, p, host, device);
    st_param_download(m, p, device, back);
    int same = memcmp(host, back, p->numel * sizeof(float)) == 0;
    free(host);
    free(back);
    return same;
}

/* Every parameter of a training model with a head, values and gradients. */
static void check_param_copies(st_backend *be) {
    st_model_config cfg = base_config("tv_resnet18", 2, 32, 32);
    cfg.training = 1;
    cfg.embed_dim = 8;
    cfg.num_classes = 3;
    st_model *m = st_model_create(be, &cfg, 3);
    TEST_CHECK(m != NULL, "tv_resnet18: %s", st_error_get());
    if (!m) return;
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        TEST_CHECK(st_param_storage_numel(m, p) >= p->numel, "%s/%s: storage %zu < numel %zu",
                   p->layer, p->weight, st_param_storage_numel(m, p), p->numel);
        TEST_CHECK(round_trips(m, p, p->value), "%s/%s: value does not round-trip", p->layer,
                   p->weight);
        if (p->grad)
            TEST_CHECK(round_trips(m, p, p->grad), "%s/%s: gradient buffer does not round-trip",
                       p->layer, p->weight);
    }
    st_model_free(m);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    TEST_CHECK(be != NULL, "cpu backend: %s", st_error_get());
    if (!be) return test_finish("test_resnet_model");
    check_names(be);
    check_counts(be);
    check_sizes(be);
    check_bad_configs(be);
    check_freeze(be);
    check_init(be);
    check_layer_output(be);
    check_stop_at_delimiter(be);
    check_param_copies(be);
    st_backend_close(be);
    return test_finish("test_resnet_model");
}
