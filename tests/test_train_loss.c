/*
 * test_train_loss.c: the trainer's loss layer (train/loss.c) on a hand-built st_model whose
 * head tensors live in CPU backend memory, so it runs without the ResNet builder:
 *   - cross-entropy on logits: the B.7 example rows, mean over n < batch rows, accuracy, rows
 *     past n untouched;
 *   - triplet on the embedding: the worked example of docs/algorithms.md B.5 through the layer;
 *   - triplet on pooled features with normalize = 1: finite differences through the
 *     normalisation and the gradient's orthogonality to each row;
 *   - steps recorded on the device and read together (st_loss_record, st_loss_read) give
 *     bit for bit the stats of each step computed and read alone (st_loss_compute), for both
 *     losses, oldest first; a second read returns nothing;
 *   - configs the model cannot serve are refused with a message.
 */
#include <stdint.h>

#include "kernels/check.h"
#include "test_util.h"
#include "train/loss.h"

static st_tensor device_tensor(st_backend *be, int n, int c) {
    st_tensor t = st_tensor_4d(n, 1, 1, c);
    t.data = be->alloc(be, sizeof(float) * (size_t)n * c);
    return t;
}

static st_model fake_model(st_backend *be, int batch, int features, int embed, int classes) {
    st_model m;
    memset(&m, 0, sizeof m);
    m.backend = be;
    m.config.batch = batch;
    m.config.embed_dim = embed;
    m.config.num_classes = classes;
    m.feature_dim = features;
    m.features = device_tensor(be, batch, features);
    m.d_features = device_tensor(be, batch, features);
    if (embed > 0) {
        m.embedding = device_tensor(be, batch, embed);
        m.d_embedding = device_tensor(be, batch, embed);
    }
    if (classes > 0) {
        m.logits = device_tensor(be, batch, classes);
        m.d_logits = device_tensor(be, batch, classes);
    }
    return m;
}

static void free_fake_model(st_model *m) {
    st_tensor *all[] = {&m->features, &m->d_features, &m->embedding, &m->d_embedding, &m->logits,
                        &m->d_logits};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->data) m->backend->free(m->backend, all[i]->data);
}

/* Rows (2,1,0) y=0 and (0,1,2) y=0 of a batch of 4, n = 2: losses 0.407606 and 2.407606
 * (B.7 and its mirror), mean 1.407606; gradient rows = (softmax - onehot) / 2; accuracy 1/2.
 * Hand values have 6 decimals: atol 1e-6. */
static void xent_through_layer(st_backend *be) {
    st_model m = fake_model(be, 4, 3, 0, 3);
    const float logits[12] = {2, 1, 0, 0, 1, 2, 9, 9, 9, 9, 9, 9};
    const float sentinel[12] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
    be->upload(be, m.logits.data, logits, sizeof logits);
    be->upload(be, m.d_logits.data, sentinel, sizeof sentinel);
    st_loss_config cfg = {.kind = ST_LOSS_XENT};
    st_loss *loss = st_loss_create(&m, &cfg);
    TEST_CHECK(loss != NULL, "xent loss create: %s", st_error_get());
    const int32_t labels[2] = {0, 0};
    st_loss_stats s = st_loss_compute(loss, 2, labels);
    TEST_CHECK(fabsf(s.loss - 1.407606f) <= 1e-6f, "xent mean loss %.7f, want 1.407606", s.loss);
    TEST_CHECK(s.accuracy == 0.5f, "xent accuracy %g, want 0.5", s.accuracy);
    TEST_CHECK(strcmp(st_loss_input_layer(loss), "predictions") == 0, "xent input layer");
    float grad[12];
    be->download(be, grad, m.d_logits.data, sizeof grad);
    const float want[6] = {-0.334759f / 2, 0.244728f / 2, 0.090031f / 2,
                           (0.090031f - 1) / 2, 0.244728f / 2, 0.665241f / 2};
    TEST_CLOSE("xent gradient rows", grad, want, 6, 1e-6, 0);
    TEST_CLOSE("xent rows past n untouched", grad + 6, sentinel + 6, 6, 0, 0);
    st_loss_free(loss);
    free_fake_model(&m);
}

/* B.5 through the layer: embedding (4, 2), hinge m = 0.2: loss 0.9 and the table's gradient
 * (atol 1e-6 as in tests/test_loss_kernels.c); no classifier: accuracy -1. */
