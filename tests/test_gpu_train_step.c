/*
 * test_gpu_train_step.c: one whole training step of a ResNet on the CUDA backend against the
 * same step on the CPU backend (the GPU issue's parity test; tests/test_gpu_ops.c checks the ops
 * one by one, this checks how the model, the loss layer and the optimizer drive them).
 *
 * Cases: tv_resnet18 and resnet50v2 at 64x64, batch 4; freeze_until none and the last layer of
 * conv3 (frozen conv+BN folded, BN in inference mode below, batch statistics above); three heads:
 * classifier 5 on the pooled features (cross-entropy, label smoothing 0.1), embedding 16 + L2 +
 * classifier 5 (cross-entropy), embedding 16 alone (batch-hard triplet, P = 2 identities x K = 2,
 * margin 0.5). Both models come from the same seed (checked bit-identical); the CPU model's
 * gamma, beta, biases and moving statistics are then randomised (so BN folding and biases are
 * not trivial), its residual branches damped (randomize_parameters says why), and every
 * parameter is copied into the CUDA model by (layer, weight). One step on each backend from the
 * same random input and labels:
 *   forward (training)           every materialised layer output and its ReLU zero pattern
 *                                (check_forward); the loss; BN moving statistics (frozen ones
 *                                must not move)
 *   backward                     every trainable parameter's gradient, the same frozen set
 *   SGD, momentum 0.9            global gradient norm; the update (after - before) per tensor,
 *                                frozen tensors untouched; each backend from its own gradients
 *   Adam (wd 1e-4, clip 1.0)     from the SAME gradients (the CPU's, uploaded to the device) and
 *                                the same parameters: the updated parameters element by element.
 *                                Adam's first step is lr * g / (|g| + eps), about lr * sign(g): a
 *                                gradient element at rounding-noise level (an analytically zero
 *                                conv bias ahead of a batch-statistics BN, or a near-cancelling
 *                                element) flips sign between two correct backends, so it is fed
 *                                identical gradients, as test_gpu_ops feeds backward ops
 *                                identical forward results.
 * ReLU kinks: an activation within rounding of 0 can be clamped on one backend only; the
 * gradient of every layer below then differs by one element of dy, ~1e-2 relative in a conv5
 * tensor (measured). Such an input is replaced by a fresh random one (up to MAX_ATTEMPTS); if all
 * flip, only the parameters above the highest flipped layer are compared (and it is printed).
 * A zero-pattern difference away from 0 is a failure.
 *
 * Tolerances (why each value; TF32 is off: the test sets SIMTUNE_CUDA_MATH=fp32). Measured with
 * `noisy-cpu` (gpu_parity.h: 1e-6 relative noise, ~10 ulp, on every conv output, forward and
 * backward): largest gradient / update error 3e-4; 3 of 12 cases (resnet50v2) needed another input, one
 * of them flipped in all 4 and was compared above conv2_block2_preact_relu.
 *   GRAD_TOL 1e-3    relative error by norm per gradient tensor and per SGD update. cuDNN and
 *                    oneDNN pick different algorithms, so every conv and BN reduction sums in a
 *                    different order: per op ~1e-6 typical, 5e-5 worst (test_gpu_ops). Through
 *                    the up to ~50 layers of backward these compound and BN backward with batch
 *                    statistics over few rows (conv5: 2x2 x 4 images = 16 rows) amplifies them:
 *                    3e-4 measured from 1e-6 noise; on the CPU alone the float32 gradients differ
 *                    from float64 PyTorch by up to 2e-4 (test_resnet_parity). 1e-3 is the
 *                    issue's gradient bound of the PyTorch parity test. A real bug (wrong BN
 *                    mode, missing residual term, transposed filter, wrong lr group) gives
 *                    errors >= 1e-2. A conv bias followed only by batch-statistics BNs has an
 *                    exact gradient of 0: both backends hold rounding noise there, so it is
 *                    measured against its layer's kernel gradient norm instead (tensor_error).
 *   FORWARD_TOL 1e-3 by norm per layer output: 1e-6 noise per conv grows to 1e-4 in conv5 of an
 *                    undamped resnet50v2 (measured); damped, far less. A wrong op gives >= 1e-2.
 *   LOSS_TOL 1e-3    relative: the loss follows the logits / embedding at the forward error
 *                    above; the triplet loss (differences of distances) amplified 1e-6 noise to
 *                    7e-5 relative undamped.
 *   MOVING_TOL 1e-4  by norm: moving statistics = 0.9 old + 0.1 batch statistics of forward
 *                    activations: the forward error scaled down by 0.1 (variance doubles it).
 *   ADAM 1e-5 rel + 1e-7 abs elementwise: identical inputs, one step of the shared per-element
 *                    formula (test_gpu_ops TOL_OPT: FMA contraction and sqrtf ulps, amplified
 *                    by Adam's division); the clip factor comes from double sums of squares in
 *                    different orders (~1e-15 relative).
 *
 * Usage: test_gpu_train_step [BACKEND]  BACKEND defaults to cuda. Exits 77 (skipped) when
 * st_backend_open fails: no device, or a build without CUDA; a missing device is not a missing
 * oracle, so this skip stands even under SIMTUNE_REQUIRE_ORACLES=1. `cpu` runs the harness
 * against a second CPU backend (a check of this file: every difference is 0); `noisy-cpu` runs
 * it against a CPU backend whose convolutions add ~1e-6 relative noise to every output, a
 * stand-in for a second backend with other summation orders, to show the tolerances hold on
 * machines without a GPU. Labelled `gpu` (tests/gpu_train_step.cmake). ~25 s on 2 cores, almost
 * all of it the CPU side.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/check.h"
#include "gpu_parity.h"
#include "test_util.h"
#include "infer/model/model.h"
#include "train/loss.h"
#include "train/optim.h"

enum { BATCH = 4, SIDE = 64, CLASSES = 5, EMBED = 16, SEED = 7 };

static const double GRAD_TOL = 1e-3;
static const double LOSS_TOL = 1e-3;
static const double MOVING_TOL = 1e-4;
static const double FORWARD_TOL = 1e-3;
enum { MAX_ATTEMPTS = 4 };
static const double ADAM_RTOL = 1e-5, ADAM_ATOL = 1e-7;
static const float SGD_LR = 0.05f, ADAM_LR = 1e-3f;

static st_backend *ref; /* CPU backend, the reference */
static st_backend *dev; /* backend under test */


