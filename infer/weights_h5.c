/*
 * weights_h5.c: probe, load and save ResNet weights in the Keras HDF5 layouts (contract in
 * weights_h5.h; facts and section numbers from resnet-weights-hdf5.md).
 *
 * Reading works in two phases so a load is all or nothing: scan() lists every weighted layer of
 * the file with its datasets and shapes (metadata only), then st_weights_load() matches that
 * list against the model by name, and only when everything fits reads each dataset straight
 * into one reused host buffer and uploads it once per tensor.
 */
#include "weights_h5.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/base/clock.h"
#include "data/base/fileio.h"
#include "data/base/text.h"
#include "../kernels/check.h"
#include "h5util.h"
#include "model/model.h"

/* ---- small utilities ------------------------------------------------------------------- */

static void strvec_push(char ***vec, int *n, const char *fmt, ...) ST_PRINTF(3, 4);
static void strvec_push(char ***vec, int *n, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    *vec = realloc(*vec, (size_t)(*n + 1) * sizeof **vec);
    ST_CHECK(*vec, "out of memory growing a name list");
    (*vec)[(*n)++] = ST_STRDUP(buf);
}

static void strvec_free(char ***vec, int *n) {
    for (int i = 0; i < *n; i++) free((*vec)[i]);
    free(*vec);
    *vec = NULL;
    *n = 0;
}

/* "(7, 7, 3, 64)" */
static const char *dims_text(char *buf, size_t size, int rank, const long long *dims) {
    size_t used = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < rank && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", dims[i]);
    if (used < size) snprintf(buf + used, size - used, rank == 1 ? ",)" : ")");
    return buf;
}

const char *st_weights_format_name(st_weights_format f) {
    switch (f) {
    case ST_WEIGHTS_KERAS2: return "keras2 (save_weights)";
    case ST_WEIGHTS_KERAS2_FULL_MODEL: return "keras2 full model (/model_weights)";
    case ST_WEIGHTS_KERAS3: return "keras3 (.weights.h5, named vars)";
    case ST_WEIGHTS_TORCHVISION: return "torchvision conversion (tools/torchvision2h5.py)";
    case ST_WEIGHTS_SIMTUNE_EXPORT: return "simtune export (keras2 layout)";
    case ST_WEIGHTS_CHECKPOINT: return "simtune checkpoint";
    }
    return "unknown";
}

static const char *family_name(st_family f) {
    switch (f) {
    case ST_FAMILY_KERAS_V1: return "keras_v1";
    case ST_FAMILY_KERAS_V2: return "keras_v2";
    case ST_FAMILY_TORCHVISION: return "torchvision";
    }
    return "unknown";
}

static int is_head_layer(const char *name) {
    return strcmp(name, "predictions") == 0 || strcmp(name, "embedding") == 0;
}

/* ---- scanning the file ----------------------------------------------------------------- */

static st_weights_tensor *add_tensor(st_weights_layer *layer) {
    layer->tensors = realloc(layer->tensors, (size_t)(layer->n_tensors + 1) * sizeof *layer->tensors);
    ST_CHECK(layer->tensors, "out of memory listing tensors");
    st_weights_tensor *t = &layer->tensors[layer->n_tensors++];
    memset(t, 0, sizeof *t);
    return t;
}

static st_weights_layer *add_layer(st_weights_info *info, const char *name) {
    info->layers = realloc(info->layers, (size_t)(info->n_layers + 1) * sizeof *info->layers);
    ST_CHECK(info->layers, "out of memory listing layers");
    st_weights_layer *l = &info->layers[info->n_layers++];
    memset(l, 0, sizeof *l);
    l->name = ST_STRDUP(name);
    return l;
}

/* Fill the shape of t from its dataset (relative to root); where = layer name for messages. */
static int tensor_shape(hid_t root, st_weights_tensor *t, const char *path, const char *where) {
    if (st_h5_dataset_shape(root, t->dataset, &t->rank, t->dims, 4, path, where) != 0) return -1;
    t->numel = 1;
    for (int i = 0; i < t->rank; i++) t->numel *= (size_t)t->dims[i];
    return 0;
}

/* "conv1_conv/kernel:0" -> "kernel"; "conv1_conv_1/moving_mean:0" -> "moving_mean" (1.1, 1.7) */
static char *weight_id(const char *weight_name) {
    char *id = st_path_stem(weight_name, ":");
    ST_CHECK(id != NULL, "out of memory");
    return id;
}

static int known_weight_id(const char *id) {
    static const char *ids[] = {"kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance"};
    for (int i = 0; i < 6; i++)
        if (strcmp(id, ids[i]) == 0) return 1;
    return 0;
}

/* Name a layer's tensors by position, the order Keras stores them in (trainable then
 * non-trainable, 1.1): conv/dense kernel [, bias]; batch norm gamma, beta, moving_mean,
 * moving_variance. Replaces existing names. -1 when the layout fits neither kind. */
static int name_by_position(st_weights_layer *layer) {
    static const char *bn_ids[] = {"gamma", "beta", "moving_mean", "moving_variance"};
    static const char *dense_ids[] = {"kernel", "bias"};
    int kernel_first = layer->tensors[0].rank >= 2;
    if (kernel_first ? layer->n_tensors > 2 : layer->n_tensors != 4) return -1;
    for (int k = 0; k < layer->n_tensors; k++) {
        free(layer->tensors[k].weight);
        layer->tensors[k].weight = ST_STRDUP(kernel_first ? dense_ids[k] : bn_ids[k]);
    }
    return 0;
}

