/*
 * backend.h: the device-neutral compute interface, a struct of function pointers (ggml's shape,
 * scaled down to what a ResNet fine-tuner needs).
 *
 * Contract for every op:
 *   - Pointers are device memory of this backend (from alloc / an arena), except where a
 *     parameter is marked "host".
 *   - Activations are NHWC float32; "rows" means N*H*W for per-channel ops.
 *   - Backward ops OVERWRITE their outputs (dx, dw, ...) unless the comment says "accumulates".
 *     Summing gradients of a tensor used twice (residual blocks) is done with axpy.
 *   - Ops may run asynchronously; download() and sync() order them with the host.
 *   - Both backends fill EVERY member: their declarations and wiring are generated from the one
 *     op list ST_BACKEND_OPS below, so a missing implementation is a link error, and
 *     st_backend_open() refuses a backend with a NULL member, so there is never a silent
 *     fallback from CUDA to CPU.
 * Each op's own contract is the comment above its entry in ST_BACKEND_OPS.
 * Per-element math shared by the CPU and CUDA implementations lives in the kernels/math headers.
 */
#ifndef ST_BACKEND_H
#define ST_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_backend st_backend;
typedef struct st_conv_plan st_conv_plan; /* backend-private: primitives, descriptors, algos */

/* ---- descriptors ---------------------------------------------------------------------- */

typedef struct st_conv_desc {
    int n, h, w, c;                     /* input  (N, H, W, C) */
    int k, r, s;                        /* filter: K outputs, R x S window (layout: see conv ops) */
    int stride_h, stride_w;
    int pad_top, pad_bottom, pad_left, pad_right; /* explicit zero padding (Keras ZeroPadding2D) */
    int p, q;                           /* output (N, P, Q, K); filled by st_conv_desc_finish */
    int relu;                           /* forward applies ReLU after bias (fused) */
    int bf16;                           /* math in bf16: x, dy and the kernel rounded to bf16,
                                         * FP32 accumulation, outputs, parameters and gradients
                                         * (only where conv_bf16_supported) */
    int x_bf16;                         /* bf16 plans: x arrives rounded, as bf16 bit patterns
                                         * (uint16_t: st_bn_desc.y_bf16 or a conv's y_bf16),
                                         * and is read as is */
    int y_bf16;                         /* bf16 plans: the forward writes y as bf16 bit patterns,
                                         * for readers that take it so (st_bn_desc.x_bf16, a
                                         * conv's x_bf16) */
    int dy_bf16;                        /* bf16 plans: dy arrives rounded (st_bn_desc.dx_bf16) */
} st_conv_desc;

typedef struct st_bn_desc {
    long rows;      /* N*H*W */
    int c;          /* channels */
    float eps;      /* 1.001e-5 Keras, 1e-5 torchvision */
    float momentum; /* running = (1-momentum)*running + momentum*batch (PyTorch convention) */
    int relu;       /* forward applies ReLU after the affine transform (fused) */
    int sync;       /* training ops: statistics and backward sums of the global batch over the
                     * ranks (sync_bn, kernels/bn_sync.h); every rank calls the op in turn */
    int x_bf16;     /* x holds bf16 bit patterns (a bf16 conv's y_bf16 output): every op reads
                     * it so */
    int y_bf16;     /* y holds bf16 bit patterns (uint16_t, rounded as kernels/math/bf16.h) for
                     * bf16 convs that read it as x (st_conv_desc.x_bf16): the forward ops write
                     * it so, bn_backward takes its ReLU mask from it (the value the conv read
                     * > 0) */
    int dx_bf16;    /* bn_backward writes dx as bf16 bit patterns: the dy of the bf16 conv
                     * before it (st_conv_desc.dy_bf16) */
} st_bn_desc;

typedef struct st_pool_desc {
    int n, h, w, c;                     /* input (N, H, W, C) */
    int r, s;                           /* window */
    int stride_h, stride_w;
    int pad_top, pad_bottom, pad_left, pad_right;
    int p, q;                           /* output (N, P, Q, C); filled by st_pool_desc_finish */
    int pad_with_zero;                  /* 1: padded cells are 0 (Keras ZeroPadding2D); 0: -inf */
} st_pool_desc;

typedef enum { ST_GPOOL_AVG, ST_GPOOL_MAX, ST_GPOOL_GEM } st_gpool_kind;

typedef struct st_gpool_desc {
    int n, hw, c;        /* input (N, H*W, C) -> output (N, C) */
    st_gpool_kind kind;
    float p;             /* GeM exponent (3 usual) */
    float eps;           /* GeM clamp (1e-6) */
} st_gpool_desc;

