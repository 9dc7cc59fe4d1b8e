/*
 * weights_h5.h: ResNet weights in HDF5 files, read and written by layer NAME
 * (facts: ../shared/docs/resnet-weights-hdf5.md; section numbers below refer to it).
 *
 * Files understood (st_weights_format):
 *   - Keras 2 `model.save_weights('x.h5')` (the keras.applications downloads): root attribute
 *     layer_names, one group per layer with attribute weight_names, datasets
 *     <layer>/<layer>/<weight>:0 (1.1, 1.2); string lists fixed NULLPAD, variable-length,
 *     chunked layer_names0.., empty float64 weight_names of weightless layers.
 *   - Keras 2 `model.save('x.h5')`: the same under /model_weights (1.4).
 *   - Keras 3 `x.weights.h5`: /layers/<class>[_N]/vars/<i> with the layer name in the vars
 *     group's attribute `name` (Keras >= 3.6); files without names are refused (1.6).
 *   - tools/torchvision2h5.py conversions: Keras 2 layout + root attributes arch (tv_resnetNN),
 *     family, block, stride_in, bn_epsilon, preprocess (5.4).
 *   - simtune exports (st_weights_save) and checkpoints (train/checkpoint.c, weights under
 *     /model_weights): Keras 2 layout + root attributes arch, family, bn_epsilon, preprocess,
 *     simtune_format, simtune_metadata (JSON), and the embedding recipe (st_weights_recipe):
 *     embed_image_size, embed_resize_short, embed_crop, embed_pool, embed_gem_p, embed_dim,
 *     embed_normalize - how the model was trained to see images, which `simtune embed` and
 *     `simtune search` follow unless told otherwise (docs/formats.md).
 *
 * Shapes are the Keras ones everywhere: conv kernels (R, S, C_in, K) HWIO, dense kernels
 * (in, out), vectors (C). A classifier group named predictions, probs or fc1000 (pitfall 9)
 * maps onto the model's `predictions` layer.
 *
 * Callers: `simtune inspect` (probe), embed/train/eval (load), train (save, and checkpoint.c
 * through st_weights_write_group). Errors: -1 with st_error_get() "<file>: <layer>: ..." + HINT.
 */
#ifndef ST_WEIGHTS_H5_H
#define ST_WEIGHTS_H5_H

#include <hdf5.h>
#include <stddef.h>

#include "model/model.h"

typedef enum {
    ST_WEIGHTS_KERAS2,            /* save_weights: layer_names at the root */
    ST_WEIGHTS_KERAS2_FULL_MODEL, /* save: layer_names under /model_weights */
    ST_WEIGHTS_KERAS3,            /* .weights.h5 with named vars groups */
    ST_WEIGHTS_TORCHVISION,       /* tools/torchvision2h5.py */
    ST_WEIGHTS_SIMTUNE_EXPORT,    /* st_weights_save */
    ST_WEIGHTS_CHECKPOINT         /* train/checkpoint.c */
} st_weights_format;

const char *st_weights_format_name(st_weights_format f);

typedef struct st_weights_tensor {
    char *weight;    /* kernel | bias | gamma | beta | moving_mean | moving_variance */
    char *dataset;   /* path relative to the weights group, e.g. "conv1_conv/conv1_conv/kernel:0" */
    int rank;
    long long dims[4];
    size_t numel;
} st_weights_tensor;

typedef struct st_weights_layer {
    char *name;      /* group name as stored (a classifier may be "probs" or "fc1000") */
    st_weights_tensor *tensors;
    int n_tensors;
} st_weights_layer;

/* How images become vectors with these weights, as the model was trained (root attributes
 * embed_*; preprocess and arch are the family attributes). Keras and torchvision files have
 * none: present = 0 and the embedder keeps its defaults (224 px, avg pooling). */
typedef struct st_weights_recipe {
    int present;        /* 1 when the file records a recipe */
    int image_size;     /* embed_image_size: centre crop side S */
    int resize_short;   /* embed_resize_short: shorter side resized to this before the crop */
    char pool[8];       /* embed_pool: avg | max | gem (the model's global pooling) */
    float gem_p;        /* embed_gem_p: GeM exponent */
    int normalize;      /* embed_normalize: 1 = vectors L2-normalised */
} st_weights_recipe;

