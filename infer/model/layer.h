/*
 * layer.h: the private layer record of the ResNet model and the functions the files of the
 * model module (infer/model/, model.h lists them) share. Code outside the module includes it
 * only in tests (to check the layout); callers use model.h.
 *
 * The model is a fixed sequence of Keras-named layers (model.h). Work is done by "steps": a step
 * is one backend call (or a few for the residual add) owned by its compute layer, the layer with
 * exec == own index. Weightless neighbours are fused into a step:
 *   ZeroPadding2D   -> the conv / max-pool that follows (explicit pad amounts in the descriptor)
 *   ReLU            -> the BN or add before it (fused ReLU flag)
 *   frozen BN       -> the frozen conv before it (weights folded with be->conv_fold_bn)
 * A step reads the materialized outputs of its producers (in_mat) and writes one materialized
 * tensor: layers[step.last].out. Layers inside a fused group that is not their last have no
 * materialized output (out.data == NULL), nor do padding layers.
 *
 * Memory (all from the model's arenas, laid out twice: sizing then commit):
 *   out.data  (FP32, or bf16 bit patterns where the step's bf16_out says so)
 *             "kept" outputs (the values backward reads, the delimiting layer, the head) get
 *             their own block; every other output shares a small pool of reused blocks (slots),
 *             so a frozen trunk costs a few activation buffers only. A residual add overwrites
 *             one input that nothing else reads (in place): that input is written straight into
 *             the add's buffer. A trainable residual branch's last BN output is neither kept nor
 *             given a slot: backward reads the BN's input and the add's output only.
 *   grad      gradient of a materialized output (same shape), only for steps that need a
 *             gradient; backbone gradients share another slot pool, head gradients are
 *             m->d_features / d_embedding / d_logits. A BN read by a residual add only
 *             (step.grad_via_add) has no buffer of its own: its grad is the add's output
 *             gradient, which the add's backward masks by its ReLU in place.
 */
#ifndef ST_LAYER_H
#define ST_LAYER_H

#include "model.h"

typedef enum {
    ST_LAYER_INPUT,
    ST_LAYER_ZEROPAD, /* Keras ZeroPadding2D, symmetric */
    ST_LAYER_CONV,
    ST_LAYER_BN,
    ST_LAYER_RELU,
    ST_LAYER_MAXPOOL,
    ST_LAYER_ADD,
    ST_LAYER_GPOOL,   /* the head's global pooling, named avg_pool whatever its kind */
    ST_LAYER_DENSE,
    ST_LAYER_L2NORM
} st_layer_kind;

enum { ST_LAYER_NAME_MAX = 48 };

/* Geometry as the builder declared it (Keras semantics, before fusion). */
typedef struct st_layer_geom {
    int filters;   /* conv K, dense units */
    int kernel;    /* square window (conv, max-pool) */
    int stride;
    int pad;       /* own symmetric zero padding (conv SAME / torchvision padding; ZeroPadding2D) */
    int has_bias;  /* conv */
    float eps;     /* BN */
} st_layer_geom;

/* What the compute layer of a fused group does; valid when layer.exec == its own index. */
typedef struct st_step {
    int last;          /* layer whose output this step materializes */
    int in_mat[2];     /* materialized producer layers (padding resolved), -1 when unused */
    int n_in;
    int relu;          /* ReLU fused at the end */
    int fold_bn;       /* conv: BN layer folded into this conv, -1 none */
    int trains;        /* has trainable parameters (gets parameter gradients) */
    int needs_grad;    /* gradient of its output is needed (it or something below trains) */
    int accumulate[2]; /* backward: input k's gradient already holds another consumer's part */
    int grad_via_add;  /* BN without ReLU whose only reader is a residual add: that add's layer
                        * index, else -1. Its backward reads the add's output gradient, which
                        * the add masked by its ReLU in place (the add's gradient passes to its
                        * inputs unchanged otherwise), so the add writes no gradient for it; its
                        * output's grad points to the add's output gradient */

    int bf16_out;      /* BN or bf16 conv whose output only bf16 convs and BNs read: stored as
                        * bf16 (st_bn_desc.y_bf16 / conv.y_bf16; the readers' conv.x_bf16 /
                        * bf16_in), half the bytes (plan.c) */
    int bf16_in;       /* BN whose input is a conv's bf16 output (st_bn_desc.x_bf16) */
    int bf16_dx;       /* BN whose input only it reads, the output of a bf16 conv that trains or
                        * passes a gradient on: its backward writes that conv's dy as bf16
                        * (st_bn_desc.dx_bf16; the conv's conv.dy_bf16) */

    st_conv_desc conv; /* full batch; plan for the full batch */
    st_conv_plan *plan;
    st_pool_desc pool;
    st_gpool_desc gpool;
    float bn_eps;

    /* parameter views (device memory); NULL where absent */
    float *w, *b;                       /* conv kernel (backend layout) / dense (in,out); bias (K) */
    float *gamma, *beta, *mean, *var;   /* BN (C); for a folded conv, the folded BN's */
    float *dw, *db, *dgamma, *dbeta;    /* gradients; NULL when frozen */
    float *w_fold, *b_fold;             /* folded conv kernel (backend layout) and bias (K) */
    float *save_mean, *save_rstd;       /* trainable BN: batch statistics kept for backward (C) */
    float *norms;                       /* L2 norm: row norms (N) */
    float *scratch;                     /* backward workspace shared by all steps, as large as
                                         * the largest gradient: accumulation partner, sink for
                                         * a dx nobody reads; NULL in an inference model */
} st_step;