/* Keras 2 layout under group g (1.1): layer_names, weight_names, datasets by those names. */
static int scan_keras2(hid_t g, st_weights_info *info, const char *path) {
    st_strlist names;
    int rc = st_h5_read_strlist(g, "layer_names", &names, path, info->weights_group);
    if (rc <= 0) {
        if (rc == 0) st_error_set("%s: %s: attribute 'layer_names' is missing", path, info->weights_group);
        return -1;
    }
    info->n_layer_names = names.n;
    for (int i = 0; i < names.n && rc >= 0; i++) {
        const char *lname = names.items[i];
        if (!st_h5_has(g, lname)) {
            rc = st_error_set("%s: layer '%s' is listed in layer_names but has no group; HINT: "
                              "the file is truncated or was edited",
                              path, lname);
            break;
        }
        hid_t lg = H5Gopen2(g, lname, H5P_DEFAULT);
        if (lg < 0) {
            rc = st_error_set("%s: layer '%s': not a group", path, lname);
            break;
        }
        st_strlist wnames; /* emptied by the reader itself when it fails */
        rc = st_h5_read_strlist(lg, "weight_names", &wnames, path, lname);
        if (rc > 0 && wnames.n > 0) {
            st_weights_layer *layer = add_layer(info, lname);
            for (int k = 0; k < wnames.n && rc >= 0; k++) {
                st_weights_tensor *t = add_tensor(layer);
                t->weight = weight_id(wnames.items[k]);
                size_t len = strlen(lname) + strlen(wnames.items[k]) + 2;
                t->dataset = ST_MALLOC(len);
                snprintf(t->dataset, len, "%s/%s", lname, wnames.items[k]);
                if (tensor_shape(g, t, path, lname) != 0) rc = -1;
            }
            /* Unfamiliar weight names (other writers): fall back to Keras' storage order. */
            int familiar = 1;
            for (int k = 0; k < layer->n_tensors; k++) familiar &= known_weight_id(layer->tensors[k].weight);
            if (rc >= 0 && !familiar && name_by_position(layer) != 0)
                rc = st_error_set("%s: layer '%s': weights %s... are neither conv/dense nor batch "
                                  "norm (in Keras order)",
                                  path, lname, layer->tensors[0].weight);
        }
        st_strlist_free(&wnames);
        H5Gclose(lg);
    }
    st_strlist_free(&names);
    return rc < 0 ? -1 : 0;
}

typedef struct {
    char **names;
    int n;
} child_names;

static herr_t collect_child(hid_t g, const char *name, const H5L_info_t *li, void *data) {
    (void)g;
    (void)li;
    child_names *c = data;
    strvec_push(&c->names, &c->n, "%s", name);
    return 0;
}

/* Keras 3 .weights.h5 (1.6): /layers/<class>[_N]/vars/<i>, layer name in the vars attr `name`. */
static int scan_keras3(hid_t file, st_weights_info *info, const char *path) {
    hid_t layers = H5Gopen2(file, "layers", H5P_DEFAULT);
    if (layers < 0) return st_error_set("%s: /layers: not a group", path);
    child_names children = {0};
    hsize_t idx = 0;
    H5Literate(layers, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_child, &children);
    info->n_layer_names = children.n;
    int rc = 0;
    for (int i = 0; i < children.n && rc == 0; i++) {
        char vars_path[512], where[600];
        snprintf(vars_path, sizeof vars_path, "%s/vars", children.names[i]);
        snprintf(where, sizeof where, "/layers/%s", vars_path);
        if (!st_h5_has(layers, vars_path)) continue;
        hid_t vars = H5Gopen2(layers, vars_path, H5P_DEFAULT);
        H5G_info_t gi;
        if (vars < 0 || H5Gget_info(vars, &gi) < 0) {
            rc = st_error_set("%s: %s: not a group", path, where);
        } else if (gi.nlinks > 0) {
            char *lname = NULL;
            int has_name = st_h5_read_string_attr(vars, "name", &lname, path, where);
            if (has_name == 0)
                rc = st_error_set("%s: %s: Keras 3 .weights.h5 without layer names (no 'name' "
                                  "attribute, Keras < 3.6), so its %d tensors cannot be matched "
                                  "by name; HINT: re-save with `model.save_weights('x.h5')` from "
                                  "a legacy path or convert",
                                  path, where, (int)gi.nlinks);
            else if (has_name < 0)
                rc = -1;
            for (int k = 0; rc == 0 && k < (int)gi.nlinks; k++) {
                st_weights_layer *layer = k == 0 ? add_layer(info, lname) : &info->layers[info->n_layers - 1];
                st_weights_tensor *t = add_tensor(layer);
                char ds[600];
                snprintf(ds, sizeof ds, "%s/%d", vars_path, k);
                t->dataset = ST_STRDUP(ds);
                if (tensor_shape(layers, t, path, lname) != 0) rc = -1;
            }
            if (rc == 0 && name_by_position(&info->layers[info->n_layers - 1]) != 0)
                rc = st_error_set("%s: %s (layer '%s'): %d variables of an unknown layer kind "
                                  "(expected conv/dense kernel [+ bias] or 4 batch-norm vectors)",
                                  path, where, lname, (int)gi.nlinks);
            free(lname);
        }
        if (vars >= 0) H5Gclose(vars);
    }
    strvec_free(&children.names, &children.n);
    H5Gclose(layers);
    return rc;
}

