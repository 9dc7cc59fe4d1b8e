/* postprocess.c: PCA / whitening, alpha query expansion, diffusion (contracts in postprocess.h). */
#include "postprocess.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/check.h"
#include "../kernels/math/l2norm.h"

#define PCA_BLOCK_ROWS 4096
#define DIFFUSION_QUERY_BLOCK 64

static void normalise_rows(float *x, long n, int d) {
    for (long i = 0; i < n; i++) st_l2_normalize_row(x + (size_t)i * d, x + (size_t)i * d, d, ST_L2_EPS);
}

/* Covariance (d, d) in double of the centred rows of x (n, d). */
static double *covariance(const float *x, long n, int d, const float *mean) {
    float *cov = ST_CALLOC((size_t)d * d, sizeof(float));
    float *block = ST_MALLOC((size_t)PCA_BLOCK_ROWS * d * sizeof(float));
    for (long r0 = 0; r0 < n; r0 += PCA_BLOCK_ROWS) {
        long nr = n - r0 < PCA_BLOCK_ROWS ? n - r0 : PCA_BLOCK_ROWS;
        for (long i = 0; i < nr; i++)
            for (int j = 0; j < d; j++) block[i * d + j] = x[(size_t)(r0 + i) * d + j] - mean[j];
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, d, (int)nr, 1.0f / (float)(n - 1),
                    block, d, 1.0f, cov, d);
    }
    double *out = ST_MALLOC((size_t)d * d * sizeof(double));
    for (int i = 0; i < d; i++) /* mirror the upper triangle */
        for (int j = 0; j < d; j++) out[(size_t)i * d + j] = cov[i <= j ? (size_t)i * d + j : (size_t)j * d + i];
    free(block);
    free(cov);
    return out;
}

int st_pca_fit(const float *x, long n, int d, int d_out, int whiten, st_pca *out) {
    memset(out, 0, sizeof *out);
    if (d_out < 1 || d_out > d)
        return st_error_set("PCA to %d dimensions: must be between 1 and the embedding dimension %d",
                            d_out, d);
    if (n <= d_out)
        return st_error_set("PCA to %d dimensions needs more than %d gallery rows, got %ld; HINT: "
                            "lower --pca",
                            d_out, d_out, n);
    float *mean = ST_CALLOC((size_t)d, sizeof(float));
    double *acc = ST_CALLOC((size_t)d, sizeof(double));
    for (long i = 0; i < n; i++)
        for (int j = 0; j < d; j++) acc[j] += x[(size_t)i * d + j];
    for (int j = 0; j < d; j++) mean[j] = (float)(acc[j] / n);
    free(acc);
    double *cov = covariance(x, n, d, mean);

    /* the d_out largest eigenpairs (indices il..iu of the ascending order); column-major z (d, d_out).
     * LAPACKE queries and allocates dsyevr's workspace itself. */
    lapack_int m = 0, il = d - d_out + 1, iu = d;
    double *w = ST_MALLOC((size_t)d * sizeof(double));
    double *z = ST_MALLOC((size_t)d * d_out * sizeof(double));
    lapack_int *isuppz = ST_MALLOC((size_t)2 * d_out * sizeof(lapack_int));
    lapack_int info = LAPACKE_dsyevr(LAPACK_COL_MAJOR, 'V', 'I', 'L', d, cov, d, 0.0, 0.0, il, iu, 0.0,
                                     &m, w, z, d, isuppz);
    ST_CHECK(info == 0 && m == d_out, "LAPACK dsyevr failed (info %d, %d of %d eigenpairs)", (int)info,
             (int)m, d_out);

    out->d_in = d;
    out->d_out = d_out;
    out->mean = mean;
    out->components = ST_MALLOC((size_t)d_out * d * sizeof(float));
    out->eigenvalues = ST_MALLOC((size_t)d_out * sizeof(double));
    double lambda_max = fmax(w[m - 1], 0.0);
    for (int c = 0; c < d_out; c++) {
        int col = m - 1 - c; /* LAPACK returns ascending eigenvalues */
        const double *v = z + (size_t)col * d;
        double lambda = fmax(w[col], 0.0);
        int biggest = 0;
        for (int j = 1; j < d; j++)
            if (fabs(v[j]) > fabs(v[biggest])) biggest = j;
        double scale = (v[biggest] < 0 ? -1.0 : 1.0) *
                       (whiten ? 1.0 / sqrt(lambda + 1e-6 * lambda_max + 1e-30) : 1.0);
        for (int j = 0; j < d; j++) out->components[(size_t)c * d + j] = (float)(v[j] * scale);
        out->eigenvalues[c] = lambda;
    }
    free(w);
    free(z);
    free(isuppz);
    free(cov);
    return 0;
}

