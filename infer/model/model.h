/*
 * model.h: the ResNet family as a fixed sequence of named layers (no autograd): the public
 * header of the model module infer/model/ and the one header its callers include.
 *
 * The module, one concern per file: arch.c (the family table), builder.c (the architectures as
 * layer sequences), plan.c (fusion into steps), memory.c (kept outputs, reused slots, arena
 * layout), init.c (deterministic initialisation), param.c (every host <-> device copy of a
 * parameter and its storage size), one file per layer kind with its forward and backward side
 * by side (conv.c, bn.c, pool.c, add.c, dense.c, l2norm.c), model.c (create / free /
 * lookup, the forward and backward walks) and profile.c (counted FLOPs, the --profile timers,
 * precision names). layer.h is the module's private layer record.
 *
 * Every layer carries its Keras name (conv1_conv, conv4_block6_out, post_bn, avg_pool ...), and
 * torchvision models are mapped onto the same scheme (docs/resnet-weights-hdf5 section 5.3), so
 * any layer name can be the delimiting layer of freeze_until. Weightless Keras layers
 * (conv1_pad, pool1_pad, *_relu ...) exist as layers too; their work is fused into a neighbour.
 *
 * Parameters are listed in st_param entries named (layer, weight) with weight one of
 * kernel, bias, gamma, beta, moving_mean, moving_variance and their Keras shapes, so the HDF5
 * loader (infer/weights_h5.c) and the checkpoint writer map files onto a model by name.
 *
 * Memory: four arenas (params, grads, optimizer state is the trainer's, activations), sized by a
 * dry run of the builder and committed once; nothing is allocated in forward or backward.
 * Shapes: input (N, H, W, 3) NHWC, pooled features (N, C_feat), embedding (N, D), logits (N, K).
 */
#ifndef ST_MODEL_H
#define ST_MODEL_H

#include <stdint.h>

#include "../../kernels/arena.h"
#include "../../kernels/backend.h"
#include "../../kernels/tensor.h"
#include "data/transform.h" /* st_preprocess */

typedef enum {
    ST_FAMILY_KERAS_V1,   /* resnet50/101/152: stride on the first 1x1 conv, BN eps 1.001e-5 */
    ST_FAMILY_KERAS_V2,   /* resnet50v2/...: pre-activation, stride in the last block's 3x3 */
    ST_FAMILY_TORCHVISION /* tv_resnet18..152: "v1.5", stride on the 3x3, BN eps 1e-5, no conv bias */
} st_family;


typedef struct st_arch_info {
    const char *name;        /* "resnet50", "resnet101v2", "tv_resnet18", ... */
    st_family family;
    int blocks[4];           /* blocks per stage conv2..conv5 */
    int bottleneck;          /* 1: 1x1-3x3-1x1 (expansion 4); 0: BasicBlock 3x3-3x3 */
    float bn_eps;
    st_preprocess preprocess;
} st_arch_info;

/* NULL when unknown; st_arch_names() lists them for messages, comma-separated. */
const st_arch_info *st_arch_find(const char *name);
const char *st_arch_names(void);

/* Arithmetic of the convolutions (config key `precision`). */
typedef enum {
    ST_PRECISION_FP32,
    ST_PRECISION_BF16 /* bf16 inputs and kernels in convolutions, FP32 accumulation, parameters,
                       * gradients, BN statistics, head, loss (mixed precision, no loss scale) */
} st_precision;

/* "fp32" | "bf16" -> 0 with *out set; -1 otherwise. */
int st_precision_parse(const char *name, st_precision *out);
const char *st_precision_name(st_precision p);