/* ---- model setup ----------------------------------------------------------------------- */

typedef struct step_case {
    const char *arch;
    const char *freeze;   /* freeze_until: "none" or a layer name */
    int embed_dim;        /* 0 or EMBED */
    int num_classes;      /* 0 or CLASSES */
    st_loss_kind loss;
} step_case;

static st_model *create_model(st_backend *be, const step_case *c) {
    st_model_config cfg = {.arch = c->arch, .batch = BATCH, .height = SIDE, .width = SIDE,
                           .training = 1, .freeze_until = c->freeze, .pool = ST_GPOOL_AVG,
                           .gem_p = 3.0f, .embed_dim = c->embed_dim,
                           .num_classes = c->num_classes, .bn_momentum = 0.1f};
    st_model *m = st_model_create(be, &cfg, SEED);
    ST_CHECK(m, "%s: st_model_create on %s: %s", c->arch, be->name, st_error_get());
    return m;
}


/* ---- comparisons ----------------------------------------------------------------------- */


/* After the training forward: updated from batch statistics like the CPU's, except in frozen
 * layers (inference-mode BN), where they must not move at all. */
static void check_moving_statistics(st_model *mr, st_model *md, float **before,
                                    const char *what) {
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i];
        if (strncmp(p->weight, "moving_", 7) != 0) continue;
        st_param *q = twin_param(md, p, what);
        float *want = download(ref, p->value, p->numel), *got = download(dev, q->value, q->numel);
        double err = test_rel_error(got, want, p->numel);
        TEST_CHECK(err <= MOVING_TOL, "%s: %s/%s after the forward: relative error %.3g > %.3g",
                   what, p->layer, p->weight, err, MOVING_TOL);
        if (p->layer_index <= mr->freeze_index)
            TEST_CHECK(memcmp(got, before[i], p->numel * sizeof(float)) == 0,
                       "%s: %s/%s of a frozen layer moved", what, p->layer, p->weight);
        free(want);
        free(got);
    }
}

/* SGD with momentum from each backend's own gradients: the update after - before per tensor
 * (an error of the update is lr times the gradient's, so GRAD_TOL applies); frozen tensors and
 * moving statistics untouched, bit for bit. Weight decay on kernels only: a decayed bias would
 * hide its (possibly zero) gradient behind lr * wd * b. */