/* ---- the expected weights of an architecture (sections 2.2-2.7, 5.3) ------------------- */

typedef struct {
    char layer[48];
    const char *weight;
    int rank;
    long long dims[4];
} expected_weight;

typedef struct {
    expected_weight *v;
    int n;
} expected_list;

static void expect(expected_list *l, const char *layer, const char *weight, int rank, long long d0,
                   long long d1, long long d2, long long d3) {
    l->v = realloc(l->v, (size_t)(l->n + 1) * sizeof *l->v);
    ST_CHECK(l->v, "out of memory listing expected weights");
    expected_weight *e = &l->v[l->n++];
    snprintf(e->layer, sizeof e->layer, "%s", layer);
    e->weight = weight;
    e->rank = rank;
    e->dims[0] = d0, e->dims[1] = d1, e->dims[2] = d2, e->dims[3] = d3;
}

static void expect_conv(expected_list *l, const char *layer, int r, long long c, long long k, int bias) {
    expect(l, layer, "kernel", 4, r, r, c, k);
    if (bias) expect(l, layer, "bias", 1, k, 0, 0, 0);
}

static void expect_bn(expected_list *l, const char *layer, long long c) {
    static const char *ids[] = {"gamma", "beta", "moving_mean", "moving_variance"};
    for (int i = 0; i < 4; i++) expect(l, layer, ids[i], 1, c, 0, 0, 0);
}

static void expect_block(expected_list *l, const st_arch_info *a, const char *p, int projection,
                         long long in, long long f, long long out) {
    int v1 = a->family == ST_FAMILY_KERAS_V1, v2 = a->family == ST_FAMILY_KERAS_V2;
    char name[48];
#define LAYER(suffix) (snprintf(name, sizeof name, "%s_%s", p, suffix), name)
    if (v2) expect_bn(l, LAYER("preact_bn"), in);
    if (projection) {
        expect_conv(l, LAYER("0_conv"), 1, in, out, a->family != ST_FAMILY_TORCHVISION);
        if (!v2) expect_bn(l, LAYER("0_bn"), out);
    }
    if (a->bottleneck) {
        expect_conv(l, LAYER("1_conv"), 1, in, f, v1);
        expect_bn(l, LAYER("1_bn"), f);
        expect_conv(l, LAYER("2_conv"), 3, f, f, v1);
        expect_bn(l, LAYER("2_bn"), f);
        expect_conv(l, LAYER("3_conv"), 1, f, out, v1 || v2);
        if (!v2) expect_bn(l, LAYER("3_bn"), out);
    } else {
        expect_conv(l, LAYER("1_conv"), 3, in, f, 0);
        expect_bn(l, LAYER("1_bn"), f);
        expect_conv(l, LAYER("2_conv"), 3, f, f, 0);
        expect_bn(l, LAYER("2_bn"), f);
    }
#undef LAYER
}

/* Backbone (+ embedding/classifier when given) of architecture a, in build order. */
static void expected_weights(const st_arch_info *a, long long embed_dim, long long classifier_in,
                             long long num_classes, expected_list *l) {
    int tv = a->family == ST_FAMILY_TORCHVISION;
    expect_conv(l, "conv1_conv", 7, 3, 64, !tv);
    if (a->family != ST_FAMILY_KERAS_V2) expect_bn(l, "conv1_bn", 64);
    long long in = 64;
    for (int s = 0; s < 4; s++) {
        long long f = 64LL << s, out = a->bottleneck ? 4 * f : f;
        for (int b = 1; b <= a->blocks[s]; b++) {
            char p[32];
            snprintf(p, sizeof p, "conv%d_block%d", s + 2, b);
            /* torchvision BasicBlock layer1 needs no downsample (stride 1, 64 -> 64) */
            int projection = b == 1 && (a->bottleneck || s > 0);
            expect_block(l, a, p, projection, in, f, out);
            in = out;
        }
    }
    if (a->family == ST_FAMILY_KERAS_V2) expect_bn(l, "post_bn", in);
    if (embed_dim > 0) {
        expect(l, "embedding", "kernel", 2, in, embed_dim, 0, 0);
        expect(l, "embedding", "bias", 1, embed_dim, 0, 0, 0);
    }
    if (num_classes > 0) {
        expect(l, "predictions", "kernel", 2, classifier_in, num_classes, 0, 0);
        expect(l, "predictions", "bias", 1, num_classes, 0, 0, 0);
    }
}

/* ---- probing --------------------------------------------------------------------------- */

static const char *canonical_layer(const st_weights_info *info, const char *name) {
    return info->classifier[0] && strcmp(name, info->classifier) == 0 ? "predictions" : name;
}

static const st_weights_tensor *find_tensor(const st_weights_info *info, const char *layer,
                                            const char *weight) {
    for (int i = 0; i < info->n_layers; i++) {
        if (strcmp(canonical_layer(info, info->layers[i].name), layer) != 0) continue;
        for (int k = 0; k < info->layers[i].n_tensors; k++)
            if (strcmp(info->layers[i].tensors[k].weight, weight) == 0) return &info->layers[i].tensors[k];
    }
    return NULL;
}

static const st_weights_layer *find_layer(const st_weights_info *info, const char *name) {
    for (int i = 0; i < info->n_layers; i++)
        if (strcmp(info->layers[i].name, name) == 0) return &info->layers[i];
    return NULL;
}