typedef struct st_model_config {
    const char *arch;         /* st_arch_info name */
    int batch;                /* N the arenas are sized for */
    int height, width;        /* input size, each >= 32 */
    int training;             /* 1: built for training (the trainer, training benchmarks and
                               * tests set it): gradient arena, d_* head gradients and the
                               * outputs backward reads; 0: built for inference (embed, eval,
                               * search, inspect, inference benchmarks): no gradient memory at
                               * all, no trainable parameters, every conv+BN pair folded */
    const char *freeze_until; /* NULL or "none": train all; "all": head only; else a layer name.
                               * An inference model (training = 0) keeps the output of this
                               * layer materialised, so it can be read (embed --layer). */
    st_gpool_kind pool;       /* global pooling of the last feature map */
    float gem_p;              /* GeM exponent when pool == ST_GPOOL_GEM */
    int embed_dim;            /* 0: no projection; else dense 'embedding' to D then L2 norm */
    int num_classes;          /* 0: no classifier; else dense 'predictions' to K logits, reading
                               * the normalised embedding when there is one, else the features */
    float bn_momentum;        /* running-statistics momentum in training (PyTorch convention) */
    int sync_bn;              /* 1: a BN that trains normalises with the global batch's
                               * statistics over the ranks of kernels/comm.h (st_bn_desc.sync);
                               * the trainer sets it for data-parallel runs with sync_bn */
    const char *preprocess;   /* caffe | tf | torch the weights are trained with, recorded in
                               * weight files; NULL: the architecture's */
    st_precision precision;   /* BF16 on a backend without bf16 convolutions
                               * (conv_bf16_supported) warns on stderr and builds FP32:
                               * m->config.precision says what runs */
} st_model_config;

typedef struct st_param {
    const char *layer;   /* Keras layer name, e.g. "conv2_block1_1_conv" */
    const char *weight;  /* kernel | bias | gamma | beta | moving_mean | moving_variance */
    int rank;            /* Keras rank: 4 conv kernel HWIO, 2 dense kernel (in,out), 1 vectors */
    int dims[4];
    size_t numel;        /* of the Keras (file) shape dims; see st_param_storage_numel */
    float *value;        /* device memory in the params arena, st_param_storage_numel floats */
    float *grad;         /* device memory in the grads arena; NULL when frozen or not trainable */
    int trainable;       /* 0 for frozen layers and for BN moving statistics */
    int layer_index;     /* index into st_model.layers */
} st_param;

typedef struct st_layer st_layer; /* private to the module (layer.h) */

/* --profile: seconds and calls per kind of work (profile.c). The walks time their steps
 * (conv split into its passes; reorders inside convs counted apart from them); loss and
 * optimizer are timed by their caller with st_profile_begin/end. */
typedef enum {
    ST_PROF_CONV_FWD, ST_PROF_CONV_BWD_DATA, ST_PROF_CONV_BWD_WEIGHTS, ST_PROF_REORDER,
    ST_PROF_BN_FWD, ST_PROF_BN_BWD, ST_PROF_ELTWISE_FWD, ST_PROF_ELTWISE_BWD,
    ST_PROF_POOL_FWD, ST_PROF_POOL_BWD, ST_PROF_HEAD_FWD, ST_PROF_HEAD_BWD,
    ST_PROF_LOSS, ST_PROF_OPTIMIZER, ST_PROF_ROWS
} st_prof_row;

typedef struct st_profile {
    double seconds[ST_PROF_ROWS];
    long calls[ST_PROF_ROWS];
} st_profile;

/* "conv_fwd", "conv_bwd_data", ... (the JSON keys of bench --json). */
const char *st_prof_row_name(st_prof_row row);

/* Counted FLOPs of one step on n images (2 per multiply-add): convolutions (2*N*P*Q*K*R*S*C
 * per pass) and dense layers, the backward passes only where backward runs them. */
typedef struct st_model_flops {
    double forward, backward_data, backward_weights;
} st_model_flops;
typedef struct st_model {
    st_model_config config;
    const st_arch_info *arch;
    st_backend *backend;

    st_layer *layers;     /* the fixed sequence, input first */
    int n_layers;
    int freeze_index;     /* layers [0, freeze_index] are frozen; -1 none */

    st_param *params;
    int n_params;

    st_arena params_arena, grads_arena, acts_arena;

    st_tensor input;      /* (N, H, W, 3), preprocessed */
    st_tensor features;   /* (N, C_feat) pooled */
    st_tensor embedding;  /* (N, D) when embed_dim > 0 */
    st_tensor logits;     /* (N, K) when num_classes > 0 */
    int feature_dim;

    /* Gradients of the head outputs, written by the loss before st_model_backward (below):
     * exactly one of them is the loss's input. data NULL in an inference model. */
    st_tensor d_features, d_embedding, d_logits;

    st_profile *profile;  /* NULL (default): no timing; else the walks add to it (the first
                           * timer also sets backend->profile; the caller clears both) */
} st_model;