static void triplet_on_embedding(st_backend *be) {
    st_model m = fake_model(be, 4, 16, 2, 0);
    const float emb[8] = {0, 0, 1, 0, 0, 2, 1.5f, 0};
    const float want[8] = {-0.25f, 0.25f, 0.75f, 0, -0.30f, 0.15f, -0.20f, -0.40f};
    be->upload(be, m.embedding.data, emb, sizeof emb);
    st_loss_config cfg = {.kind = ST_LOSS_TRIPLET, .margin = 0.2f};
    st_loss *loss = st_loss_create(&m, &cfg);
    const int32_t labels[4] = {0, 0, 1, 1};
    st_loss_stats s = st_loss_compute(loss, 4, labels);
    TEST_CHECK(fabsf(s.loss - 0.9f) <= 1e-6f, "triplet layer loss %.7f, want 0.9", s.loss);
    TEST_CHECK(s.accuracy == -1.0f && s.active_fraction == 0.75f,
               "triplet layer stats: accuracy %g (want -1), active %g (want 0.75)", s.accuracy,
               s.active_fraction);
    TEST_CHECK(strcmp(st_loss_input_layer(loss), "embedding_norm") == 0, "triplet input layer");
    float grad[8];
    be->download(be, grad, m.d_embedding.data, sizeof grad);
    TEST_CLOSE("triplet layer gradient", grad, want, 8, 1e-6, 0);
    st_loss_free(loss);
    free_fake_model(&m);
}

/* Soft-margin batch hard on L2-normalised features. Central differences with h = 1e-3 on a
 * float32 loss of order 1: rounding ~6e-8 / 1e-3 per component plus O(h^2) truncation, a
 * relative error by norm of ~1e-3 on gradients of ~0.05; bound 1e-2. The normalisation's
 * Jacobian (I - y y^T) / ||x|| makes each gradient row orthogonal to its input row:
 * |<dx_i, x_i>| <= 1e-5 * ||dx_i|| ||x_i|| (float32 dot products of 8 terms). */
static void triplet_on_normalized_features(st_backend *be) {
    enum { N = 8, C = 5 };
    st_model m = fake_model(be, N, C, 0, 0);
    float x[N * C], grad[N * C], numeric[N * C];
    for (int i = 0; i < N * C; i++) x[i] = (float)sin(1.7 * i + 0.3) * 2.0f + 0.5f;
    const int32_t labels[N] = {0, 1, 2, 3, 0, 1, 2, 3};
    st_loss_config cfg = {.kind = ST_LOSS_TRIPLET, .soft_margin = 1, .normalize = 1};
    st_loss *loss = st_loss_create(&m, &cfg);
    TEST_CHECK(strcmp(st_loss_input_layer(loss), "avg_pool") == 0, "features input layer");
    be->upload(be, m.features.data, x, sizeof x);
    st_loss_stats s = st_loss_compute(loss, N, labels);
    TEST_CHECK(s.mean_pos > 0 && s.mean_pos <= 2.0f && s.mean_neg <= 2.0f,
               "normalised distances lie in [0, 2]: %g %g", s.mean_pos, s.mean_neg);
    be->download(be, grad, m.d_features.data, sizeof grad);
    const float h = 1e-3f;
    for (int i = 0; i < N * C; i++) {
        float keep = x[i], sides[2];
        for (int side = 0; side < 2; side++) {
            x[i] = keep + (side ? -h : h);
            be->upload(be, m.features.data, x, sizeof x);
            sides[side] = st_loss_compute(loss, N, labels).loss;
        }
        x[i] = keep;
        numeric[i] = (sides[0] - sides[1]) / (2 * h);
    }
    double rel = test_rel_error(grad, numeric, N * C);
    TEST_CHECK(rel <= 1e-2, "normalised triplet finite differences: rel error %.3g", rel);
    for (int i = 0; i < N; i++) {
        double dot = 0, gg = 0, xx = 0;
        for (int k = 0; k < C; k++) {
            dot += (double)grad[i * C + k] * x[i * C + k];
            gg += (double)grad[i * C + k] * grad[i * C + k];
            xx += (double)x[i * C + k] * x[i * C + k];
        }
        TEST_CHECK(fabs(dot) <= 1e-5 * sqrt(gg * xx) + 1e-12,
                   "row %d: gradient not orthogonal to its input (%.3g)", i, dot);
    }
    st_loss_free(loss);
    free_fake_model(&m);
}

/* STEPS batches of different inputs in *input: recorded one after the other and read in one
 * call, versus the same batches computed one at a time. Same ops on the same inputs in the same
 * order, so the stats must be equal exactly (no tolerance). */