struct st_layer {
    char name[ST_LAYER_NAME_MAX];
    st_layer_kind kind;
    int in[2];              /* producer layer indices as in Keras, -1 when unused */
    int n_in;
    st_tensor out;          /* full-batch shape; data only for materialized outputs */
    float *grad;            /* gradient of out (same shape) when a step needs it, else NULL */
    int exec;               /* index of the layer whose step computes this layer */
    int materialized;       /* out is written by a step (last layer of its group, or the input) */
    int kept;               /* out has its own block and stays valid after forward */
    int first_param, n_params; /* slice of m->params */
    st_layer_geom geom;
    st_step step;
};

/* ---- building, planning, memory, init: the stages of st_model_create (model.c) ---------- */

/* builder.c: the layer sequence and parameter table of m->arch and m->config (trunk + head). */
void st_model_build(st_model *m);

/* plan.c: fuse layers into steps (exec, step.last, fold_bn, relu, in_mat), fill the step
 * descriptors, trainability and gradient needs, and make the full-batch conv plans. Needs
 * m->freeze_index and st_param.trainable. */
void st_model_plan(st_model *m);

/* memory.c: decide the kept outputs and the slot reuse, size the arenas with a dry layout,
 * commit them and lay everything out (parameter values, gradients, activations, step views,
 * head tensors). */
void st_model_layout_memory(st_model *m);

/* init.c: deterministic He / Glorot kernels, zero biases and betas, unit gammas, moving
 * statistics (0, 1), from seed; uploaded through st_param_upload. */
void st_model_init_params(st_model *m, uint64_t seed);

/* ---- layer kinds: forward and backward side by side (conv.c, bn.c, pool.c, add.c, dense.c,
 * l2norm.c) ------------------------------------------------------------------------------
 * forward: computes layers[step.last].out for the first n images (training: BN in
 * batch-statistics mode where the step trains).
 * backward: reads layers[step.last].grad, OVERWRITES the parameter gradients of the step and
 * writes the gradient of each input that needs one (overwrite, or add when step.accumulate).
 * fold (conv): recompute the folded kernel and bias from the conv and BN parameters. */
void st_conv_step_forward(st_model *m, const st_layer *l, int n);
void st_conv_step_backward(st_model *m, const st_layer *l, int n);
void st_conv_step_fold(st_model *m, const st_layer *l);
void st_bn_step_forward(st_model *m, const st_layer *l, int n, int training);
void st_bn_step_backward(st_model *m, const st_layer *l, int n);
void st_pool_step_forward(st_model *m, const st_layer *l, int n); /* max-pool and global pool */
void st_pool_step_backward(st_model *m, const st_layer *l, int n);
void st_add_step_forward(st_model *m, const st_layer *l, int n);
void st_add_step_backward(st_model *m, const st_layer *l, int n);
void st_dense_step_forward(st_model *m, const st_layer *l, int n);
void st_dense_step_backward(st_model *m, const st_layer *l, int n);
void st_l2norm_step_forward(st_model *m, const st_layer *l, int n);
void st_l2norm_step_backward(st_model *m, const st_layer *l, int n);

/* ---- shared by the steps (model.c) ---------------------------------------------------- */

/* Tensors of a step: its materialized output, and its input k (padding resolved). */
const st_layer *st_step_output(const st_model *m, const st_layer *l);
const st_layer *st_step_input(const st_model *m, const st_layer *l, int k);
/* Floats of the first n images of t. */
size_t st_batch_numel(st_tensor t, int n);
/* Backward: input k needs its gradient when the step that produced it needs one. */
int st_step_input_needs_grad(const st_model *m, const st_layer *l, int k);
/* Backward: where the step writes input k's gradient: the input's own buffer, or the scratch
 * when the value must be added to another consumer's part (or nobody reads it); then
 * st_step_finish_dx adds the scratch in when it must. */
float *st_step_dx(const st_model *m, const st_layer *l, int k);
void st_step_finish_dx(st_model *m, const st_layer *l, int k, int n);

#endif