static void check_sgd_step(st_model *mr, st_model *md, float **before, int kink_layer,
                           const char *what) {
    st_optim_config oc = st_optim_config_default(ST_OPT_SGD);
    oc.momentum = 0.9f;
    oc.weight_decay = 1e-4f;
    oc.decay_norm_and_bias = 0;
    oc.head_lr_mult = 10.0f;
    st_optimizer *opt_ref = st_optimizer_create(mr, &oc), *opt_dev = st_optimizer_create(md, &oc);
    ST_CHECK(opt_ref && opt_dev, "%s: SGD optimizer: %s", what, st_error_get());
    st_optimizer_step(opt_ref, SGD_LR);
    st_optimizer_step(opt_dev, SGD_LR);
    double norm_ref = st_optimizer_stats(opt_ref).norm, norm_dev = st_optimizer_stats(opt_dev).norm;
    TEST_CHECK(isfinite(norm_ref) && norm_ref > 0, "%s: reference gradient norm %g", what,
               norm_ref);
    TEST_CHECK(fabs(norm_dev - norm_ref) <= GRAD_TOL * norm_ref,
               "%s: global gradient norm %.9g vs %.9g", what, norm_dev, norm_ref);
    tensor_pair t = {ST_MALLOC((size_t)mr->n_params * sizeof(float *)),
                     ST_MALLOC((size_t)mr->n_params * sizeof(float *))};
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i], *q = twin_param(md, p, what);
        float *after_ref = param_download(mr, p, p->value);
        float *after_dev = param_download(md, q, q->value);
        t.want[i] = t.got[i] = NULL;
        if (!p->grad) { /* moving statistics moved in the forward, checked there */
            if (strncmp(p->weight, "moving_", 7) != 0)
                TEST_CHECK(memcmp(after_dev, before[i], p->numel * sizeof(float)) == 0,
                           "%s: SGD changed %s/%s, which has no gradient", what, p->layer,
                           p->weight);
            free(after_ref);
            free(after_dev);
            continue;
        }
        for (size_t j = 0; j < p->numel; j++) {
            after_ref[j] -= before[i][j];
            after_dev[j] -= before[i][j];
        }
        t.want[i] = after_ref;
        t.got[i] = after_dev;
    }
    char label[200];
    snprintf(label, sizeof label, "%s SGD update", what);
    check_tensor_pairs(mr, t, kink_layer, GRAD_TOL, label);
    free_pairs(t, mr->n_params);
    st_optimizer_free(opt_ref);
    st_optimizer_free(opt_dev);
}

/* Adam from identical parameters and gradients (the CPU's): updated values element by element. */
static void check_adam_step(st_model *mr, st_model *md, float **before, const char *what) {
    restore_values(mr, mr, before, what);
    restore_values(md, mr, before, what);
    copy_gradients(mr, md, what);
    st_optim_config oc = st_optim_config_default(ST_OPT_ADAM);
    oc.weight_decay = 1e-4f;
    oc.clip_norm = 1.0f;
    oc.head_lr_mult = 10.0f;
    st_optimizer *opt_ref = st_optimizer_create(mr, &oc), *opt_dev = st_optimizer_create(md, &oc);
    ST_CHECK(opt_ref && opt_dev, "%s: Adam optimizer: %s", what, st_error_get());
    st_optimizer_step(opt_ref, ADAM_LR);
    st_optimizer_step(opt_dev, ADAM_LR);
    for (int i = 0; i < mr->n_params; i++) {
        st_param *p = &mr->params[i], *q = twin_param(md, p, what);
        float *want = param_download(mr, p, p->value), *got = param_download(md, q, q->value);
        char label[200];
        snprintf(label, sizeof label, "%s Adam: %s/%s", what, p->layer, p->weight);
        TEST_CLOSE(label, got, want, p->numel, ADAM_ATOL, ADAM_RTOL);
        if (!p->grad)
            TEST_CHECK(memcmp(got, before[i], p->numel * sizeof(float)) == 0,
                       "%s: Adam changed %s/%s, which has no gradient", what, p->layer, p->weight);
        free(want);
        free(got);
    }
    st_optimizer_free(opt_ref);
    st_optimizer_free(opt_dev);
}


/* ---- one case ---------------------------------------------------------------------------- */

