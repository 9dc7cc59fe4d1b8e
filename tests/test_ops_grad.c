/*
 * test_ops_grad.c: finite-difference checks of every differentiable CPU backend op.
 *
 * For each op the scalar loss is L = sum(y * g) with g random (so dL/dy = g), accumulated in
 * double; each input element v is nudged by +-h and (L(v+h) - L(v-h)) / (2h) is compared with
 * the op's backward by relative error over the whole gradient (norm ratio).
 *
 * Why the tolerance is 1e-3 everywhere: the ops compute in float, so L carries rounding noise of
 * ~6e-8 * sqrt(numel) * |y g| ~ 1e-7 here, i.e. ~1e-5 of a gradient entry after dividing by 2h
 * for the smallest step (h = 1e-2). Linear ops (conv, dense, avg pool) have no truncation error
 * and use h = 5e-2; piecewise-linear ops (ReLU, add, max pools) draw inputs at least 2.5 h away
 * from any kink (values spaced > 2h, |x| > h), so the central difference is exact up to rounding;
 * smooth non-linear ops (batch norm, GeM, L2 norm) have O(h^2) truncation ~1e-4 relative. A wrong
 * gradient (missing term, wrong sign, off-by-one window) gives errors of order 1e-1 .. 1.
 * The backward outputs are pre-filled with NaN, so an op that does not overwrite them fails.
 * Forward results are also checked against direct double loops (conv with asymmetric padding and
 * fused bias/ReLU, BN folding, batch-norm running statistics and inference, gemm transposes) at
 * 1e-5 relative: float accumulation over at most a few hundred terms stays below 1e-6. The
 * memory/BLAS-1 ops are checked exactly on values whose float arithmetic is exact.
 */
#include <math.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "test_util.h"

#define TOL_GRAD 1e-3
#define TOL_FORWARD 1e-5

static st_backend *be;

/* Every buffer is remembered and freed at the end (keeps leak checkers quiet). */
static void **buffers;
static size_t buffer_count, buffer_cap;

static float *buffer(size_t n) {
    if (buffer_count == buffer_cap) {
        buffer_cap = buffer_cap ? 2 * buffer_cap : 256;
        buffers = realloc(buffers, buffer_cap * sizeof *buffers);
        if (!buffers) abort();
    }
    float *p = be->alloc(be, n * sizeof(float));
    buffers[buffer_count++] = p;
    return p;
}

static void free_buffers(void) {
    for (size_t i = 0; i < buffer_count; i++) be->free(be, buffers[i]);
    free(buffers);
}

static float *random_buffer(size_t n, float lo, float hi) {
    float *p = buffer(n);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)test_uniform();
    return p;
}

/* n distinct values, consecutive ones 0.05 apart, none within 0.025 of zero, in random order:
 * max pooling then has a unique winner that a step of h = 1e-2 cannot change. */