typedef enum { ST_OPT_SGD, ST_OPT_ADAM, ST_OPT_ADAMW, ST_OPT_RMSPROP } st_opt_kind;

typedef struct st_optim_desc {
    st_opt_kind kind;
    float lr;
    float momentum;      /* SGD momentum, RMSprop momentum */
    int nesterov;        /* SGD */
    float beta1, beta2;  /* Adam/AdamW */
    float eps;           /* Adam/AdamW/RMSprop */
    float alpha;         /* RMSprop smoothing constant (PyTorch 'alpha', 0.99) */
    float weight_decay;  /* L2 (SGD/Adam/RMSprop, added to the gradient) or decoupled (AdamW) */
    long step;           /* 1-based step count, for Adam bias correction */
} st_optim_desc;

/* A flat run of floats, e.g. one parameter's gradient slice (device memory). */
typedef struct st_span {
    const float *x;
    size_t n;
} st_span;

/* The gradient-norm verdict of one optimizer step, in DEVICE memory: written by optim_grad_norm,
 * read by optim_step, so clipping and the skip of a non-finite step need no read back; the host
 * downloads it only when asked (train/optim.c st_optimizer_stats). Rules in kernels/math/optim.h
 * (st_optim_status_decide). */
typedef struct st_optim_status {
    double sum_squares;  /* of the gradients of this step */
    double norm;         /* sqrt(sum_squares): the norm before clipping */
    float clip_coef;     /* what optim_step multiplies each gradient by when clip is 1 */
    int clip;            /* 1: clip_norm / (norm + 1e-6) < 1 (torch clip_grad_norm_) */
    int skip;            /* 1: norm not finite; optim_step leaves parameters and state alone */
    int64_t skipped;     /* steps skipped since the host last folded it into its counters */
} st_optim_status;

typedef struct st_triplet_desc {
    int n, d;            /* embeddings (N, D), N = P*K */
    int batch_all;       /* 0: batch hard (Hermans eq. 5), 1: batch all, mean over active terms */
    int soft_margin;     /* 1: softplus(dp - dn), margin unused */
    float margin;
    float eps;           /* safe sqrt: D = sqrt(max(s,0) + eps), eps 1e-12 */
} st_triplet_desc;

/* One step's loss statistics, written on the device by the loss ops (overwritten, never read
 * back by them): the caller keeps one record per step and downloads them when it asks for the
 * values (train/loss.c), so the step does not wait for the device. */
typedef struct st_triplet_stats { /* device */
    float loss;
    float active_fraction; /* anchors (or triplets) with non-zero loss */
    float mean_pos, mean_neg; /* mean hardest-positive / hardest-negative distance */
} st_triplet_stats;

typedef struct st_xent_stats { /* device */
    double loss_sum; /* sum of the row losses, added in row order (the caller divides) */
    double correct;  /* rows whose top-1 logit (ties to the lower class) is the label */
} st_xent_stats;

/* ---- the ops: one list, ST_BACKEND_OPS ---------------------------------------------- */

/*
 * ST_BACKEND_OPS(X) names every op exactly once, each under its contract comment, as
 * X(return type, op name, (parameter list)). Everything else is generated from it: the
 * st_backend members below, the declarations cpu_<op> (cpu/cpu_ops.h) and cuda_<op>
 * (cuda/cuda_ops.h), and the wiring in cpu_backend.c and cuda_backend.c. Adding an op is one
 * X(...) entry here plus cpu_<op> and cuda_<op>; a backend without its implementation fails to
 * link. Only block comments inside the list: a // comment would swallow the line's backslash.
 */