static void run_case(const step_case *c) {
    char what[160];
    snprintf(what, sizeof what, "%s freeze %s embed %d classes %d %s", c->arch, c->freeze,
             c->embed_dim, c->num_classes, c->loss == ST_LOSS_XENT ? "xent" : "triplet");
    st_model *mr = create_model(ref, c), *md = create_model(dev, c);
    check_same_init(mr, md, what);
    randomize_parameters(mr);
    copy_params_by_name(md, mr, what);
    float **before = snapshot_values(mr); /* indexed like mr->params */

    st_loss_config lc = {.kind = c->loss, .label_smoothing = 0.1f, .margin = 0.5f};
    if (c->loss == ST_LOSS_TRIPLET) lc.label_smoothing = 0;
    st_loss *lr = st_loss_create(mr, &lc), *ld = st_loss_create(md, &lc);
    ST_CHECK(lr && ld, "%s: st_loss_create: %s", what, st_error_get());
    static const int32_t class_labels[BATCH] = {1, 4, 0, 2};
    static const int32_t identity_labels[BATCH] = {3, 3, 8, 8}; /* P = 2 identities x K = 2 */
    const int32_t *labels = c->loss == ST_LOSS_XENT ? class_labels : identity_labels;

    /* A random input whose forward flips no ReLU near zero between the backends, so every
     * gradient can be compared; after MAX_ATTEMPTS the layers below the flip are left out. */
    size_t n_in = (size_t)BATCH * SIDE * SIDE * 3;
    float *images = ST_MALLOC(n_in * sizeof *images); /* preprocessed input, NHWC */
    int kink_layer = -1;
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        if (attempt) { /* the forward moved the BN statistics: start again from the snapshot */
            restore_values(mr, mr, before, what);
            restore_values(md, mr, before, what);
        }
        for (size_t i = 0; i < n_in; i++) images[i] = urand(-1.5f, 1.5f);
        ref->upload(ref, mr->input.data, images, n_in * sizeof(float));
        dev->upload(dev, md->input.data, images, n_in * sizeof(float));
        st_model_forward(mr, BATCH, 1);
        st_model_forward(md, BATCH, 1);
        kink_layer = check_forward(mr, md, BATCH, FORWARD_TOL, what);
        if (kink_layer < 0) break;
        printf("%s: input %d flips a ReLU near 0 in %s\n", what, attempt,
               st_model_layer_name(mr, kink_layer));
    }
    if (kink_layer >= 0)
        printf("%s: gradients compared above %s only\n", what,
               st_model_layer_name(mr, kink_layer));
    free(images);

    st_loss_stats sr = st_loss_compute(lr, BATCH, labels), sd = st_loss_compute(ld, BATCH, labels);
    TEST_CHECK(isfinite(sr.loss) && sr.loss > 0, "%s: reference loss %g", what, sr.loss);
    TEST_CHECK(fabs(sd.loss - sr.loss) <= LOSS_TOL * fabs(sr.loss), "%s: loss %.9g vs %.9g",
               what, sd.loss, sr.loss);
    check_moving_statistics(mr, md, before, what);

    st_model_backward(mr, BATCH);
    st_model_backward(md, BATCH);
    check_gradients(mr, md, kink_layer, GRAD_TOL, what);
    check_sgd_step(mr, md, before, kink_layer, what);
    check_adam_step(mr, md, before, what);
    printf("%s: loss %.6f (cpu) %.6f (%s)\n", what, sr.loss, sd.loss, dev->name);

    free_snapshot(before, mr->n_params);
    st_loss_free(lr);
    st_loss_free(ld);
    st_model_free(mr);
    st_model_free(md);
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "cuda";
    unsetenv("SIMTUNE_CUDA_TF32");          /* replaced: the backend refuses to open with it */
    setenv("SIMTUNE_CUDA_MATH", "fp32", 1); /* the tolerances assume plain FP32 */
    if (strcmp(name, "noisy-cpu") == 0) {
        dev = open_noisy_cpu();
    } else {
        dev = st_backend_open(name, 0);
        if (!dev) /* no device: a skip even under SIMTUNE_REQUIRE_ORACLES (see the header) */
            test_skip_no_gpu(st_error_get()); /* a failure under SIMTUNE_REQUIRE_GPU=1 */
    }
    ref = st_backend_open("cpu", 2);
    ST_CHECK(ref, "cpu backend: %s", st_error_get());

    static const char *archs[2][2] = {{"tv_resnet18", "conv3_block2_out"},
                                      {"resnet50v2", "conv3_block4_out"}};
    const step_case heads[3] = {{NULL, NULL, 0, CLASSES, ST_LOSS_XENT},
                                {NULL, NULL, EMBED, CLASSES, ST_LOSS_XENT},
                                {NULL, NULL, EMBED, 0, ST_LOSS_TRIPLET}};
    for (int a = 0; a < 2; a++) {
        for (int f = 0; f < 2; f++) {
            for (int h = 0; h < 3; h++) {
                step_case c = heads[h];
                c.arch = archs[a][0];
                c.freeze = f ? archs[a][1] : "none";
                run_case(&c);
            }
        }
    }
    printf("largest gradient / update error: %.3g (%s), tolerance %.3g\n", parity_worst_error,
           parity_worst_where, GRAD_TOL);
    st_backend_close(ref);
    if (dev == &noisy_backend)
        st_backend_close(noisy_inner);
    else
        st_backend_close(dev);
    return test_finish("test_gpu_train_step");
}