static float *distinct_buffer(size_t n) {
    float *p = buffer(n);
    for (size_t i = 0; i < n; i++) p[i] = ((float)i - (float)(n / 2)) * 0.05f + 0.025f;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(test_uniform() * (double)i);
        float t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

static float *nan_buffer(size_t n) {
    float *p = buffer(n);
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static double dot(const float *y, const float *g, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)y[i] * (double)g[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

static char current_op[128]; /* names the op in failure messages */

static void begin_op(const char *what, const char *variant) {
    snprintf(current_op, sizeof current_op, "%s %s", what, variant);
    printf("%s\n", current_op);
}

/* Central differences of loss(ctx) w.r.t. every element of v, compared with grad. */
static void check_grad(const char *name, float *v, const float *grad, size_t n, float h,
                       loss_fn loss, void *ctx) {
    float *numeric = buffer(n);
    for (size_t i = 0; i < n; i++) {
        float keep = v[i];
        float up = keep + h, down = keep - h;
        v[i] = up;
        double loss_up = loss(ctx);
        v[i] = down;
        double loss_down = loss(ctx);
        v[i] = keep;
        numeric[i] = (float)((loss_up - loss_down) / ((double)up - (double)down));
    }
    double err = test_rel_error(grad, numeric, n);
    TEST_CHECK(err <= TOL_GRAD, "%s: %s: relative error %.3g > %.1g", current_op, name, err,
               TOL_GRAD);
    printf("  %-34s rel err %.2e\n", name, err);
}

/* ---- convolution ---------------------------------------------------------------------- */

typedef struct {
    st_conv_desc d;
    st_conv_plan *plan;
    float *x, *w, *bias, *y, *g;
    float *wb; /* w in the backend layout (the ops read it; w is HWIO, as the checks perturb it) */
} conv_case;

static size_t conv_in_size(const st_conv_desc *d) { return (size_t)d->n * d->h * d->w * d->c; }
static size_t conv_out_size(const st_conv_desc *d) { return (size_t)d->n * d->p * d->q * d->k; }
static size_t conv_w_size(const st_conv_desc *d) { return (size_t)d->r * d->s * d->c * d->k; }

static double conv_loss(void *ctx) {
    conv_case *t = ctx;
    be->conv_weights_import(be, t->plan, t->w, t->wb);
    be->conv_forward(be, t->plan, t->x, t->wb, t->bias, t->y);
    return dot(t->y, t->g, conv_out_size(&t->d));
}

/* Direct loops in double: y = relu?(conv(x, w) + bias), explicit top/left padding. */
static void conv_reference(const st_conv_desc *d, const float *x, const float *w,
                           const float *bias, float *y) {
    for (int n = 0; n < d->n; n++)
        for (int op = 0; op < d->p; op++)
            for (int oq = 0; oq < d->q; oq++)
                for (int k = 0; k < d->k; k++) {
                    double acc = bias ? bias[k] : 0.0;
                    for (int r = 0; r < d->r; r++)
                        for (int s = 0; s < d->s; s++) {
                            int ih = op * d->stride_h - d->pad_top + r;
                            int iw = oq * d->stride_w - d->pad_left + s;
                            if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue;
                            for (int c = 0; c < d->c; c++)
                                acc += (double)x[(((size_t)n * d->h + ih) * d->w + iw) * d->c + c] *
                                       w[(((size_t)r * d->s + s) * d->c + c) * d->k + k];
                        }
                    if (d->relu && acc < 0) acc = 0;
                    y[(((size_t)n * d->p + op) * d->q + oq) * d->k + k] = (float)acc;
                }
}

static void test_conv(const char *name, st_conv_desc d, int with_bias) {
    begin_op("conv", name);
    st_conv_desc_finish(&d);
    conv_case t = {.d = d};
    t.x = random_buffer(conv_in_size(&d), -1, 1);
    t.w = random_buffer(conv_w_size(&d), -1, 1);
    t.bias = with_bias ? random_buffer((size_t)d.k, -1, 1) : NULL;
    t.y = buffer(conv_out_size(&d));
    t.g = random_buffer(conv_out_size(&d), -1, 1);
    t.plan = be->conv_plan(be, &t.d);
    TEST_CHECK(be->conv_plan(be, &t.d) == t.plan, "%s: plan not cached", name);
    const size_t nwb = be->conv_weights_numel(be, t.plan);
    t.wb = buffer(nwb);

    float *ref = buffer(conv_out_size(&d));
    conv_loss(&t);
    conv_reference(&d, t.x, t.w, t.bias, ref);
    TEST_CHECK(test_rel_error(t.y, ref, conv_out_size(&d)) <= TOL_FORWARD,
               "%s: forward differs from direct loops (rel %.3g)", name,
               test_rel_error(t.y, ref, conv_out_size(&d)));

    /* the same shape with fused ReLU: a second plan, output = relu(conv + bias) */
    st_conv_desc dr = d;
    dr.relu = 1;
    st_conv_plan *relu_plan = be->conv_plan(be, &dr);
    TEST_CHECK(relu_plan != t.plan, "%s: relu and plain plans must differ", name);
    be->conv_forward(be, relu_plan, t.x, t.wb, t.bias, t.y);
    conv_reference(&dr, t.x, t.w, t.bias, ref);
    TEST_CHECK(test_rel_error(t.y, ref, conv_out_size(&d)) <= TOL_FORWARD,
               "%s: fused relu forward differs from direct loops", name);

    float *dx = nan_buffer(conv_in_size(&d)), *dw = nan_buffer(conv_w_size(&d));
    float *db = with_bias ? nan_buffer((size_t)d.k) : NULL, *dwb = nan_buffer(nwb);
    be->conv_backward_data(be, t.plan, t.g, t.wb, dx);
    be->conv_backward_filter(be, t.plan, t.x, t.g, dwb, db);
    be->conv_weights_export(be, t.plan, dwb, dw);
    check_grad("dx", t.x, dx, conv_in_size(&d), 5e-2f, conv_loss, &t);
    check_grad("dw", t.w, dw, conv_w_size(&d), 5e-2f, conv_loss, &t);
    if (with_bias) check_grad("dbias", t.bias, db, (size_t)d.k, 5e-2f, conv_loss, &t);

    /* BN folding: conv(x, w') + b' must equal bn_infer(conv(x, w) + b) */
    float *gamma = random_buffer((size_t)d.k, 0.5f, 1.5f);
    float *beta = random_buffer((size_t)d.k, -1, 1);
    float *mean = random_buffer((size_t)d.k, -1, 1), *var = random_buffer((size_t)d.k, 0.5f, 2);
    float *wf = buffer(nwb), *bf = buffer((size_t)d.k);
    float *bn_out = buffer(conv_out_size(&d));
    be->conv_fold_bn(be, t.plan, t.wb, t.bias, gamma, beta, mean, var, 1e-3f, wf, bf);
    be->conv_forward(be, t.plan, t.x, t.wb, t.bias, t.y);
    st_bn_desc bd = {.rows = (long)d.n * d.p * d.q, .c = d.k, .eps = 1e-3f, .momentum = 0.1f};
    be->bn_forward_infer(be, &bd, t.y, gamma, beta, mean, var, bn_out);
    be->conv_forward(be, t.plan, t.x, wf, bf, t.y);
    TEST_CHECK(test_rel_error(t.y, bn_out, conv_out_size(&d)) <= TOL_FORWARD,
               "%s: folded conv differs from conv + bn (rel %.3g)", name,
               test_rel_error(t.y, bn_out, conv_out_size(&d)));
}

/* ---- batch norm ----------------------------------------------------------------------- */

typedef struct {
    st_bn_desc d;
    float *x, *gamma, *beta, *y, *g, *mean, *rstd, *run_mean, *run_var;
} bn_case;

static double bn_loss(void *ctx) {
    bn_case *t = ctx;
    be->bn_forward_train(be, &t->d, t->x, t->gamma, t->beta, t->y, t->mean, t->rstd, t->run_mean,
                         t->run_var);
    return dot(t->y, t->g, (size_t)t->d.rows * t->d.c);
}

/* Running statistics after one step, against mean / unbiased variance computed in double. */
static void check_running_stats(bn_case *t) {
    const int C = t->d.c;
    const long rows = t->d.rows;
    float *ref_mean = buffer((size_t)C), *ref_var = buffer((size_t)C);
    for (int c = 0; c < C; c++) {
        t->run_mean[c] = 0.25f;
        t->run_var[c] = 2.0f;
        double s = 0, s2 = 0;
        for (long r = 0; r < rows; r++) s += t->x[r * C + c];
        double m = s / rows;
        for (long r = 0; r < rows; r++) s2 += (t->x[r * C + c] - m) * (t->x[r * C + c] - m);
        double m_ = t->d.momentum;
        ref_mean[c] = (float)((1 - m_) * 0.25 + m_ * m);
        ref_var[c] = (float)((1 - m_) * 2.0 + m_ * s2 / (rows - 1));
    }
    bn_loss(t);
    TEST_CLOSE("bn running_mean", t->run_mean, ref_mean, (size_t)C, 1e-6, TOL_FORWARD);
    TEST_CLOSE("bn running_var", t->run_var, ref_var, (size_t)C, 1e-6, TOL_FORWARD);
}

static void test_batchnorm(int relu) {
    begin_op("batch norm train", relu ? "with relu" : "without relu");
    bn_case t = {.d = {.rows = 2 * 3 * 3, .c = 5, .eps = 1e-3f, .momentum = 0.1f, .relu = 0}};
    size_t n = (size_t)t.d.rows * t.d.c, C = (size_t)t.d.c;
    t.gamma = random_buffer(C, 0.5f, 1.5f);
    t.beta = random_buffer(C, -0.5f, 0.5f);
    t.y = buffer(n);
    t.g = random_buffer(n, -1, 1);
    t.mean = buffer(C);
    t.rstd = buffer(C);
    t.run_mean = buffer(C);
    t.run_var = buffer(C);
    /* with ReLU, redraw x until no pre-activation is within 0.05 of the kink: a step of
     * h = 1e-2 moves one pre-activation by about h * gamma * rstd < 2e-2 (gamma <= 1.5, and
     * rstd ~ 1 / 1.4 for x uniform in [-2, 3]) */
    for (int attempt = 0;; attempt++) {
        TEST_CHECK(attempt < 1000, "could not draw a batch away from the ReLU kink");
        if (attempt >= 1000) return;
        t.x = random_buffer(n, -2, 3);
        bn_loss(&t);
        int near_kink = 0;
        for (size_t i = 0; i < n; i++) near_kink |= fabsf(t.y[i]) < 0.05f;
        if (!relu || !near_kink) break;
    }
    t.d.relu = relu;
    check_running_stats(&t);

    float *dx = nan_buffer(n), *dgamma = nan_buffer(C), *dbeta = nan_buffer(C);
    bn_loss(&t);
    be->bn_backward(be, &t.d, t.x, relu ? t.y : NULL, t.g, t.gamma, t.mean, t.rstd, dx, dgamma,
                    dbeta);
    check_grad("dx", t.x, dx, n, 1e-2f, bn_loss, &t);
    check_grad("dgamma", t.gamma, dgamma, C, 1e-2f, bn_loss, &t);
    check_grad("dbeta", t.beta, dbeta, C, 1e-2f, bn_loss, &t);
}

/* ---- relu and residual add -------------------------------------------------------------- */

typedef struct {
    size_t n;
    float *a, *b, *y, *g;
    int relu; /* add only */
} elementwise_case;

static double relu_loss(void *ctx) {
    elementwise_case *t = ctx;
    be->relu_forward(be, t->a, t->y, t->n);
    return dot(t->y, t->g, t->n);
}

static double add_loss(void *ctx) {
    elementwise_case *t = ctx;
    be->add_forward(be, t->a, t->b, t->y, t->n, t->relu);
    return dot(t->y, t->g, t->n);
}

static void test_relu_and_add(void) {
    begin_op("relu, add", "");
    elementwise_case t = {.n = 64};
    t.a = distinct_buffer(t.n); /* |a| >= 0.025 > h */
    t.b = buffer(t.n);
    t.y = buffer(t.n);
    t.g = random_buffer(t.n, -1, 1);
    float *dx = nan_buffer(t.n);
    relu_loss(&t);
    be->relu_backward(be, t.y, t.g, dx, t.n);
    check_grad("relu dx", t.a, dx, t.n, 1e-2f, relu_loss, &t);

    for (size_t i = 0; i < t.n; i++) { /* keep a + b at least 0.05 from the ReLU kink */
        do t.b[i] = (float)(2 * test_uniform() - 1);
        while (fabsf(t.a[i] + t.b[i]) < 0.05f);
    }
    for (t.relu = 0; t.relu <= 1; t.relu++) {
        add_loss(&t);
        /* both inputs get dy, masked by y > 0 when fused with ReLU */
        if (t.relu) be->relu_backward(be, t.y, t.g, dx, t.n);
        else be->copy(be, dx, t.g, t.n * sizeof(float));
        check_grad(t.relu ? "add+relu da" : "add da", t.a, dx, t.n, 1e-2f, add_loss, &t);
        check_grad(t.relu ? "add+relu db" : "add db", t.b, dx, t.n, 1e-2f, add_loss, &t);
    }
}

/* ---- pooling ---------------------------------------------------------------------------- */

typedef struct {
    st_pool_desc d;
    float *x, *y, *g;
} pool_case;

static double pool_loss(void *ctx) {
    pool_case *t = ctx;
    be->maxpool_forward(be, &t->d, t->x, t->y);
    return dot(t->y, t->g, (size_t)t->d.n * t->d.p * t->d.q * t->d.c);
}

static void test_maxpool(const char *name, st_pool_desc d) {
    begin_op("max pool", name);
    st_pool_desc_finish(&d);
    pool_case t = {.d = d};
    size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.p * d.q * d.c;
    t.x = distinct_buffer(nx);
    t.y = buffer(ny);
    t.g = random_buffer(ny, -1, 1);
    float *dx = nan_buffer(nx);
    pool_loss(&t);
    be->maxpool_backward(be, &t.d, t.x, t.y, t.g, dx);
    check_grad("dx", t.x, dx, nx, 1e-2f, pool_loss, &t);
}

typedef struct {
    st_gpool_desc d;
    float *x, *y, *g;
} gpool_case;

static double gpool_loss(void *ctx) {
    gpool_case *t = ctx;
    be->gpool_forward(be, &t->d, t->x, t->y);
    return dot(t->y, t->g, (size_t)t->d.n * t->d.c);
}

static void test_gpool(const char *name, st_gpool_kind kind) {
    begin_op("global pool", name);
    gpool_case t = {.d = {.n = 2, .hw = 5, .c = 4, .kind = kind, .p = 3.0f, .eps = 1e-6f}};
    size_t nx = (size_t)t.d.n * t.d.hw * t.d.c, ny = (size_t)t.d.n * t.d.c;
    if (kind == ST_GPOOL_MAX) {
        t.x = distinct_buffer(nx);
    } else {
        /* GeM: mostly in [0.2, 1.5]; every 7th value negative, i.e. clamped (zero gradient) */
        t.x = random_buffer(nx, 0.2f, 1.5f);
        for (size_t i = 0; i < nx; i += 7) t.x[i] = -0.5f;
    }
    t.y = buffer(ny);
    t.g = random_buffer(ny, -1, 1);
    float *dx = nan_buffer(nx);
    gpool_loss(&t);
    be->gpool_backward(be, &t.d, t.x, t.y, t.g, dx);
    check_grad("dx", t.x, dx, nx, kind == ST_GPOOL_AVG ? 5e-2f : 1e-2f, gpool_loss, &t);
}

/* ---- dense and L2 normalisation -------------------------------------------------------- */

typedef struct {
    int n, in, out;
    float *x, *w, *b, *y, *g, *norms;
} dense_case;

static double dense_loss(void *ctx) {
    dense_case *t = ctx;
    be->dense_forward(be, t->n, t->in, t->out, t->x, t->w, t->b, t->y);
    return dot(t->y, t->g, (size_t)t->n * t->out);
}

static void test_dense(void) {
    begin_op("dense", "");
    dense_case t = {.n = 3, .in = 5, .out = 4};
    t.x = random_buffer((size_t)t.n * t.in, -1, 1);
    t.w = random_buffer((size_t)t.in * t.out, -1, 1);
    t.b = random_buffer((size_t)t.out, -1, 1);
    t.y = buffer((size_t)t.n * t.out);
    t.g = random_buffer((size_t)t.n * t.out, -1, 1);
    float *dx = nan_buffer((size_t)t.n * t.in), *dw = nan_buffer((size_t)t.in * t.out);
    float *db = nan_buffer((size_t)t.out);
    be->dense_backward(be, t.n, t.in, t.out, t.x, t.w, t.g, dx, dw, db);
    check_grad("dx", t.x, dx, (size_t)t.n * t.in, 5e-2f, dense_loss, &t);
    check_grad("dw", t.w, dw, (size_t)t.in * t.out, 5e-2f, dense_loss, &t);
    check_grad("db", t.b, db, (size_t)t.out, 5e-2f, dense_loss, &t);
}

static double l2norm_loss(void *ctx) {
    dense_case *t = ctx;
    be->l2norm_forward(be, t->n, t->in, t->x, t->y, t->norms, 1e-12f);
    return dot(t->y, t->g, (size_t)t->n * t->in);
}

static void test_l2norm(void) {
    begin_op("l2norm", "");
    dense_case t = {.n = 3, .in = 6};
    size_t n = (size_t)t.n * t.in;
    t.x = random_buffer(n, -1, 1);
    t.y = buffer(n);
    t.g = random_buffer(n, -1, 1);
    t.norms = buffer((size_t)t.n);
    float *dx = nan_buffer(n);
    l2norm_loss(&t);
    be->l2norm_backward(be, t.n, t.in, t.y, t.norms, t.g, dx);
    check_grad("dx", t.x, dx, n, 1e-2f, l2norm_loss, &t);
    /* a clamped row (||x|| < eps): y = x / eps, and the gradient is dy / eps */
    float tiny[3] = {1e-7f, -2e-7f, 0.0f}, ty[3], tnorm, tg[3] = {1, 2, 3}, tdx[3];
    be->l2norm_forward(be, 1, 3, tiny, ty, &tnorm, 1e-6f);
    be->l2norm_backward(be, 1, 3, ty, &tnorm, tg, tdx);
    TEST_CHECK(fabsf(ty[1] + 0.2f) < 1e-6f && fabsf(tdx[2] - 3e6f) < 3.0f,
               "clamped l2norm row: y[1] = %g (want -0.2), dx[2] = %g (want 3e6)", ty[1], tdx[2]);
}

/* ---- non-differentiable ops: memory, BLAS-1, gemm transposes, inference batch norm ------- */

static void test_memory_and_blas(void) {
    begin_op("memory, blas", "");
    const size_t n = 100003; /* above the parallel threshold, odd: exercises loop tails */
    float *x = be->alloc(be, n * sizeof(float));
    int zeroed = 1;
    for (size_t i = 0; i < n; i++) zeroed &= x[i] == 0.0f;
    TEST_CHECK(((uintptr_t)x % 64) == 0 && zeroed, "alloc: not 64-byte aligned or not zeroed");
    float *y = buffer(n);
    be->fill(be, x, 1.5f, n);
    be->scale(be, x, 2.0f, n);
    be->fill(be, y, -1.0f, n);
    be->axpy(be, y, 0.5f, x, n); /* y = -1 + 0.5 * 3 = 0.5 */
    double ss = be->sum_squares(be, y, n);
    TEST_CHECK(x[n - 1] == 3.0f && y[0] == 0.5f && y[n - 1] == 0.5f && ss == 0.25 * (double)n,
               "fill/scale/axpy/sum_squares: x %g, y %g %g, ss %.17g", x[n - 1], y[0], y[n - 1],
               ss);
    TEST_CHECK(be->all_finite(be, y, n), "all_finite: finite array reported non-finite");
    y[n / 2] = INFINITY;
    TEST_CHECK(!be->all_finite(be, y, n), "all_finite missed an inf");
    y[n / 2] = NAN;
    TEST_CHECK(!be->all_finite(be, y, n), "all_finite missed a NaN");
    be->copy(be, y, x, n * sizeof(float));
    TEST_CHECK(y[n / 2] == 3.0f, "copy");
    be->free(be, x);

    /* gemm, all four transposes, against double loops; C = 0.5 * op(A) op(B) + 2 * C */
    enum { M = 5, N = 7, K = 9 };
    float *a = random_buffer(M * K, -1, 1), *b = random_buffer(K * N, -1, 1);
    float *c = buffer(M * N), *ref = buffer(M * N);
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++) {
            for (int i = 0; i < M * N; i++) c[i] = (float)i * 0.01f;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double acc = 0.0;
                    for (int k = 0; k < K; k++)
                        acc += (double)(ta ? a[k * M + i] : a[i * K + k]) *
                               (tb ? b[j * K + k] : b[k * N + j]);
                    ref[i * N + j] = (float)(0.5 * acc + 2.0 * c[i * N + j]);
                }
            be->gemm(be, ta, tb, M, N, K, 0.5f, a, ta ? M : K, b, tb ? K : N, 2.0f, c, N);
            TEST_CHECK(test_rel_error(c, ref, M * N) <= TOL_FORWARD, "gemm ta=%d tb=%d: rel %.3g",
                       ta, tb, test_rel_error(c, ref, M * N));
        }
}

static void test_batchnorm_infer(void) {
    begin_op("batch norm inference", "with relu");
    st_bn_desc d = {.rows = 6, .c = 4, .eps = 1e-3f, .momentum = 0.1f, .relu = 1};
    size_t n = (size_t)d.rows * d.c;
    float *x = random_buffer(n, -2, 2), *y = buffer(n), *ref = buffer(n);
    float *gamma = random_buffer(4, 0.5f, 1.5f), *beta = random_buffer(4, -1, 1);
    float *mean = random_buffer(4, -1, 1), *var = random_buffer(4, 0.5f, 2);
    for (size_t i = 0; i < n; i++) {
        size_t c = i % 4;
        double v = (x[i] - mean[c]) / sqrt((double)var[c] + d.eps) * gamma[c] + beta[c];
        ref[i] = (float)(v > 0 ? v : 0);
    }
    be->bn_forward_infer(be, &d, x, gamma, beta, mean, var, y);
    TEST_CHECK(test_rel_error(y, ref, n) <= TOL_FORWARD, "bn infer: rel %.3g",
               test_rel_error(y, ref, n));
}

int main(void) {
    be = st_backend_open("cpu", 2);
    TEST_CHECK(be != NULL, "cannot open the cpu backend");
    if (!be) return test_finish("test_ops_grad");

    /* stride 2, asymmetric padding (top 1, bottom 0, left 0, right 2), bias */
    test_conv("3x3 s2 asym pad + bias",
              (st_conv_desc){.n = 2, .h = 7, .w = 6, .c = 3, .k = 4, .r = 3, .s = 3, .stride_h = 2,
                             .stride_w = 2, .pad_top = 1, .pad_bottom = 0, .pad_left = 0,
                             .pad_right = 2},
              1);
    test_conv("1x1 s1 no bias",
              (st_conv_desc){.n = 2, .h = 4, .w = 5, .c = 6, .k = 3, .r = 1, .s = 1, .stride_h = 1,
                             .stride_w = 1},
              0);
    test_conv("7x7 s2 pad 3 (stem, uneven)",
              (st_conv_desc){.n = 1, .h = 9, .w = 8, .c = 3, .k = 2, .r = 7, .s = 7, .stride_h = 2,
                             .stride_w = 2, .pad_top = 3, .pad_bottom = 3, .pad_left = 3,
                             .pad_right = 3},
              1);
    test_batchnorm(0);
    test_batchnorm(1);
    test_batchnorm_infer();
    test_relu_and_add();
    test_maxpool("3x3 s2 zero pad 1",
                 (st_pool_desc){.n = 2, .h = 7, .w = 6, .c = 3, .r = 3, .s = 3, .stride_h = 2,
                                .stride_w = 2, .pad_top = 1, .pad_bottom = 1, .pad_left = 1,
                                .pad_right = 1, .pad_with_zero = 1});
    test_maxpool("3x3 s2 zero pad asym",
                 (st_pool_desc){.n = 2, .h = 7, .w = 6, .c = 3, .r = 3, .s = 3, .stride_h = 2,
                                .stride_w = 2, .pad_bottom = 1, .pad_right = 2,
                                .pad_with_zero = 1});
    test_maxpool("3x3 s2 -inf pad 1",
                 (st_pool_desc){.n = 2, .h = 7, .w = 6, .c = 3, .r = 3, .s = 3, .stride_h = 2,
                                .stride_w = 2, .pad_top = 1, .pad_bottom = 1, .pad_left = 1,
                                .pad_right = 1});
    test_maxpool("2x2 s2 no pad",
                 (st_pool_desc){.n = 1, .h = 6, .w = 6, .c = 2, .r = 2, .s = 2, .stride_h = 2,
                                .stride_w = 2});
    test_gpool("avg", ST_GPOOL_AVG);
    test_gpool("max", ST_GPOOL_MAX);
    test_gpool("GeM p=3", ST_GPOOL_GEM);
    test_dense();
    test_l2norm();
    test_memory_and_blas();
    free_buffers();
    st_backend_close(be);
    return test_finish("test_ops_grad");
}
