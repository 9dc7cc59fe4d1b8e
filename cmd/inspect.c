/*
 * inspect.c: `simtune inspect FILE.h5 [--json]`, a description of a weight file or checkpoint:
 * layout (Keras 2 / full model / Keras 3 / torchvision conversion / simtune export / checkpoint),
 * detected architecture and how it was decided, top or notop, every layer with weights and the
 * shapes of its datasets, the parameter count, the embedding recipe of simtune files (image size,
 * resize, pooling, normalisation; st_weights_recipe), and the weights that are missing,
 * unexpected or of the wrong shape against the detected architecture (infer/weights_h5.c does
 * the work).
 *
 * Exit status: 0 when the file matches its architecture, 1 when it cannot be read or does not
 * match (the description is still printed), 2 on bad usage.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "data/transform.h"
#include "infer/h5util.h"
#include "data/base/json.h"
#include "infer/weights_h5.h"
#include "kernels/check.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune inspect FILE.h5 [--json]\n\n"
            "Describe an HDF5 weight file or checkpoint: format, detected architecture, top or\n"
            "notop, every layer with weights and its shapes, parameter count, and the weights\n"
            "missing, unexpected or misshapen against the detected architecture.\n\n"
            "options:\n"
            "  --json       print one JSON object instead of text (default: text)\n"
            "  -h, --help   this help\n\n"
            "exit status: 0 file matches its architecture, 1 unreadable or not matching, 2 bad usage\n");
}

static const char *format_id(st_weights_format f) {
    switch (f) {
    case ST_WEIGHTS_KERAS2: return "keras2";
    case ST_WEIGHTS_KERAS2_FULL_MODEL: return "keras2_full_model";
    case ST_WEIGHTS_KERAS3: return "keras3";
    case ST_WEIGHTS_TORCHVISION: return "torchvision";
    case ST_WEIGHTS_SIMTUNE_EXPORT: return "simtune_export";
    case ST_WEIGHTS_CHECKPOINT: return "simtune_checkpoint";
    }
    return "unknown";
}

static const char *preprocess_text(st_preprocess p) {
    switch (p) {
    case ST_PREPROCESS_CAFFE: return "caffe (RGB->BGR, minus [103.939, 116.779, 123.68])";
    case ST_PREPROCESS_TF: return "tf (x/127.5 - 1, RGB)";
    case ST_PREPROCESS_TORCH: return "torch (x/255, ImageNet mean/std, RGB)";
    }
    return "unknown";
}

static json_t *names_json(char **items, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, st_json_text(items[i]));
    return a;
}

static int count_tensors(const st_weights_info *info) {
    int n = 0;
    for (int i = 0; i < info->n_layers; i++) n += info->layers[i].n_tensors;
    return n;
}

/* Training state of a checkpoint (root attributes step and epoch), -1 when absent. */
static void checkpoint_position(const char *path, double *step, double *epoch) {
    *step = *epoch = -1;
    hid_t f = st_h5_open_read(path);
    if (f < 0) return;
    if (st_h5_read_double_attr(f, "step", step, path, "/") <= 0) *step = -1;
    if (st_h5_read_double_attr(f, "epoch", epoch, path, "/") <= 0) *epoch = -1;
    H5Fclose(f);
}

static json_t *recipe_json(const st_weights_info *info) {
    const st_weights_recipe *r = &info->recipe;
    if (!r->present) return json_null();
    return json_pack("{s:i, s:i, s:s, s:o, s:o, s:i, s:b}", "image_size", r->image_size, "resize_short",
                     r->resize_short, "crop", "center", "pool", st_json_text(r->pool), "gem_p", st_json_float(r->gem_p),
                     "embed_dim", info->embed_dim, "normalize", r->normalize);
}

/* [{"name", "weights": [{"name", "dataset", "shape": [...]}, ...]}, ...] */
static json_t *layers_json(const st_weights_info *info) {
    json_t *layers = json_array();
    for (int i = 0; i < info->n_layers; i++) {
        const st_weights_layer *l = &info->layers[i];
        json_t *weights = json_array();
        for (int k = 0; k < l->n_tensors; k++) {
            const st_weights_tensor *t = &l->tensors[k];
            json_t *shape = json_array();
            for (int d = 0; d < t->rank; d++) json_array_append_new(shape, json_integer(t->dims[d]));
            json_array_append_new(weights, json_pack("{s:o, s:o, s:o}", "name", st_json_text(t->weight), "dataset",
                                                     st_json_text(t->dataset), "shape", shape));
        }
        json_array_append_new(layers, json_pack("{s:o, s:o}", "name", st_json_text(l->name), "weights", weights));
    }
    return layers;
}