/* Classifier per pitfall 9: predictions, probs, fc1000, else the single other rank-2 layer. */
static void detect_heads(st_weights_info *info) {
    static const char *names[] = {"predictions", "probs", "fc1000"};
    const st_weights_layer *cls = NULL;
    for (int i = 0; i < 3 && !cls; i++) cls = find_layer(info, names[i]);
    if (!cls) {
        int count = 0;
        for (int i = 0; i < info->n_layers; i++) {
            const st_weights_layer *l = &info->layers[i];
            if (l->n_tensors > 0 && l->tensors[0].rank == 2 && strcmp(l->name, "embedding") != 0) {
                cls = l;
                count++;
            }
        }
        if (count != 1) cls = NULL;
    }
    if (cls && cls->n_tensors > 0 && cls->tensors[0].rank == 2) {
        snprintf(info->classifier, sizeof info->classifier, "%s", cls->name);
        info->num_classes = (int)cls->tensors[0].dims[1];
    }
    const st_weights_layer *emb = find_layer(info, "embedding");
    if (emb && emb->n_tensors > 0 && emb->tensors[0].rank == 2) info->embed_dim = (int)emb->tensors[0].dims[1];
}

/* Keras files carry no arch attribute: decide by the layer set (post_bn => v2; blocks in conv3
 * and conv4 => depth). */
static void detect_keras_arch(st_weights_info *info) {
    int blocks[4] = {0, 0, 0, 0}, v2 = 0, legacy = 0, stem = 0;
    for (int i = 0; i < info->n_layers; i++) {
        const char *name = info->layers[i].name;
        int s, b, used = 0;
        if (sscanf(name, "conv%d_block%d_%n", &s, &b, &used) == 2 && used > 0 && s >= 2 && s <= 5 &&
            b > blocks[s - 2])
            blocks[s - 2] = b;
        if (strcmp(name, "post_bn") == 0 || strstr(name, "_preact_bn")) v2 = 1;
        if (strcmp(name, "bn_conv1") == 0 || strncmp(name, "res2a_branch", 12) == 0) legacy = 1;
        if (strcmp(name, "conv1_conv") == 0) stem = 1;
    }
    if (legacy) {
        snprintf(info->arch_reason, sizeof info->arch_reason,
                 "legacy Keras 2.2 ResNet50 naming (res2a_branch2a, bn_conv1) is not supported");
        return;
    }
    if (!stem) {
        snprintf(info->arch_reason, sizeof info->arch_reason, "no conv1_conv layer: not a Keras ResNet");
        return;
    }
    static const char *candidates[] = {"resnet50", "resnet101", "resnet152",
                                       "resnet50v2", "resnet101v2", "resnet152v2"};
    for (int i = v2 ? 3 : 0; i < (v2 ? 6 : 3); i++) {
        const st_arch_info *a = st_arch_find(candidates[i]);
        if (a && a->blocks[1] == blocks[1] && a->blocks[2] == blocks[2]) {
            info->arch_info = a;
            snprintf(info->arch, sizeof info->arch, "%s", a->name);
            snprintf(info->arch_reason, sizeof info->arch_reason,
                     "layer set: %s, blocks per stage %d/%d/%d/%d", v2 ? "post_bn (v2)" : "no post_bn (v1)",
                     blocks[0], blocks[1], blocks[2], blocks[3]);
            return;
        }
    }
    snprintf(info->arch_reason, sizeof info->arch_reason,
             "blocks per stage %d/%d/%d/%d match no %s ResNet", blocks[0], blocks[1], blocks[2],
             blocks[3], v2 ? "v2" : "v1");
}

/* The embed_* attributes (st_weights_recipe): all or none; a partial or invalid set is an error
 * naming the attribute. */
static int read_recipe(hid_t file, st_weights_recipe *r, const char *path) {
    double size = 0, resize = 0, gem_p = 0, normalize = 0;
    char *pool = NULL, *crop = NULL;
    int found = st_h5_read_double_attr(file, "embed_image_size", &size, path, "/");
    if (found <= 0) return found;
    int rc = 0;
    if (st_h5_read_double_attr(file, "embed_resize_short", &resize, path, "/") != 1 ||
        st_h5_read_string_attr(file, "embed_crop", &crop, path, "/") != 1 ||
        st_h5_read_string_attr(file, "embed_pool", &pool, path, "/") != 1 ||
        st_h5_read_double_attr(file, "embed_gem_p", &gem_p, path, "/") != 1 ||
        st_h5_read_double_attr(file, "embed_normalize", &normalize, path, "/") != 1)
        rc = st_error_set("%s: /: the embed_* attributes are incomplete (embed_image_size without "
                          "embed_resize_short, embed_crop, embed_pool, embed_gem_p or embed_normalize)", path);
    else if (!(size >= 32 && resize >= size && resize < 1e6))
        rc = st_error_set("%s: /: attribute embed_image_size %g / embed_resize_short %g: expected "
                          "32 <= image size <= resize", path, size, resize);
    else if (strcmp(crop, "center"))
        rc = st_error_set("%s: /: attribute embed_crop '%s' is unknown (center)", path, crop);
    else if (strcmp(pool, "avg") && strcmp(pool, "max") && strcmp(pool, "gem"))
        rc = st_error_set("%s: /: attribute embed_pool '%s' is unknown (avg, max, gem)", path, pool);
    else if (!(gem_p > 0))
        rc = st_error_set("%s: /: attribute embed_gem_p %g must be > 0", path, gem_p);
    if (rc == 0) {
        r->present = 1;
        r->image_size = (int)size;
        r->resize_short = (int)resize;
        snprintf(r->pool, sizeof r->pool, "%s", pool);
        r->gem_p = (float)gem_p;
        r->normalize = normalize != 0;
    }
    free(pool);
    free(crop);
    return rc;
}