typedef struct st_weights_info {
    st_weights_format format;
    char weights_group[32];     /* "/" or "/model_weights" (Keras 2 layouts); "/layers" Keras 3 */
    char arch[32];              /* detected st_arch_info name, "" when not recognised */
    const st_arch_info *arch_info; /* NULL when not recognised */
    char arch_reason[160];      /* how arch was decided, or why not */
    char classifier[64];        /* classifier group name, "" for notop files */
    int num_classes;            /* classifier outputs, 0 for notop files */
    int embed_dim;              /* `embedding` layer outputs (simtune exports), else 0 */
    float bn_eps;               /* from the root attribute or the family default, 0 if unknown */
    st_preprocess preprocess;   /* valid when arch_info != NULL or preprocess attr present */
    int n_layer_names;          /* layers listed (weighted and weightless) */
    st_weights_layer *layers;   /* weighted layers in file order */
    int n_layers;
    size_t n_params;            /* total floats in all weighted layers */
    char *metadata_json;        /* simtune_metadata root attribute, NULL when absent */
    st_weights_recipe recipe;   /* embed_* root attributes (present = 0 when absent) */
    /* Against the detected architecture's expected weights (empty when arch unknown): */
    char **missing;             /* "layer/weight" expected but absent */
    int n_missing;
    char **unexpected;          /* "layer/weight" present but not part of the architecture */
    int n_unexpected;
    char **mismatched;          /* "layer/weight: file (a,b), expected (c,d)" */
    int n_mismatched;
} st_weights_info;

/* Describe a weight file without loading it: 0, or -1 with st_error_get() set (unreadable,
 * not HDF5, no recognisable layout, Keras 3 file without layer names). */
int st_weights_probe(const char *path, st_weights_info *info);
void st_weights_info_free(st_weights_info *info);

typedef struct st_weights_report {
    st_weights_format format;
    char arch[32];
    int n_tensors;              /* tensors copied into the model */
    size_t n_floats;
    int n_weightless;           /* weightless layer groups skipped */
    char **kept;                /* model weights not in the file, left at initialisation (heads) */
    int n_kept;
    char **ignored;             /* file weights deliberately not loaded, with the reason */
    int n_ignored;
    char **missing;             /* model weights absent from the file (error) */
    int n_missing;
    char **unexpected;          /* file weights the model does not have (error) */
    int n_unexpected;
    char **mismatched;          /* shape mismatches (error) */
    int n_mismatched;
    double seconds;             /* wall time of the whole load */
} st_weights_report;

/* Load the weights of `path` into m by layer and weight name, all or nothing: every shape is
 * checked against st_model_find_param first; all missing, unexpected and mismatched weights are
 * collected into rep (may be NULL) and named in the error. A classifier (or `embedding`) the
 * model lacks or has with another size is ignored and reported; head layers absent from the file
 * keep their initialisation. Fails on weights of another architecture. 0 or -1. */
int st_weights_load(st_model *m, const char *path, st_weights_report *rep);
void st_weights_report_free(st_weights_report *rep);

/* Export m as a Keras 2 legacy file (layer_names = all model layers, weight_names,
 * <layer>/<layer>/<weight>:0) with root attributes arch, family, bn_epsilon, preprocess (the
 * config's, else the architecture's), the embed_* recipe from m's config (input size, pooling,
 * GeM p, embedding head), simtune_format "export" and simtune_metadata (json_metadata, may be
 * NULL). Atomic
 * (path.tmp, fsync, rename). 0 or -1. */
int st_weights_save(const st_model *m, const char *path, const char *json_metadata);

/* The writer behind st_weights_save, for checkpoint.c: the Keras 2 layout of m's layers into an
 * open group plus the family and embed_* root attributes on `root`; path is for messages. */
int st_weights_write_group(const st_model *m, hid_t root, hid_t group, const char *path);

#endif