void st_pca_apply(const st_pca *p, const float *x, long n, float *y) {
    int d = p->d_in;
    float *block = ST_MALLOC((size_t)PCA_BLOCK_ROWS * d * sizeof(float));
    for (long r0 = 0; r0 < n; r0 += PCA_BLOCK_ROWS) {
        long nr = n - r0 < PCA_BLOCK_ROWS ? n - r0 : PCA_BLOCK_ROWS;
        for (long i = 0; i < nr; i++)
            for (int j = 0; j < d; j++) block[i * d + j] = x[(size_t)(r0 + i) * d + j] - p->mean[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, p->d_out, d, 1.0f, block, d,
                    p->components, d, 0.0f, y + (size_t)r0 * p->d_out, p->d_out);
    }
    free(block);
    normalise_rows(y, n, p->d_out);
}

void st_pca_free(st_pca *p) {
    free(p->mean);
    free(p->components);
    free(p->eigenvalues);
    memset(p, 0, sizeof *p);
}

static double cosine(const float *a, const float *b, int d) {
    double dot = 0, na = 0, nb = 0;
    for (int j = 0; j < d; j++) {
        dot += (double)a[j] * b[j];
        na += (double)a[j] * a[j];
        nb += (double)b[j] * b[j];
    }
    return na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0.0;
}

void st_alpha_query_expansion(const float *queries, int q, const float *gallery, int d,
                              const st_topk_result *nn, int n_expand, float alpha, float *out) {
    double *acc = ST_MALLOC((size_t)d * sizeof(double));
    for (int i = 0; i < q; i++) {
        const float *qi = queries + (size_t)i * d;
        double qn = 0;
        for (int j = 0; j < d; j++) qn += (double)qi[j] * qi[j];
        qn = qn > 0 ? 1.0 / sqrt(qn) : 0.0;
        for (int j = 0; j < d; j++) acc[j] = qi[j] * qn;
        for (int r = 0, used = 0; r < nn->k && used < n_expand; r++) {
            int64_t g = nn->index[(size_t)i * nn->k + r];
            if (g < 0) continue;
            used++;
            const float *x = gallery + (size_t)g * d;
            double weight = pow(fmax(0.0, cosine(qi, x, d)), alpha), xn = 0;
            for (int j = 0; j < d; j++) xn += (double)x[j] * x[j];
            if (xn <= 0) continue;
            weight /= sqrt(xn);
            for (int j = 0; j < d; j++) acc[j] += weight * x[j];
        }
        double ss = 0;
        for (int j = 0; j < d; j++) ss += acc[j] * acc[j];
        double inv = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
        for (int j = 0; j < d; j++) out[(size_t)i * d + j] = (float)(acc[j] * inv);
    }
    free(acc);
}

void st_diffusion_defaults(st_diffusion_options *o) {
    o->k = 50;
    o->gamma = 3.0f;
    o->alpha = 0.99f;
    o->iterations = 20;
}

/* S = D^-1/2 A D^-1/2 of the mutual k-NN graph, CSR. */
typedef struct {
    long n;
    long *row_start; /* (n + 1) */
    int64_t *col;    /* (nnz) */
    double *value;   /* (nnz) */
} sparse_graph;

static sparse_graph mutual_knn_graph(const st_topk_result *knn, long n, float gamma) {
    int k = knn->k;
    sparse_graph s = {n, ST_CALLOC((size_t)n + 1, sizeof(long)),
                      ST_MALLOC((size_t)(n ? n : 1) * k * sizeof(int64_t)),
                      ST_MALLOC((size_t)(n ? n : 1) * k * sizeof(double))};
    long nnz = 0;
    for (long i = 0; i < n; i++) {
        s.row_start[i] = nnz;
        for (int a = 0; a < k; a++) {
            int64_t j = knn->index[(size_t)i * k + a];
            if (j < 0) continue;
            for (int b = 0; b < k; b++) {
                if (knn->index[(size_t)j * k + b] != i) continue;
                /* both directions were scored separately: average them so A is symmetric */
                double sim = 0.5 * ((double)knn->score[(size_t)i * k + a] +
                                    (double)knn->score[(size_t)j * k + b]);
                s.col[nnz] = j;
                s.value[nnz++] = pow(fmax(0.0, sim), gamma);
                break;
            }
        }
    }
    s.row_start[n] = nnz;
    double *inv_sqrt_degree = ST_MALLOC((size_t)(n ? n : 1) * sizeof(double));
    for (long i = 0; i < n; i++) {
        double deg = 0;
        for (long e = s.row_start[i]; e < s.row_start[i + 1]; e++) deg += s.value[e];
        inv_sqrt_degree[i] = deg > 0 ? 1.0 / sqrt(deg) : 0.0;
    }
    for (long i = 0; i < n; i++)
        for (long e = s.row_start[i]; e < s.row_start[i + 1]; e++)
            s.value[e] *= inv_sqrt_degree[i] * inv_sqrt_degree[s.col[e]];
    free(inv_sqrt_degree);
    return s;
}

/* out = (I - alpha S) v for one vector of length n. */
static void apply_system(const sparse_graph *s, double alpha, const double *v, double *out) {
    for (long i = 0; i < s->n; i++) {
        double acc = 0;
        for (long e = s->row_start[i]; e < s->row_start[i + 1]; e++) acc += s->value[e] * v[s->col[e]];
        out[i] = v[i] - alpha * acc;
    }
}