/* Root attributes written by our writers and tools/torchvision2h5.py (5.4). */
static int read_root_attrs(hid_t file, st_weights_info *info, int *has_format, const char *path) {
    char *arch = NULL, *format = NULL, *pre = NULL;
    double eps = 0;
    int rc = 0;
    if (st_h5_read_string_attr(file, "arch", &arch, path, "/") < 0 ||
        st_h5_read_string_attr(file, "simtune_format", &format, path, "/") < 0 ||
        st_h5_read_string_attr(file, "preprocess", &pre, path, "/") < 0 ||
        st_h5_read_double_attr(file, "bn_epsilon", &eps, path, "/") < 0 ||
        st_h5_read_string_attr(file, "simtune_metadata", &info->metadata_json, path, "/") < 0 ||
        read_recipe(file, &info->recipe, path) < 0)
        rc = -1;
    *has_format = 0;
    if (rc == 0 && format) {
        *has_format = 1;
        if (strcmp(format, "checkpoint") == 0) info->format = ST_WEIGHTS_CHECKPOINT;
        else if (strcmp(format, "export") == 0) info->format = ST_WEIGHTS_SIMTUNE_EXPORT;
        else if (strcmp(format, "torchvision2h5") == 0) info->format = ST_WEIGHTS_TORCHVISION;
        else rc = st_error_set("%s: /: attribute simtune_format '%s' is unknown (expected "
                               "checkpoint, export or torchvision2h5)", path, format);
    }
    if (rc == 0 && arch) {
        info->arch_info = st_arch_find(arch);
        if (info->arch_info) {
            snprintf(info->arch, sizeof info->arch, "%s", arch);
            snprintf(info->arch_reason, sizeof info->arch_reason, "root attribute arch");
        } else {
            snprintf(info->arch_reason, sizeof info->arch_reason,
                     "root attribute arch '%.40s' is not one of: %s", arch, st_arch_names());
        }
    }
    if (rc == 0 && eps > 0) info->bn_eps = (float)eps;
    if (rc == 0 && pre && st_preprocess_parse(pre, &info->preprocess))
        rc = st_error_set("%s: /: attribute preprocess '%s' is unknown (caffe, tf, torch)", path, pre);
    free(arch);
    free(format);
    free(pre);
    return rc;
}

/* Compare the file against the detected architecture's expected weights. */
static void compare_with_arch(st_weights_info *info) {
    if (!info->arch_info) return;
    long long feat = info->arch_info->bottleneck ? 2048 : 512, classifier_in = feat;
    const st_weights_tensor *ck = info->classifier[0] ? find_tensor(info, "predictions", "kernel") : NULL;
    if (ck && info->embed_dim > 0 && ck->dims[0] == info->embed_dim) classifier_in = info->embed_dim;
    expected_list want = {0};
    expected_weights(info->arch_info, info->embed_dim, classifier_in, info->num_classes, &want);
    char a[64], b[64];
    for (int i = 0; i < want.n; i++) {
        const expected_weight *e = &want.v[i];
        const st_weights_tensor *t = find_tensor(info, e->layer, e->weight);
        if (!t) {
            strvec_push(&info->missing, &info->n_missing, "%s/%s", e->layer, e->weight);
            continue;
        }
        int same = t->rank == e->rank;
        for (int d = 0; same && d < e->rank; d++) same = t->dims[d] == e->dims[d];
        if (!same)
            strvec_push(&info->mismatched, &info->n_mismatched, "%s/%s: file %s, expected %s",
                        e->layer, e->weight, dims_text(a, sizeof a, t->rank, t->dims),
                        dims_text(b, sizeof b, e->rank, e->dims));
    }
    for (int i = 0; i < info->n_layers; i++) {
        const char *lname = canonical_layer(info, info->layers[i].name);
        for (int k = 0; k < info->layers[i].n_tensors; k++) {
            const char *w = info->layers[i].tensors[k].weight;
            int known = 0;
            for (int j = 0; j < want.n && !known; j++)
                known = strcmp(want.v[j].layer, lname) == 0 && strcmp(want.v[j].weight, w) == 0;
            if (!known) strvec_push(&info->unexpected, &info->n_unexpected, "%s/%s", info->layers[i].name, w);
        }
    }
    free(want.v);
}

/* Open path, work out its layout and list its weighted layers. On success *file and *wroot
 * (the group the dataset paths are relative to) are open and owned by the caller. */
