/*
 * postprocess.h: what retrieval systems do around the plain nearest-neighbour search
 * (docs/algorithms.md E): PCA (optionally whitened) fitted on the gallery, alpha query
 * expansion, and diffusion re-ranking on the gallery's mutual k-NN graph.
 *
 * All data is host memory, row-major: gallery (N, D), queries (Q, D). PCA runs on the host with
 * OpenBLAS/LAPACK (a one-off fit); the searches inside query expansion and diffusion go through
 * the backend (infer/topk.h).
 *
 * PCA (Jegou & Chum, ECCV 2012): mean m and the top D' eigenpairs (U, lambda) of the gallery
 * covariance (1/(N-1)) sum (x-m)(x-m)^T; x' = U^T (x - m), whitened x' = diag(lambda+eps)^-1/2
 * U^T (x - m) with eps = 1e-6 * lambda_max (guards the near-zero tail); rows are L2-normalised
 * afterwards (x / max(||x||, 1e-12), kernels/math/l2norm.h, as top-k's cosine rows). Each eigenvector's sign is fixed (largest |entry| positive), so fits are
 * reproducible. Needs N > D' gallery rows.
 *
 * Alpha query expansion (Radenovic et al., TPAMI 2018): with q and x_i unit length and x_1..x_n
 * the query's top-n gallery rows, q' = normalise(q + sum_i max(0, q.x_i)^alpha x_i); the clamp
 * keeps a negative similarity from flipping a neighbour's sign for odd alpha.
 *
 * Diffusion (Zhou et al. NIPS 2004; Iscen et al. CVPR 2017): cosine similarities s, affinity
 * a_ij = max(0, s_ij)^gamma when i and j are each among the other's k nearest (mutual k-NN),
 * a_ii = 0; S = D^-1/2 A D^-1/2 (isolated nodes have zero rows); y_i = max(0, s(q, x_i)) for the
 * query's k nearest gallery rows, else 0; f solves (I - alpha S) f = y by conjugate gradient
 * (the matrix is symmetric positive definite for alpha < 1); the gallery is ranked by f.
 * Rows that the diffusion never reaches keep f = 0 and follow in gallery order.
 */
#ifndef ST_POSTPROCESS_H
#define ST_POSTPROCESS_H

#include <stdint.h>

#include "../kernels/backend.h"
#include "topk.h"

typedef struct st_pca {
    int d_in, d_out;
    float *mean;        /* (d_in) */
    float *components;  /* (d_out, d_in) eigenvectors as rows, scaled by (lambda+eps)^-1/2 when whitened */
    double *eigenvalues; /* (d_out) descending */
} st_pca;

/* 0, or -1 with st_error_set when d_out is out of range or the gallery has too few rows. */
int st_pca_fit(const float *x, long n, int d, int d_out, int whiten, st_pca *out);
/* y (n, d_out) = normalise(components (x - mean)); y must not alias x. */
void st_pca_apply(const st_pca *p, const float *x, long n, float *y);
void st_pca_free(st_pca *p);

/* queries (Q, D), gallery (N, D), nn = the queries' ranked gallery rows (index -1 = empty);
 * the first n_expand valid entries of each list are used. out (Q, D), may alias queries. */
void st_alpha_query_expansion(const float *queries, int q, const float *gallery, int d,
                              const st_topk_result *nn, int n_expand, float alpha, float *out);

typedef struct st_diffusion_options {
    int k;          /* neighbours in the graph and in the query vector (50) */
    float gamma;    /* affinity exponent (3) */
    float alpha;    /* restart weight, < 1 (0.99) */
    int iterations; /* conjugate-gradient iterations (20) */
} st_diffusion_options;

void st_diffusion_defaults(st_diffusion_options *o);

/* Rank the gallery for every query by diffusion; self_index as in st_topk_options (may be NULL).
 * out: (Q, depth) with score = key = f. */
void st_diffusion_search(st_backend *be, const st_diffusion_options *o, const float *gallery,
                         long n, int d, const float *queries, int q, const int64_t *self_index,
                         int depth, st_topk_result *out);

#endif