/* One line (compact), keys in the order of the text output. */
static void print_json(FILE *out, const char *path, const st_weights_info *info, int ok) {
    json_t *j = json_pack("{s:o, s:s, s:o, s:o, s:o, s:b, s:o, s:i, s:i, s:o, s:o}", "file", st_json_text(path),
                          "format", format_id(info->format), "format_description",
                          st_json_text(st_weights_format_name(info->format)), "arch",
                          st_json_text(info->arch[0] ? info->arch : NULL), "arch_reason", st_json_text(info->arch_reason),
                          "top", info->classifier[0] != 0, "classifier",
                          st_json_text(info->classifier[0] ? info->classifier : NULL), "num_classes", info->num_classes,
                          "embed_dim", info->embed_dim, "bn_epsilon", st_json_float(info->bn_eps), "preprocess",
                          st_json_text(st_preprocess_name(info->preprocess)));
    json_object_set_new(j, "layer_names", json_integer(info->n_layer_names));
    json_object_set_new(j, "weighted_layers", json_integer(info->n_layers));
    json_object_set_new(j, "tensors", json_integer(count_tensors(info)));
    json_object_set_new(j, "params", json_integer((json_int_t)info->n_params));
    if (info->format == ST_WEIGHTS_CHECKPOINT) {
        double step, epoch;
        checkpoint_position(path, &step, &epoch);
        json_object_set_new(j, "step", json_integer((json_int_t)step));
        json_object_set_new(j, "epoch", json_integer((json_int_t)epoch));
    }
    json_object_set_new(j, "metadata", st_json_text(info->metadata_json)); /* the attribute's text, as a string */
    json_object_set_new(j, "recipe", recipe_json(info));
    json_object_set_new(j, "layers", layers_json(info));
    json_object_set_new(j, "missing", names_json(info->missing, info->n_missing));
    json_object_set_new(j, "unexpected", names_json(info->unexpected, info->n_unexpected));
    json_object_set_new(j, "mismatched", names_json(info->mismatched, info->n_mismatched));
    json_object_set_new(j, "ok", json_boolean(ok));
    /* 9 digits: st_json_float's shortest decimal of a float is never longer */
    st_json_print(out, j, JSON_COMPACT | ST_JSON_PRECISION(9));
    json_decref(j);
}

static void print_names(FILE *out, const char *title, char **items, int n) {
    if (n == 0) return;
    fprintf(out, "%s (%d):\n", title, n);
    for (int i = 0; i < n; i++) fprintf(out, "  %s\n", items[i]);
}

static void print_text(FILE *out, const char *path, const st_weights_info *info) {
    fprintf(out, "file:          %s\n", path);
    fprintf(out, "format:        %s\n", st_weights_format_name(info->format));
    fprintf(out, "weights group: %s\n", info->weights_group);
    fprintf(out, "architecture:  %s (%s)\n", info->arch[0] ? info->arch : "unknown", info->arch_reason);
    if (info->classifier[0])
        fprintf(out, "top:           yes, classifier '%s' with %d classes\n", info->classifier, info->num_classes);
    else
        fprintf(out, "top:           no (notop)\n");
    if (info->embed_dim) fprintf(out, "embedding:     %d\n", info->embed_dim);
    fprintf(out, "bn epsilon:    %.7g\n", (double)info->bn_eps);
    fprintf(out, "preprocess:    %s\n", preprocess_text(info->preprocess));
    if (info->format == ST_WEIGHTS_CHECKPOINT) {
        double step, epoch;
        checkpoint_position(path, &step, &epoch);
        fprintf(out, "checkpoint:    step %.0f, epoch %.0f\n", step, epoch);
    }
    if (info->metadata_json) fprintf(out, "metadata:      %s\n", info->metadata_json);
    const st_weights_recipe *r = &info->recipe;
    if (r->present)
        fprintf(out, "recipe:        %d px (shorter side %d, centre crop), pooling %s (p %g), %s, %s\n",
                r->image_size, r->resize_short, r->pool, (double)r->gem_p,
                info->embed_dim ? "embedding head" : "pooled features", r->normalize ? "L2-normalised" : "raw");
    else
        fprintf(out, "recipe:        none (embed uses 224 px, avg pooling unless told otherwise)\n");
    fprintf(out, "layers:        %d listed, %d with weights, %d tensors, %zu parameters\n",
            info->n_layer_names, info->n_layers, count_tensors(info), info->n_params);
    for (int i = 0; i < info->n_layers; i++) {
        const st_weights_layer *l = &info->layers[i];
        fprintf(out, "  %-26s", l->name);
        for (int k = 0; k < l->n_tensors; k++) {
            const st_weights_tensor *t = &l->tensors[k];
            fprintf(out, " %s(", t->weight);
            for (int d = 0; d < t->rank; d++) fprintf(out, "%s%lld", d ? "," : "", t->dims[d]);
            fputc(')', out);
        }
        fputc('\n', out);
    }
    print_names(out, "missing vs the architecture", info->missing, info->n_missing);
    print_names(out, "unexpected vs the architecture", info->unexpected, info->n_unexpected);
    print_names(out, "wrong shapes vs the architecture", info->mismatched, info->n_mismatched);
}

int cmd_inspect(int argc, char **argv) {
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (c == 'j') {
            json = 1;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "try 'simtune inspect --help'\n");
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "simtune inspect: expected exactly one FILE.h5\ntry 'simtune inspect --help'\n");
        return 2;
    }
    const char *path = argv[optind];
    st_weights_info info;
    if (st_weights_probe(path, &info) != 0) {
        fprintf(stderr, "simtune inspect: %s\n", st_error_get());
        return 1;
    }
    int ok = info.arch_info && !info.n_missing && !info.n_unexpected && !info.n_mismatched;
    if (json) print_json(stdout, path, &info, ok);
    else print_text(stdout, path, &info);
    if (!ok)
        fprintf(stderr, "simtune inspect: %s: %s\n", path,
                !info.arch_info ? "architecture not recognised"
                                : "the weights do not match the detected architecture (listed above)");
    st_weights_info_free(&info);
    return ok ? 0 : 1;
}