static void batched_read_matches(const char *what, st_model *m, const st_loss_config *cfg,
                                 const st_tensor *input, const int32_t *labels, int n) {
    enum { STEPS = 5 };
    st_backend *be = m->backend;
    const size_t count = (size_t)n * input->c;
    float *x = malloc(sizeof(float) * count);
    st_loss *loss = st_loss_create(m, cfg);
    TEST_CHECK(loss != NULL, "%s: create: %s", what, st_error_get());
    st_loss_stats alone[STEPS];
    for (int pass = 0; pass < 2; pass++)
        for (int step = 0; step < STEPS; step++) {
            for (size_t i = 0; i < count; i++) x[i] = (float)sin(0.9 * i + 2.1 * step) * (1 + step);
            be->upload(be, input->data, x, sizeof(float) * count);
            if (pass == 0) {
                alone[step] = st_loss_compute(loss, n, labels);
                continue;
            }
            int pending = st_loss_record(loss, n, labels);
            TEST_CHECK(pending == step + 1, "%s: %d steps pending after %d", what, pending, step + 1);
        }
    const st_loss_stats *read;
    int got = st_loss_read(loss, &read);
    TEST_CHECK(got == STEPS, "%s: read %d steps, recorded %d", what, got, STEPS);
    for (int i = 0; i < got && i < STEPS; i++)
        TEST_CHECK(read[i].loss == alone[i].loss && read[i].accuracy == alone[i].accuracy &&
                       read[i].active_fraction == alone[i].active_fraction &&
                       read[i].mean_pos == alone[i].mean_pos && read[i].mean_neg == alone[i].mean_neg &&
                       read[i].rows == n,
                   "%s step %d: read together loss %.9g acc %g active %g rows %d, alone %.9g %g %g", what, i,
                   read[i].loss, read[i].accuracy, read[i].active_fraction, read[i].rows, alone[i].loss,
                   alone[i].accuracy, alone[i].active_fraction);
    TEST_CHECK(alone[0].loss != alone[1].loss, "%s: the steps must differ to tell their order", what);
    TEST_CHECK(st_loss_read(loss, &read) == 0, "%s: a second read must find nothing", what);
    st_loss_free(loss);
    free(x);
}

static void batched_reads(st_backend *be) {
    st_model xm = fake_model(be, 6, 3, 0, 4);
    const int32_t xlabels[6] = {0, 1, 2, 3, 1, 2};
    st_loss_config xent = {.kind = ST_LOSS_XENT, .label_smoothing = 0.1};
    batched_read_matches("xent", &xm, &xent, &xm.logits, xlabels, 6);
    free_fake_model(&xm);
    st_model tm = fake_model(be, 6, 4, 3, 0);
    const int32_t tlabels[6] = {0, 0, 1, 1, 2, 2};
    st_loss_config triplet = {.kind = ST_LOSS_TRIPLET, .margin = 0.2};
    batched_read_matches("triplet", &tm, &triplet, &tm.embedding, tlabels, 6);
    free_fake_model(&tm);
}

static void refused_configs(st_backend *be) {
    st_model m = fake_model(be, 4, 8, 0, 0);
    st_loss_config xent = {.kind = ST_LOSS_XENT};
    TEST_CHECK(st_loss_create(&m, &xent) == NULL && strstr(st_error_get(), "classifier"),
               "xent without a classifier must be refused, message: %s", st_error_get());
    st_loss_config no_margin = {.kind = ST_LOSS_TRIPLET, .margin = 0.0f};
    TEST_CHECK(st_loss_create(&m, &no_margin) == NULL && strstr(st_error_get(), "margin"),
               "hinge with margin 0 must be refused, message: %s", st_error_get());
    free_fake_model(&m);
    st_model with_classifier = fake_model(be, 4, 8, 0, 3);
    st_loss_config triplet = {.kind = ST_LOSS_TRIPLET, .soft_margin = 1};
    TEST_CHECK(st_loss_create(&with_classifier, &triplet) == NULL &&
                   strstr(st_error_get(), "num_classes"),
               "triplet on a model with a classifier must be refused: %s", st_error_get());
    free_fake_model(&with_classifier);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 1);
    ST_CHECK(be, "cpu backend: %s", st_error_get());
    xent_through_layer(be);
    triplet_on_embedding(be);
    triplet_on_normalized_features(be);
    batched_reads(be);
    refused_configs(be);
    st_backend_close(be);
    return test_finish("test_train_loss");
}