static int open_and_scan(const char *path, hid_t *file, hid_t *wroot, st_weights_info *info) {
    memset(info, 0, sizeof *info);
    *file = *wroot = -1;
    info->preprocess = (st_preprocess)-1; /* until an attribute or the architecture says */
    hid_t f = st_h5_open_read(path);
    if (f < 0) return -1;
    int has_format = 0, rc = read_root_attrs(f, info, &has_format, path);
    hid_t root = -1;
    if (rc == 0) {
        int root_names = H5Aexists(f, "layer_names") > 0 || H5Aexists(f, "layer_names0") > 0;
        if (root_names) {
            if (!has_format) info->format = ST_WEIGHTS_KERAS2;
            snprintf(info->weights_group, sizeof info->weights_group, "/");
            root = H5Gopen2(f, "/", H5P_DEFAULT);
            rc = scan_keras2(root, info, path);
        } else if (st_h5_has(f, "model_weights")) {
            if (!has_format) info->format = ST_WEIGHTS_KERAS2_FULL_MODEL;
            snprintf(info->weights_group, sizeof info->weights_group, "/model_weights");
            root = H5Gopen2(f, "model_weights", H5P_DEFAULT);
            rc = root < 0 ? st_error_set("%s: /model_weights: not a group", path) : scan_keras2(root, info, path);
        } else if (st_h5_has(f, "layers")) {
            info->format = ST_WEIGHTS_KERAS3;
            snprintf(info->weights_group, sizeof info->weights_group, "/layers");
            root = H5Gopen2(f, "layers", H5P_DEFAULT);
            rc = scan_keras3(f, info, path);
        } else {
            rc = st_error_set("%s: no layer_names attribute, /model_weights or /layers group: not "
                              "a Keras weight file; HINT: convert torchvision .pth files with "
                              "tools/torchvision2h5.py",
                              path);
        }
    }
    if (rc == 0 && info->n_layers == 0)
        rc = st_error_set("%s: %s: no layer has weights", path, info->weights_group);
    if (rc == 0) {
        for (int i = 0; i < info->n_layers; i++)
            for (int k = 0; k < info->layers[i].n_tensors; k++) info->n_params += info->layers[i].tensors[k].numel;
        detect_heads(info);
        if (!info->arch_info && !info->arch_reason[0]) detect_keras_arch(info);
        if (info->arch_info) {
            if (info->bn_eps == 0) info->bn_eps = info->arch_info->bn_eps;
            if ((int)info->preprocess < 0) info->preprocess = info->arch_info->preprocess;
            /* a torchvision conversion by another tool: arch attribute without simtune_format */
            if (!has_format && info->arch_info->family == ST_FAMILY_TORCHVISION)
                info->format = ST_WEIGHTS_TORCHVISION;
        }
        compare_with_arch(info);
    }
    if (rc != 0) {
        if (root >= 0) H5Gclose(root);
        H5Fclose(f);
        st_weights_info_free(info);
        return -1;
    }
    *file = f;
    *wroot = root;
    return 0;
}

int st_weights_probe(const char *path, st_weights_info *info) {
    hid_t file, root;
    if (open_and_scan(path, &file, &root, info) != 0) return -1;
    H5Gclose(root);
    H5Fclose(file);
    return 0;
}

void st_weights_info_free(st_weights_info *info) {
    for (int i = 0; i < info->n_layers; i++) {
        for (int k = 0; k < info->layers[i].n_tensors; k++) {
            free(info->layers[i].tensors[k].weight);
            free(info->layers[i].tensors[k].dataset);
        }
        free(info->layers[i].tensors);
        free(info->layers[i].name);
    }
    free(info->layers);
    free(info->metadata_json);
    strvec_free(&info->missing, &info->n_missing);
    strvec_free(&info->unexpected, &info->n_unexpected);
    strvec_free(&info->mismatched, &info->n_mismatched);
    memset(info, 0, sizeof *info);
}

/* ---- loading --------------------------------------------------------------------------- */

typedef struct {
    const st_weights_tensor *tensor;
    st_param *param;
} load_step;

static int same_shape(const st_weights_tensor *t, const st_param *p) {
    if (t->rank != p->rank) return 0;
    for (int d = 0; d < p->rank; d++)
        if (t->dims[d] != p->dims[d]) return 0;
    return 1;
}

