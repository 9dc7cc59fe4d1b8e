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

#include "cli.h"
#include "commands.h"
#include "data/transform.h"
#include "infer/h5util.h"
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

static void json_list(FILE *out, const char *key, char **items, int n) {
    fprintf(out, ",\"%s\":[", key);
    for (int i = 0; i < n; i++) {
        if (i) fputc(',', out);
        st_cli_json_string(out, items[i]);
    }
    fputc(']', out);
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

static void print_json(FILE *out, const char *path, const st_weights_info *info, int ok) {
    fputs("{\"file\":", out);
    st_cli_json_string(out, path);
    fprintf(out, ",\"format\":\"%s\",\"format_description\":", format_id(info->format));
    st_cli_json_string(out, st_weights_format_name(info->format));
    fputs(",\"arch\":", out);
    st_cli_json_string(out, info->arch[0] ? info->arch : NULL);
    fputs(",\"arch_reason\":", out);
    st_cli_json_string(out, info->arch_reason);
    fprintf(out, ",\"top\":%s,\"classifier\":", info->classifier[0] ? "true" : "false");
    st_cli_json_string(out, info->classifier[0] ? info->classifier : NULL);
    fprintf(out, ",\"num_classes\":%d,\"embed_dim\":%d,\"bn_epsilon\":%.7g,\"preprocess\":",
            info->num_classes, info->embed_dim, (double)info->bn_eps);
    st_cli_json_string(out, st_preprocess_name(info->preprocess));
    fprintf(out, ",\"layer_names\":%d,\"weighted_layers\":%d,\"tensors\":%d,\"params\":%zu",
            info->n_layer_names, info->n_layers, count_tensors(info), info->n_params);
    if (info->format == ST_WEIGHTS_CHECKPOINT) {
        double step, epoch;
        checkpoint_position(path, &step, &epoch);
        fprintf(out, ",\"step\":%.0f,\"epoch\":%.0f", step, epoch);
    }
    fputs(",\"metadata\":", out);
    st_cli_json_string(out, info->metadata_json);
    const st_weights_recipe *r = &info->recipe;
    if (r->present)
        fprintf(out, ",\"recipe\":{\"image_size\":%d,\"resize_short\":%d,\"crop\":\"center\",\"pool\":\"%s\","
                     "\"gem_p\":%.7g,\"embed_dim\":%d,\"normalize\":%s}",
                r->image_size, r->resize_short, r->pool, (double)r->gem_p, info->embed_dim,
                r->normalize ? "true" : "false");
    else fputs(",\"recipe\":null", out);
    fputs(",\"layers\":[", out);
    for (int i = 0; i < info->n_layers; i++) {
        const st_weights_layer *l = &info->layers[i];
        fputs(i ? ",{\"name\":" : "{\"name\":", out);
        st_cli_json_string(out, l->name);
        fputs(",\"weights\":[", out);
        for (int k = 0; k < l->n_tensors; k++) {
            const st_weights_tensor *t = &l->tensors[k];
            fputs(k ? ",{\"name\":" : "{\"name\":", out);
            st_cli_json_string(out, t->weight);
            fputs(",\"dataset\":", out);
            st_cli_json_string(out, t->dataset);
            fputs(",\"shape\":[", out);
            for (int d = 0; d < t->rank; d++) fprintf(out, "%s%lld", d ? "," : "", t->dims[d]);
            fputs("]}", out);
        }
        fputs("]}", out);
    }
    fputc(']', out);
    json_list(out, "missing", info->missing, info->n_missing);
    json_list(out, "unexpected", info->unexpected, info->n_unexpected);
    json_list(out, "mismatched", info->mismatched, info->n_mismatched);
    fprintf(out, ",\"ok\":%s}\n", ok ? "true" : "false");
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