/* Build and allocate; returns NULL with st_error_get() set on a bad config (unknown arch,
 * unknown freeze_until layer, input smaller than 32). Parameters start at a deterministic
 * He/Glorot init from seed so a model is usable without weights (tests, the demo). */
st_model *st_model_create(st_backend *be, const st_model_config *cfg, uint64_t seed);
void st_model_free(st_model *m);

/* Layer lookup by Keras name; -1 when absent. Names of all layers for messages and inspect. */
int st_model_layer_index(const st_model *m, const char *name);
const char *st_model_layer_name(const st_model *m, int index);
st_param *st_model_find_param(st_model *m, const char *layer, const char *weight);

/* Forward on m->input (already uploaded and preprocessed) for the first n <= batch images.
 * training: BN in batch-statistics mode (except frozen BNs, always inference) and activations
 * kept for backward. Results in m->features / m->embedding / m->logits. */
void st_model_forward(st_model *m, int n, int training);

/* The backward pass, hand-written per step. Where the gradient enters (the convention with the
 * loss): the loss writes the gradient of the model's FINAL output, the last head layer:
 *   num_classes > 0            -> m->d_logits     (N, K)   e.g. softmax cross-entropy
 *   else embed_dim > 0         -> m->d_embedding  (N, D)   gradient w.r.t. the L2-normalised
 *                                                          embedding, e.g. triplet loss
 *   else                       -> m->d_features   (N, C)   pooled features
 * The other two are overwritten by backward as intermediate head gradients.
 * Walks the steps in reverse from there, for the first n images of the last training forward
 * (st_model_forward(m, n, 1) with the same n), and stops at the delimiting layer: nothing is
 * computed for frozen layers, and the input gradient of the first trainable conv is not
 * computed when nothing below it trains. It OVERWRITES the gradient of every trainable
 * parameter (st_param.grad); BN moving statistics get none. A model built for inference has no
 * gradient memory: backward on it stops with ST_CHECK. Callers: the trainer, bench, tests.
 * It also takes the trainable conv kernels as about to change (the optimizer step that follows),
 * so their bf16 copies are rounded again at the next forward. */
void st_model_backward(st_model *m, int n);

/* Call after writing parameters directly (weight loading, checkpoint restore, copying between
 * models): refreshes everything derived from them, such as BN folded into frozen convolutions
 * and the bf16 copies of conv kernels (kernels/cpu/conv.c). */
void st_model_weights_changed(st_model *m);

/* The output tensor of a layer (FP32); data is NULL when the output is fused into the next step or
 * lives in a reused buffer (for inference, name the layer in freeze_until to keep it: the
 * delimiting layer is also never one of a bf16 model's bf16-stored operands). */
st_tensor st_model_layer_output(const st_model *m, int index);

/* The FLOPs the walks compute for n images (profile.c). training: forward and backward as
 * st_model_backward runs them; 0: the forward only. */
st_model_flops st_model_count_flops(const st_model *m, int n, int training);

/* Time one piece of work into m->profile (no-ops when it is NULL): begin syncs the backend and
 * reads the clock; end syncs again and adds the time, less the reorders the backend timed
 * inside (added to ST_PROF_REORDER), to row. */
typedef struct st_profile_mark {
    double t, reorder;
} st_profile_mark;
st_profile_mark st_profile_begin(st_model *m);
void st_profile_end(st_model *m, st_prof_row row, st_profile_mark mark);

/* Parameters between host and device (infer/model/param.c). On the host a parameter is in its
 * file layout: p->numel floats of the Keras shape p->dims (HWIO conv kernels, (in, out) dense
 * kernels). On the device it takes st_param_storage_numel(m, p) floats, in the layout the
 * backend computes with; the parameter, gradient and optimizer-state buffers of p are all that
 * size and layout. Every copy of a parameter value (weights, checkpoints, init, copies between
 * models) and of a same-shaped state buffer (optimizer moments) goes through these two, so a
 * backend's own layout is converted here only. device is p->value or a buffer of its size. */
size_t st_param_storage_numel(const st_model *m, const st_param *p);
void st_param_upload(const st_model *m, const st_param *p, const float *host, float *device);
void st_param_download(const st_model *m, const st_param *p, const float *device, float *host);

#endif