#define ST_BACKEND_OPS(X)                                                                          \
    /* ---- memory ---- */                                                                         \
    /* zeroed, 64-byte aligned */                                                                  \
    X(void *, alloc, (st_backend *be, size_t bytes))                                               \
    /* releases a block from alloc; NULL is ignored */                                             \
    X(void, free, (st_backend *be, void *ptr))                                                     \
    /* host -> device; host_src may be reused as soon as upload returns */                         \
    X(void, upload, (st_backend *be, void *dst, const void *host_src, size_t bytes))               \
    /* device -> host; waits for the ops before it, so host_dst is ready on return */              \
    X(void, download, (st_backend *be, void *host_dst, const void *src, size_t bytes))             \
    /* device -> device */                                                                         \
    X(void, copy, (st_backend *be, void *dst, const void *src, size_t bytes))                      \
    /* waits until every op issued so far has finished */                                          \
    X(void, sync, (st_backend *be))                                                                \
    /* page-locked host memory, the source upload_async needs (cpu: alloc); zeroed, 64-byte        \
     * aligned */                                                                                  \
    X(void *, host_alloc, (st_backend *be, size_t bytes))                                          \
    /* releases a block from host_alloc; NULL is ignored */                                        \
    X(void, host_free, (st_backend *be, void *ptr))                                                \
    /* host_alloc memory -> device on a copy stream; returns at once. The copy starts after the    \
     * ops issued before it (dst may still be read) and the ops issued after it wait for the copy; \
     * pinned_src must stay unchanged until upload_fence returns (cpu: memcpy) */                  \
    X(void, upload_async, (st_backend *be, void *dst, const void *pinned_src, size_t bytes))       \
    /* waits until every upload_async issued so far has read its source */                         \
    X(void, upload_fence, (st_backend *be))                                                        \
    /* free and total device memory in bytes (cpu: available and total physical memory) */         \
    X(void, mem_info, (st_backend *be, size_t *free_bytes, size_t *total_bytes))                   \
    /* frees the backend and everything it owns (called by st_backend_close) */                    \
    X(void, destroy, (st_backend *be))                                                             \
                                                                                                   \
    /* ---- elementwise and BLAS-1 ---- */                                                         \
    /* x[i] = value */                                                                             \
    X(void, fill, (st_backend *be, float *x, float value, size_t n))                               \
    /* x *= alpha */                                                                               \
    X(void, scale, (st_backend *be, float *x, float alpha, size_t n))                              \
    /* y += alpha*x */                                                                             \
    X(void, axpy, (st_backend *be, float *y, float alpha, const float *x, size_t n))               \
    /* sum of x[i]^2, host result */                                                               \
    X(double, sum_squares, (st_backend *be, const float *x, size_t n))                             \
    /* 1 when no x[i] is NaN or infinite, host result */                                           \
    X(int, all_finite, (st_backend *be, const float *x, size_t n))                                 \
                                                                                                   \
    /* ---- GEMM ---- */                                                                           \
    /* row-major: C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C */                           \
    X(void, gemm, (st_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,     \
                   const float *a, int lda, const float *b, int ldb, float beta, float *c,         \
                   int ldc))                                                                       \
                                                                                                   \
    /* ---- convolution (cross-correlation), bias (K) or NULL ---- */                              \
    /* Conv kernels live in the BACKEND LAYOUT (cpu: the blocked layout oneDNN picks, channels     \
     * maybe zero-padded; cuda: KRSC), never the file layout HWIO (R, S, C, K): they are converted \
     * by conv_weights_import at load and conv_weights_export at save, and no conv call reorders   \
     * them. The layout is fixed per geometry (the desc less n and relu), so one parameter buffer  \
     * serves the plans of every batch size; gradients and optimizer state share it. */            \
    /* cached per shape */                                                                         \
    X(st_conv_plan *, conv_plan, (st_backend *be, const st_conv_desc *d))                          \
    /* 1 when plans with d->bf16 run on bf16 hardware (cpu: oneDNN's avx512_core_bf16 ISA; cuda:   \
     * compute capability 8.0 or later); 0: callers must not set d->bf16 */                        \
    X(int, conv_bf16_supported, (st_backend *be))                                                  \
    /* floats of one kernel in the backend layout, >= R*S*C*K (padding) */                         \
    X(size_t, conv_weights_numel, (st_backend *be, const st_conv_plan *p))                         \
    /* host HWIO (R, S, C, K) -> w (conv_weights_numel floats), padding zeroed */                  \
    X(void, conv_weights_import, (st_backend *be, st_conv_plan *p, const float *hwio_host,         \
                                  float *w))                                                       \
    /* w -> host HWIO (R, S, C, K); waits, so hwio_host is ready on return */                      \
    X(void, conv_weights_export, (st_backend *be, st_conv_plan *p, const float *w,                 \
                                  float *hwio_host))                                               \
    /* y = relu?(conv(x, w) + bias); ReLU when the plan's d->relu */                               \
    X(void, conv_forward, (st_backend *be, st_conv_plan *p, const float *x, const float *w,        \
                           const float *bias, float *y))                                           \
    /* dx = gradient of the input (overwritten) */                                                 \
    X(void, conv_backward_data, (st_backend *be, st_conv_plan *p, const float *dy, const float *w, \
                                 float *dx))                                                       \
    /* dw (backend layout, padding zero) and dbias (K) overwritten; dbias may be NULL */           \
    X(void, conv_backward_filter, (st_backend *be, st_conv_plan *p, const float *x,                \
                                   const float *dy, float *dw, float *dbias))                      \
    /* Training's backward: conv_backward_filter (dw NULL: skipped) then conv_backward_data (dx  \
     * NULL: skipped) on one conversion of dy (cpu bf16 plans: dy rounded once, not twice).        \
     * data_seconds (NULL, or profiling): set to the backward-data pass's seconds, less its        \
     * reorders (counted in reorder_seconds). */                                                   \
    X(void, conv_backward, (st_backend *be, st_conv_plan *p, const float *x, const float *dy,      \
                            const float *w, float *dw, float *dbias, float *dx,                    \
                            double *data_seconds))                                                 \
    /* Fold an inference-mode batch norm into the conv before it (frozen layers), at load time:    \
     * w_out = w * gamma*rstd per output channel, b_out = (b - mean)*gamma*rstd + beta; w, w_out   \
     * in the backend layout; b may be NULL. */                                                    \
    X(void, conv_fold_bn, (st_backend *be, st_conv_plan *p, const float *w, const float *b,        \
                           const float *gamma, const float *beta, const float *mean,               \
                           const float *var, float eps, float *w_out, float *b_out))               \
    /* A conv call may reuse what it derived from a kernel w on an earlier call (bf16 plans:      \
     * w rounded to bf16) until w is written by conv_weights_import or conv_fold_bn, or this says \
     * w was written otherwise (freed 0: optimizer step, raw copy) or is about to be freed (1). */ \
    X(void, conv_weights_changed, (st_backend *be, const float *w, int freed))                     \
                                                                                                   \
    /* ---- batch norm over NHWC rows ---- */                                                      \
    /* batch statistics (the global batch's over the ranks when d->sync); save_mean/save_rstd      \
     * (C) are kept for backward, running stats updated */                                         \
    X(void, bn_forward_train, (st_backend *be, const st_bn_desc *d, const float *x,                \
                               const float *gamma, const float *beta, float *y, float *save_mean,  \
                               float *save_rstd, float *running_mean, float *running_var))         \
    /* running statistics, nothing updated */                                                      \
    X(void, bn_forward_infer, (st_backend *be, const st_bn_desc *d, const float *x,                \
                               const float *gamma, const float *beta, const float *running_mean,   \
                               const float *running_var, float *y))                                \
    /* y is the fused forward output (for the ReLU mask) or NULL when d->relu == 0; d->sync: dx    \
     * from the global batch's sums, dgamma/dbeta over this rank's rows only */                    \
    X(void, bn_backward, (st_backend *be, const st_bn_desc *d, const float *x, const float *y,     \
                          const float *dy, const float *gamma, const float *save_mean,             \
                          const float *save_rstd, float *dx, float *dgamma, float *dbeta))         \
                                                                                                   \
    /* ---- activations and residuals ---- */                                                      \
    /* y = max(x, 0); y may be x */                                                                \
    X(void, relu_forward, (st_backend *be, const float *x, float *y, size_t n))                    \
    /* dx = dy where the forward output y > 0, else 0; dx may be dy */                             \
    X(void, relu_backward, (st_backend *be, const float *y, const float *dy, float *dx, size_t n)) \
    /* y = relu?(a + b); y may be a or b (the model adds in place, infer/model/add.c) */           \
    X(void, add_forward, (st_backend *be, const float *a, const float *b, float *y, size_t n,      \
                          int relu))                                                               \
                                                                                                   \
    /* ---- pooling ---- */                                                                        \
    /* window max; padded cells per d->pad_with_zero */                                            \
    X(void, maxpool_forward, (st_backend *be, const st_pool_desc *d, const float *x, float *y))    \
    /* dx overwritten; each window's dy goes to its first maximum in scan order */                 \
    X(void, maxpool_backward, (st_backend *be, const st_pool_desc *d, const float *x,              \
                               const float *y, const float *dy, float *dx))                        \
    /* global average / max / GeM over H*W: (N, H*W, C) -> (N, C) */                               \
    X(void, gpool_forward, (st_backend *be, const st_gpool_desc *d, const float *x, float *y))     \
    /* dx overwritten; y is the forward output */                                                  \
    X(void, gpool_backward, (st_backend *be, const st_gpool_desc *d, const float *x,               \
                             const float *y, const float *dy, float *dx))                          \
                                                                                                   \
    /* ---- dense: y[n,out] = x[n,in] * w[in,out] + b (Keras kernel layout) ---- */                \
    /* b may be NULL */                                                                            \
    X(void, dense_forward, (st_backend *be, int n, int in, int out, const float *x,                \
                            const float *w, const float *b, float *y))                             \
    /* dx, db may be NULL */                                                                       \
    X(void, dense_backward, (st_backend *be, int n, int in, int out, const float *x,               \
                             const float *w, const float *dy, float *dx, float *dw, float *db))    \
                                                                                                   \
    /* ---- row-wise L2 normalisation ---- */                                                      \
    /* y = x / max(||x||, eps); norms (N) kept for backward */                                     \
    X(void, l2norm_forward, (st_backend *be, int n, int d, const float *x, float *y,               \
                             float *norms, float eps))                                             \
    /* dx from the forward output y and its norms */                                               \
    X(void, l2norm_backward, (st_backend *be, int n, int d, const float *y, const float *norms,    \
                              const float *dy, float *dx))                                         \
                                                                                                   \
    /* ---- losses ---- */                                                                         \
    /* softmax cross-entropy with label smoothing; labels int32 (N) on device;                     \
     * probs (N,K) kept for backward; loss_rows (N) per-sample loss; stats (device) overwritten. \
     * A label outside [0, K): the cpu fails (ST_CHECK), cuda gives the row a NaN loss (checking  \
     * would read back; train/loss.c checks its host labels first) */                            \
    X(void, xent_forward, (st_backend *be, int n, int k, const float *logits,                      \
                           const int32_t *labels, float smoothing, float *probs,                   \
                           float *loss_rows, st_xent_stats *stats))                                \
    /* dlogits = scale * (probs - target), scale usually 1/N */                                    \
    X(void, xent_backward, (st_backend *be, int n, int k, const float *probs,                      \
                            const int32_t *labels, float smoothing, float scale,                   \
                            float *dlogits))                                                       \
    /* triplet loss on a PK batch: loss, stats (device) and the gradient w.r.t. emb in one pass;   \
     * dist is workspace (N, N); demb overwritten */                                               \
    X(void, triplet_loss, (st_backend *be, const st_triplet_desc *d, const float *emb,             \
                           const int32_t *labels, float *dist, float *demb,                        \
                           st_triplet_stats *stats))                                               \
                                                                                                   \
    /* ---- optimizer ---- */                                                                      \
    /* status (device) from the gradients of one step, nothing read back: sum_squares = the sum of \
     * x^2 over count spans (a device array; cpu: each span summed alone, then added in order),    \
     * then norm, clip (clip_norm > 0), skip and skipped by st_optim_status_decide */              \
    X(void, optim_grad_norm, (st_backend *be, const st_span *spans, int count, float clip_norm,    \
                              st_optim_status *status))                                            \
    /* one optimizer step over a flat slice of the parameter arena; m, v optimizer state           \
     * (unused ones may be NULL). status (device) NULL: d as given; else nothing happens when      \
     * status->skip, gradients are multiplied by clip_coef when status->clip, and the Adam         \
     * bias-correction step is d->step - status->skipped */                                        \
    X(void, optim_step, (st_backend *be, const st_optim_desc *d, float *param,                     \
                         const float *grad, float *m, float *v, size_t n,                          \
                         const st_optim_status *status))                                           \
                                                                                                   \
    /* ---- retrieval ---- */                                                                      \
    /* merge one tile of scores (Q, tile) into running per-query top-k lists (Q, k) kept sorted    \
     * best first; ties go to the lower index; base = gallery index of column 0. Empty slots       \
     * hold index -1 and the worst score. */                                                       \
    X(void, topk_merge, (st_backend *be, int q, int tile, int64_t base, int k,                     \
                         int larger_is_better, const float *scores, float *best_scores,            \
                         int64_t *best_index))

/* ---- the interface ------------------------------------------------------------------ */

#define ST_BACKEND_MEMBER_(ret, op, params) ret(*op) params;

struct st_backend {
    const char *name; /* "cpu" or "cuda" */
    void *ctx;        /* backend-private state */
    int threads;
    int profile;            /* 1: ops add the time of their internal layout conversions */
    double reorder_seconds; /*    (oneDNN reorders in cpu convs) here; 0 stays 0 */
    ST_BACKEND_OPS(ST_BACKEND_MEMBER_) /* one function pointer per op, in list order */
};

#undef ST_BACKEND_MEMBER_

/* ---- registry and helpers (backend.c) ------------------------------------------------ */

/* Open "cpu" or "cuda" with the given thread count (0 = all cores). NULL with st_error_get()
 * set when the backend is not compiled in or no device exists. */
st_backend *st_backend_open(const char *name, int threads);
void st_backend_close(st_backend *be);

/* Output sizes from input, window, stride and padding; fails on a window larger than the input. */
void st_conv_desc_finish(st_conv_desc *d);
void st_pool_desc_finish(st_pool_desc *d);

#endif
