/*
 * test_postprocess.c: PCA / whitening, alpha query expansion and diffusion (infer/postprocess.h)
 * against closed forms and an independent dense solve.
 *
 *   PCA: the 8 points m + (+-3, +-2, +-1) have covariance diag(9, 4, 1) * 8/7; the top two
 *     eigenpairs, the sign convention, the projection of one point, whitening, bad sizes.
 *   Query expansion: one query, three neighbours (one with a negative similarity) vs the formula.
 *   Diffusion: the mutual k-NN graph, S = D^-1/2 A D^-1/2 and (I - alpha S) f = y rebuilt here in
 *     double and solved by Gaussian elimination; the ranked f must match.
 * Tolerances: PCA runs its covariance in float32 (relative error ~1e-7 per entry), so 1e-5 on
 * eigenvalues and projections; f is stored as float32 and CG is run to convergence, so 1e-5.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "infer/postprocess.h"
#include "kernels/check.h"
#include "test_util.h"

static void test_pca(void) {
    float x[8 * 3];
    for (int i = 0; i < 8; i++) {
        x[i * 3 + 0] = 5.0f + ((i & 1) ? 3.0f : -3.0f);
        x[i * 3 + 1] = 5.0f + ((i & 2) ? 2.0f : -2.0f);
        x[i * 3 + 2] = 5.0f + ((i & 4) ? 1.0f : -1.0f);
    }
    st_pca p;
    TEST_CHECK(st_pca_fit(x, 8, 3, 2, 0, &p) == 0, "fit: %s", st_error_get());
    TEST_CHECK(fabs(p.eigenvalues[0] - 72.0 / 7) < 1e-5 * 72 / 7 &&
                   fabs(p.eigenvalues[1] - 32.0 / 7) < 1e-5 * 32 / 7,
               "eigenvalues %g %g, expected %g %g", p.eigenvalues[0], p.eigenvalues[1], 72.0 / 7,
               32.0 / 7);
    const float want_components[6] = {1, 0, 0, 0, 1, 0}; /* largest entry positive */
    TEST_CLOSE("components", p.components, want_components, 6, 1e-5, 0);
    float y[2];
    st_pca_apply(&p, x + 7 * 3, 1, y); /* (8, 7, 6) - mean = (3, 2, 1) -> (3, 2) / sqrt(13) */
    const float want_y[2] = {3.0f / sqrtf(13.0f), 2.0f / sqrtf(13.0f)};
    TEST_CLOSE("projection", y, want_y, 2, 1e-5, 0);
    st_pca_free(&p);

    TEST_CHECK(st_pca_fit(x, 8, 3, 2, 1, &p) == 0, "fit whitened: %s", st_error_get());
    st_pca_apply(&p, x + 7 * 3, 1, y); /* (3 / sqrt(72/7), 2 / sqrt(32/7)) normalised */
    double a = 3 / sqrt(72.0 / 7), b = 2 / sqrt(32.0 / 7), norm = sqrt(a * a + b * b);
    const float want_w[2] = {(float)(a / norm), (float)(b / norm)};
    TEST_CLOSE("whitened projection", y, want_w, 2, 1e-5, 0);
    st_pca_free(&p);

    TEST_CHECK(st_pca_fit(x, 8, 3, 4, 0, &p) == -1, "PCA to more dimensions than the input accepted");
    TEST_CHECK(st_pca_fit(x, 2, 3, 2, 0, &p) == -1, "PCA with too few rows accepted");
}

static void test_query_expansion(void) {
    const float q[2] = {1, 0};
    const float g[6] = {1, 1, 0, 1, -1, 0.1f};
    int64_t index[3] = {0, 1, 2};
    float scores[3] = {0}, keys[3] = {0};
    st_topk_result nn = {1, 3, index, scores, keys};
    float out[2];
    st_alpha_query_expansion(q, 1, g, 2, &nn, 3, 3.0f, out);
    /* weights: (1/sqrt2)^3 for row 0, 0 for row 1 (orthogonal), 0 for row 2 (negative, clamped):
     * q' = normalise((1, 0) + 0.25 (1, 1)) */
    double n = sqrt(1.25 * 1.25 + 0.25 * 0.25);
    const float want[2] = {(float)(1.25 / n), (float)(0.25 / n)};
    TEST_CLOSE("alpha query expansion", out, want, 2, 1e-6, 0);
}