/* Append up to `limit` items of a list to buf as "label: a, b, c (+N more); ". */
static void append_list(char *buf, size_t size, const char *label, char **items, int n, int limit) {
    if (n == 0) return;
    size_t used = strlen(buf);
    used += (size_t)snprintf(buf + used, used < size ? size - used : 0, "%s%d %s: ",
                             used ? "; " : "", n, label);
    for (int i = 0; i < n && i < limit && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", items[i]);
    if (n > limit && used < size) snprintf(buf + used, size - used, " (+%d more)", n - limit);
}

/* Match every file tensor with a model parameter; fill rep's lists; returns the plan length. */
static int plan_load(st_model *m, const st_weights_info *info, st_weights_report *rep, load_step *plan) {
    char a[64], b[64];
    int n_plan = 0;
    char *matched = ST_CALLOC((size_t)m->n_params + 1, 1);
    for (int i = 0; i < info->n_layers; i++) {
        const st_weights_layer *l = &info->layers[i];
        const char *lname = canonical_layer(info, l->name);
        for (int k = 0; k < l->n_tensors; k++) {
            const st_weights_tensor *t = &l->tensors[k];
            st_param *p = st_model_find_param(m, lname, t->weight);
            dims_text(a, sizeof a, t->rank, t->dims);
            if (!p && is_head_layer(lname)) {
                strvec_push(&rep->ignored, &rep->n_ignored, "%s/%s %s: the model has no %s layer",
                            l->name, t->weight, a, lname);
            } else if (!p) {
                strvec_push(&rep->unexpected, &rep->n_unexpected, "%s/%s %s", l->name, t->weight, a);
            } else if (!same_shape(t, p)) {
                long long pd[4] = {p->dims[0], p->dims[1], p->dims[2], p->dims[3]};
                dims_text(b, sizeof b, p->rank, pd);
                if (is_head_layer(lname)) {
                    strvec_push(&rep->ignored, &rep->n_ignored, "%s/%s: file %s, model %s (other size)",
                                l->name, t->weight, a, b);
                } else {
                    strvec_push(&rep->mismatched, &rep->n_mismatched, "%s/%s: file %s, model expects %s",
                                l->name, t->weight, a, b);
                    matched[p - m->params] = 1; /* reported as mismatched, not also as missing */
                }
            } else {
                plan[n_plan].tensor = t;
                plan[n_plan].param = p;
                n_plan++;
                matched[p - m->params] = 1;
            }
        }
    }
    for (int i = 0; i < m->n_params; i++) {
        const st_param *p = &m->params[i];
        if (matched[i]) continue;
        if (is_head_layer(p->layer)) strvec_push(&rep->kept, &rep->n_kept, "%s/%s", p->layer, p->weight);
        else strvec_push(&rep->missing, &rep->n_missing, "%s/%s", p->layer, p->weight);
    }
    free(matched);
    return n_plan;
}

static int check_architecture(const st_model *m, const st_weights_info *info, const char *path) {
    if (info->arch_info && info->arch_info != m->arch)
        return st_error_set("%s: the file holds %s weights (%s), the model is %s; HINT: set arch: "
                            "%s to use this file, or pick a %s weight file",
                            path, info->arch, info->arch_reason, m->arch->name, info->arch,
                            m->arch->name);
    return 0;
}

/* Read each planned dataset into one host buffer, check it is finite, upload it. */
static int read_planned(st_model *m, hid_t root, const load_step *plan, int n_plan, const char *path,
                        st_weights_report *rep) {
    size_t max_numel = 1;
    for (int i = 0; i < n_plan; i++)
        if (plan[i].param->numel > max_numel) max_numel = plan[i].param->numel;
    float *host = ST_MALLOC(max_numel * sizeof *host);
    int rc = 0;
    for (int i = 0; i < n_plan && rc == 0; i++) {
        const st_param *p = plan[i].param;
        char where[160];
        snprintf(where, sizeof where, "layer %s, weight %s", p->layer, p->weight);
        if (st_h5_read_floats(root, plan[i].tensor->dataset, host, p->numel, path, where) != 0) {
            rc = -1;
            break;
        }
        for (size_t j = 0; j < p->numel; j++) {
            if (!isfinite(host[j])) {
                rc = st_error_set("%s: layer %s, weight %s: element %zu is %g; HINT: the file is "
                                  "corrupt or the training diverged",
                                  path, p->layer, p->weight, j, (double)host[j]);
                break;
            }
        }
        if (rc == 0) {
            st_param_upload(m, p, host, p->value);
            rep->n_tensors++;
            rep->n_floats += p->numel;
        }
    }
    free(host);
    return rc;
}

int st_weights_load(st_model *m, const char *path, st_weights_report *rep_out) {
    double start = st_now_seconds();
    st_weights_report local, *rep = rep_out ? rep_out : &local;
    memset(rep, 0, sizeof *rep);
    hid_t file, root;
    st_weights_info info;
    if (open_and_scan(path, &file, &root, &info) != 0) return -1;
    rep->format = info.format;
    snprintf(rep->arch, sizeof rep->arch, "%s", info.arch);
    rep->n_weightless = info.n_layer_names - info.n_layers;
    int rc = check_architecture(m, &info, path);
    if (rc == 0) {
        int n_file = 0;
        for (int i = 0; i < info.n_layers; i++) n_file += info.layers[i].n_tensors;
        load_step *plan = ST_CALLOC((size_t)n_file + 1, sizeof *plan);
        int n_plan = plan_load(m, &info, rep, plan);
        if (rep->n_missing || rep->n_unexpected || rep->n_mismatched) {
            char detail[3000] = "";
            append_list(detail, sizeof detail, "shape mismatches", rep->mismatched, rep->n_mismatched, 6);
            append_list(detail, sizeof detail, "weights missing from the file", rep->missing, rep->n_missing, 12);
            append_list(detail, sizeof detail, "unexpected weights in the file", rep->unexpected, rep->n_unexpected, 12);
            rc = st_error_set("%s: does not fit model %s: %s; HINT: %s", path, m->arch->name, detail,
                              info.arch_info ? "the file is damaged or was written for another model configuration"
                                             : info.arch_reason[0] ? info.arch_reason
                                                                   : "check the arch setting");
        } else {
            rc = read_planned(m, root, plan, n_plan, path, rep);
            if (rc == 0) {
                m->backend->sync(m->backend);
                st_model_weights_changed(m); /* refold frozen conv+BN copies */
            }
        }
        free(plan);
    }
    H5Gclose(root);
    H5Fclose(file);
    st_weights_info_free(&info);
    rep->seconds = st_now_seconds() - start;
    if (!rep_out) st_weights_report_free(rep);
    return rc;
}

void st_weights_report_free(st_weights_report *rep) {
    strvec_free(&rep->kept, &rep->n_kept);
    strvec_free(&rep->ignored, &rep->n_ignored);
    strvec_free(&rep->missing, &rep->n_missing);
    strvec_free(&rep->unexpected, &rep->n_unexpected);
    strvec_free(&rep->mismatched, &rep->n_mismatched);
}

/* ---- saving ---------------------------------------------------------------------------- */

static const char *gpool_name(st_gpool_kind k) {
    return k == ST_GPOOL_MAX ? "max" : k == ST_GPOOL_GEM ? "gem" : "avg";
}

/* The embedding recipe of a model trained with config c: the evaluation geometry of the trainer
 * and `simtune embed` (shorter side to S * 256/224, centre crop S), the model's global pooling,
 * its embedding head, and L2-normalised vectors (what validation ranks by cosine). */
static int write_recipe(const st_model_config *c, hid_t root, const char *path) {
    if (st_h5_write_long_attr(root, "embed_image_size", c->height, path, "/") != 0 ||
        st_h5_write_long_attr(root, "embed_resize_short", (long long)c->height * 256 / 224, path, "/") != 0 ||
        st_h5_write_string_attr(root, "embed_crop", "center", path, "/") != 0 ||
        st_h5_write_string_attr(root, "embed_pool", gpool_name(c->pool), path, "/") != 0 ||
        st_h5_write_double_attr(root, "embed_gem_p", c->pool == ST_GPOOL_GEM ? c->gem_p : 3.0, path, "/") != 0 ||
        st_h5_write_long_attr(root, "embed_dim", c->embed_dim, path, "/") != 0 ||
        st_h5_write_long_attr(root, "embed_normalize", 1, path, "/") != 0)
        return -1;
    return 0;
}

static int write_root_attrs(const st_model *m, hid_t root, const char *path) {
    const st_arch_info *a = m->arch;
    const st_model_config *c = &m->config;
    if (st_h5_write_string_attr(root, "arch", a->name, path, "/") != 0 ||
        st_h5_write_string_attr(root, "family", family_name(a->family), path, "/") != 0 ||
        st_h5_write_string_attr(root, "block", a->bottleneck ? "bottleneck" : "basic", path, "/") != 0 ||
        st_h5_write_string_attr(root, "stride_in", a->family == ST_FAMILY_KERAS_V1 ? "1x1" : "3x3",
                                path, "/") != 0 ||
        st_h5_write_double_attr(root, "bn_epsilon", a->bn_eps, path, "/") != 0 ||
        st_h5_write_string_attr(root, "preprocess",
                                c->preprocess ? c->preprocess : st_preprocess_name(a->preprocess), path, "/") != 0)
        return -1;
    return write_recipe(c, root, path);
}

int st_weights_write_group(const st_model *m, hid_t root, hid_t group, const char *path) {
    if (write_root_attrs(m, root, path) != 0) return -1;
    const char **names = ST_MALLOC((size_t)m->n_layers * sizeof *names);
    for (int i = 0; i < m->n_layers; i++) names[i] = st_model_layer_name(m, i);
    /* backend/keras_version as Keras writes them: any keras_version other than "1" keeps Keras'
     * own loader from applying its Keras-1 kernel conversions to this file. */
    int rc = st_h5_write_strlist(group, "layer_names", names, m->n_layers, path, "/") != 0 ||
                     st_h5_write_string_attr(group, "backend", "tensorflow", path, "/") != 0 ||
                     st_h5_write_string_attr(group, "keras_version", "2.2.4", path, "/") != 0
                 ? -1
                 : 0;
    size_t max_numel = 1;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].numel > max_numel) max_numel = m->params[i].numel;
    float *host = ST_MALLOC(max_numel * sizeof *host);
    const char **wnames = ST_MALLOC(((size_t)m->n_params + 1) * sizeof *wnames);
    for (int li = 0; li < m->n_layers && rc == 0; li++) {
        const char *lname = names[li];
        hid_t lg = H5Gcreate2(group, lname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (lg < 0) {
            rc = st_error_set("%s: layer %s: cannot create its group", path, lname);
            break;
        }
        int nw = 0;
        for (int i = 0; i < m->n_params && rc == 0; i++) {
            const st_param *p = &m->params[i];
            if (p->layer_index != li) continue;
            char wn[160];
            snprintf(wn, sizeof wn, "%s/%s:0", lname, p->weight);
            wnames[nw++] = ST_STRDUP(wn);
            long long dims[4] = {p->dims[0], p->dims[1], p->dims[2], p->dims[3]};
            st_param_download(m, p, p->value, host);
            rc = st_h5_write_floats(lg, wn, host, p->rank, dims, path);
        }
        if (rc == 0) rc = st_h5_write_strlist(lg, "weight_names", wnames, nw, path, lname);
        for (int i = 0; i < nw; i++) free((char *)wnames[i]);
        H5Gclose(lg);
    }
    free(wnames);
    free(host);
    free(names);
    return rc;
}

int st_weights_save(const st_model *m, const char *path, const char *json_metadata) {
    char tmp[4096];
    if (st_tmp_path(path, tmp, sizeof tmp) != 0) return -1;
    hid_t f = st_h5_create(tmp);
    if (f < 0) return -1;
    int rc = st_weights_write_group(m, f, f, path);
    if (rc == 0) rc = st_h5_write_string_attr(f, "simtune_format", "export", path, "/");
    if (rc == 0 && json_metadata) rc = st_h5_write_string_attr(f, "simtune_metadata", json_metadata, path, "/");
    if (rc != 0) {
        st_h5_discard(f, tmp);
        return -1;
    }
    return st_h5_commit_atomic(f, tmp, path);
}