/* Conjugate gradient from f = 0 for one right-hand side y; f, r, p, ap are work vectors (n). */
static void conjugate_gradient(const sparse_graph *s, double alpha, int iterations, const double *y,
                               double *f, double *r, double *p, double *ap) {
    long n = s->n;
    double rr = 0;
    for (long i = 0; i < n; i++) {
        f[i] = 0;
        r[i] = p[i] = y[i];
        rr += y[i] * y[i];
    }
    double stop = 1e-24 * (rr > 0 ? rr : 1.0); /* relative residual 1e-12: converged */
    for (int it = 0; it < iterations && rr > stop; it++) {
        apply_system(s, alpha, p, ap);
        double pap = 0;
        for (long i = 0; i < n; i++) pap += p[i] * ap[i];
        if (pap <= 0) break;
        double step = rr / pap, rr_new = 0;
        for (long i = 0; i < n; i++) {
            f[i] += step * p[i];
            r[i] -= step * ap[i];
            rr_new += r[i] * r[i];
        }
        double beta = rr_new / rr;
        for (long i = 0; i < n; i++) p[i] = r[i] + beta * p[i];
        rr = rr_new;
    }
}

void st_diffusion_search(st_backend *be, const st_diffusion_options *o, const float *gallery,
                         long n, int d, const float *queries, int q, const int64_t *self_index,
                         int depth, st_topk_result *out) {
    ST_CHECK(o->alpha > 0 && o->alpha < 1 && o->k >= 1 && o->iterations >= 1,
             "diffusion: alpha %g must be in (0, 1), k %d and iterations %d >= 1", o->alpha, o->k,
             o->iterations);
    int k = o->k < n - 1 ? o->k : (int)(n > 1 ? n - 1 : 1);
    int64_t *identity = ST_MALLOC((size_t)(n ? n : 1) * sizeof(int64_t));
    for (long i = 0; i < n; i++) identity[i] = i;
    /* one gallery for the graph and the queries: loaded and normalised once when it fits */
    st_topk_gallery *g;
    ST_CHECK(st_topk_gallery_open_matrix(be, ST_METRIC_COSINE, gallery, n, d, 0, &g) == 0,
             "diffusion gallery: %s", st_error_get());
    st_topk_options graph_opts = {ST_METRIC_COSINE, k, 0, 0, identity};
    st_topk_result knn, query_nn;
    ST_CHECK(st_topk_gallery_search(g, &graph_opts, gallery, (int)n, &knn) == 0,
             "diffusion graph search: %s", st_error_get());
    sparse_graph s = mutual_knn_graph(&knn, n, o->gamma);
    st_topk_result_free(&knn);
    free(identity);
    st_topk_options query_opts = {ST_METRIC_COSINE, k, 0, 0, self_index};
    ST_CHECK(st_topk_gallery_search(g, &query_opts, queries, q, &query_nn) == 0,
             "diffusion query search: %s", st_error_get());
    st_topk_gallery_close(g);

    out->q = q;
    out->k = depth;
    size_t total = (size_t)(q ? q : 1) * depth;
    out->index = ST_MALLOC(total * sizeof(int64_t));
    out->score = ST_MALLOC(total * sizeof(float));
    out->key = ST_MALLOC(total * sizeof(float));
    size_t nn = (size_t)(n ? n : 1);
    float *f_block = ST_MALLOC((size_t)DIFFUSION_QUERY_BLOCK * nn * sizeof(float));
    for (int q0 = 0; q0 < q; q0 += DIFFUSION_QUERY_BLOCK) {
        int nb = q - q0 < DIFFUSION_QUERY_BLOCK ? q - q0 : DIFFUSION_QUERY_BLOCK;
#pragma omp parallel
        {
            double *y = ST_MALLOC(nn * 5 * sizeof(double));
            double *f = y + nn, *r = f + nn, *p = r + nn, *ap = p + nn;
#pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < nb; i++) {
                for (long j = 0; j < n; j++) y[j] = 0;
                for (int a = 0; a < k; a++) {
                    size_t at = (size_t)(q0 + i) * k + a;
                    if (query_nn.index[at] >= 0)
                        y[query_nn.index[at]] = fmax(0.0, query_nn.score[at]);
                }
                conjugate_gradient(&s, o->alpha, o->iterations, y, f, r, p, ap);
                for (long j = 0; j < n; j++) f_block[(size_t)i * nn + j] = (float)f[j];
            }
            free(y);
        }
        st_topk_result part;
        st_topk_select_keys(be, f_block, nb, n, depth, self_index ? self_index + q0 : NULL, &part);
        memcpy(out->index + (size_t)q0 * depth, part.index, (size_t)nb * depth * sizeof(int64_t));
        memcpy(out->score + (size_t)q0 * depth, part.score, (size_t)nb * depth * sizeof(float));
        memcpy(out->key + (size_t)q0 * depth, part.key, (size_t)nb * depth * sizeof(float));
        st_topk_result_free(&part);
    }
    free(f_block);
    st_topk_result_free(&query_nn);
    free(s.row_start);
    free(s.col);
    free(s.value);
}