static double cosine(const float *a, const float *b, int d) {
    double dot = 0, na = 0, nb = 0;
    for (int j = 0; j < d; j++) {
        dot += (double)a[j] * b[j];
        na += (double)a[j] * a[j];
        nb += (double)b[j] * b[j];
    }
    return dot / sqrt(na * nb);
}

/* indices of the k largest of s (n), excluding `skip` */
static void top_k(const double *s, int n, int k, int skip, int *out) {
    for (int a = 0; a < k; a++) {
        int best = -1;
        for (int j = 0; j < n; j++) {
            if (j == skip) continue;
            int used = 0;
            for (int b = 0; b < a; b++) used |= out[b] == j;
            if (!used && (best < 0 || s[j] > s[best])) best = j;
        }
        out[a] = best;
    }
}

static void test_diffusion(st_backend *be) {
    enum { N = 12, D = 3, K = 4 };
    float g[N * D], q[D] = {0.9f, 0.2f, 0.4f};
    unsigned state = 99;
    for (int i = 0; i < N * D; i++) {
        state = state * 1664525u + 1013904223u;
        g[i] = (float)((state >> 8) % 1000) / 1000.0f; /* positive: cosines in (0, 1] */
    }
    st_diffusion_options o;
    st_diffusion_defaults(&o);
    o.k = K;
    o.alpha = 0.9f;
    o.iterations = 100; /* CG on N = 12 converges in at most 12 steps */
    st_topk_result r;
    st_diffusion_search(be, &o, g, N, D, q, 1, NULL, N, &r);

    /* reference: dense system in double */
    double s[N][N], a[N][N] = {{0}}, deg[N], m[N][N + 1];
    int nn[N][K];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) s[i][j] = cosine(g + i * D, g + j * D, D);
    for (int i = 0; i < N; i++) top_k(s[i], N, K, i, nn[i]);
    for (int i = 0; i < N; i++)
        for (int x = 0; x < K; x++) {
            int j = nn[i][x], mutual = 0;
            for (int y = 0; y < K; y++) mutual |= nn[j][y] == i;
            if (mutual) a[i][j] = pow(s[i][j], o.gamma);
        }
    for (int i = 0; i < N; i++) {
        deg[i] = 0;
        for (int j = 0; j < N; j++) deg[i] += a[i][j];
    }
    double sq[N];
    for (int j = 0; j < N; j++) sq[j] = cosine(q, g + j * D, D);
    int qnn[K];
    top_k(sq, N, K, -1, qnn);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            double sij = deg[i] > 0 && deg[j] > 0 ? a[i][j] / sqrt(deg[i] * deg[j]) : 0;
            m[i][j] = (i == j) - o.alpha * sij;
        }
        m[i][N] = 0;
    }
    for (int x = 0; x < K; x++) m[qnn[x]][N] = sq[qnn[x]];
    for (int c = 0; c < N; c++) /* Gaussian elimination; the matrix is SPD, no pivoting needed */
        for (int i = c + 1; i < N; i++) {
            double f = m[i][c] / m[c][c];
            for (int j = c; j <= N; j++) m[i][j] -= f * m[c][j];
        }
    double f[N];
    for (int i = N - 1; i >= 0; i--) {
        double acc = m[i][N];
        for (int j = i + 1; j < N; j++) acc -= m[i][j] * f[j];
        f[i] = acc / m[i][i];
    }
    int bad = 0;
    for (int j = 0; j < N; j++) {
        int64_t row = r.index[j];
        bad += row < 0 || fabs(r.score[j] - f[row]) > 1e-5;
        if (j > 0) bad += r.score[j] > r.score[j - 1]; /* ranked by f, best first */
    }
    TEST_CHECK(bad == 0, "diffusion: %d of %d ranked f values differ from the dense solve", bad, N);
    st_topk_result_free(&r);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "%s", st_error_get());
    test_pca();
    test_query_expansion();
    test_diffusion(be);
    st_backend_close(be);
    return test_finish("test_postprocess");
}
