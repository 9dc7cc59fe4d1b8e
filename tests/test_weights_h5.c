/*
 * test_weights_h5.c: the HDF5 weight loader/writer (infer/weights_h5.c) against files written by
 * an independent writer (tests/weights_fixtures.py: h5py the way Keras writes, and
 * tools/torchvision2h5.py), and against PyTorch features.
 *
 *   test_weights_h5 FIXTURE_DIR          probe, load of every layout, features vs PyTorch, every
 *                                        bad-input case, save -> load round trip
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/h5util.h"
#include "infer/weights_h5.h"
#include "kernels/check.h"
#include "test_util.h"

static const char *fixture_dir;

static const char *fx(const char *name) {
    static char paths[4][4096];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", fixture_dir, name);
    return p;
}

static st_model *make_model(st_backend *be, const char *arch, int embed_dim, int num_classes, uint64_t seed) {
    st_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = arch;
    cfg.batch = 2;
    cfg.height = cfg.width = 64;
    cfg.pool = ST_GPOOL_AVG;
    cfg.embed_dim = embed_dim;
    cfg.num_classes = num_classes;
    cfg.bn_momentum = 0.1f;
    st_model *m = st_model_create(be, &cfg, seed);
    ST_CHECK(m, "st_model_create(%s): %s", arch, st_error_get());
    return m;
}

/* All parameter values in model order (host copy). */
static float *download_params(st_model *m, size_t *total) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].numel;
    float *all = ST_MALLOC(n * sizeof *all), *at = all;
    for (int i = 0; i < m->n_params; i++) {
        st_param_download(m, &m->params[i], m->params[i].value, at);
        at += m->params[i].numel;
    }
    *total = n;
    return all;
}

static void zero_params(st_model *m) {
    for (int i = 0; i < m->n_params; i++)
        m->backend->fill(m->backend, m->params[i].value, 0.0f, st_param_storage_numel(m, &m->params[i]));
}

static int contains(const char *s, const char *part) { return strstr(s, part) != NULL; }

static void test_probe(void) {
    static const struct {
        const char *file;
        st_weights_format format;
        int n_layer_names;
    } variants[] = {
        {"weights_r50.h5", ST_WEIGHTS_KERAS2, 175},
        {"weights_r50_vlen_sorted.h5", ST_WEIGHTS_KERAS2, 175},
        {"weights_r50_full_chunked.h5", ST_WEIGHTS_KERAS2_FULL_MODEL, 175},
        {"weights_r50_k3.weights.h5", ST_WEIGHTS_KERAS3, 175},
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        st_weights_info info;
        int rc = st_weights_probe(fx(variants[i].file), &info);
        TEST_CHECK(rc == 0, "probe %s: %s", variants[i].file, st_error_get());
        if (rc) continue;
        TEST_CHECK(info.format == variants[i].format, "%s: format %d", variants[i].file, info.format);
        TEST_CHECK(strcmp(info.arch, "resnet50") == 0, "%s: arch '%s' (%s)", variants[i].file, info.arch,
                   info.arch_reason);
        TEST_CHECK(info.n_layer_names == variants[i].n_layer_names, "%s: %d layer names", variants[i].file,
                   info.n_layer_names);
        /* doc 2.5: ResNet50 notop has 106 weighted layers and 23,587,712 parameters */
        TEST_CHECK(info.n_layers == 106 && info.n_params == 23587712, "%s: %d layers %zu params",
                   variants[i].file, info.n_layers, info.n_params);
        TEST_CHECK(info.classifier[0] == '\0' && info.num_classes == 0, "%s: notop expected", variants[i].file);
        TEST_CHECK(info.n_missing == 0 && info.n_unexpected == 0 && info.n_mismatched == 0,
                   "%s: %d missing %d unexpected %d mismatched", variants[i].file, info.n_missing,
                   info.n_unexpected, info.n_mismatched);
        TEST_CHECK(info.preprocess == ST_PREPROCESS_CAFFE && info.bn_eps == 1.001e-5f, "%s: caffe, 1.001e-5",
                   variants[i].file);
        st_weights_info_free(&info);
    }

    st_weights_info info;
    TEST_CHECK(st_weights_probe(fx("weights_r50_top_probs.h5"), &info) == 0, "probe top: %s", st_error_get());
    TEST_CHECK(strcmp(info.classifier, "probs") == 0 && info.num_classes == 1000, "classifier '%s' %d",
               info.classifier, info.num_classes);
    TEST_CHECK(info.n_params == 25636712 && info.n_missing + info.n_unexpected + info.n_mismatched == 0,
               "top: %zu params (doc 2.5: 25,636,712)", info.n_params);
    st_weights_info_free(&info);

    TEST_CHECK(st_weights_probe(fx("weights_r50v2.h5"), &info) == 0, "probe v2: %s", st_error_get());
    TEST_CHECK(strcmp(info.arch, "resnet50v2") == 0 && info.n_params == 23564800 &&
                   info.preprocess == ST_PREPROCESS_TF,
               "v2: arch '%s', %zu params (doc 2.5: 23,564,800)", info.arch, info.n_params);
    st_weights_info_free(&info);

    TEST_CHECK(st_weights_probe(fx("weights_tv18.h5"), &info) == 0, "probe tv18: %s", st_error_get());
    TEST_CHECK(info.format == ST_WEIGHTS_TORCHVISION && strcmp(info.arch, "tv_resnet18") == 0 &&
                   info.bn_eps == 1e-5f && info.preprocess == ST_PREPROCESS_TORCH && info.num_classes == 1000,
               "tv18: format %d arch '%s' eps %g", info.format, info.arch, (double)info.bn_eps);
    TEST_CHECK(info.n_missing + info.n_unexpected + info.n_mismatched == 0, "tv18 vs schema: %d/%d/%d",
               info.n_missing, info.n_unexpected, info.n_mismatched);
    st_weights_info_free(&info);

    /* depth by block counts (conv3/conv4), v2 by post_bn; every shape is wrong in a skeleton */
    TEST_CHECK(st_weights_probe(fx("weights_skeleton_resnet101.h5"), &info) == 0, "probe: %s", st_error_get());
    /* 626 datasets (doc 2.5): 624 backbone ones misshapen; a rank-1 `predictions` is no classifier,
     * so its 2 tensors are unexpected */
    TEST_CHECK(strcmp(info.arch, "resnet101") == 0 && info.n_layers == 209 && info.n_mismatched == 624 &&
                   info.n_unexpected == 2,
               "skeleton resnet101: arch '%s', %d weighted layers (doc 2.5: 209), %d mismatched (624), "
               "%d unexpected (2)",
               info.arch, info.n_layers, info.n_mismatched, info.n_unexpected);
    st_weights_info_free(&info);
    TEST_CHECK(st_weights_probe(fx("weights_skeleton_resnet152v2.h5"), &info) == 0, "probe: %s", st_error_get());
    TEST_CHECK(strcmp(info.arch, "resnet152v2") == 0 && info.n_layers == 307 && info.n_layer_names == 566,
               "skeleton resnet152v2: arch '%s', %d weighted layers (doc 2.5: 307), %d layer names (566)",
               info.arch, info.n_layers, info.n_layer_names);
    st_weights_info_free(&info);

    TEST_CHECK(st_weights_probe(fx("weights_missing_layers.h5"), &info) == 0, "probe missing: %s", st_error_get());
    TEST_CHECK(info.n_missing == 6, "missing: %d listed (2 conv weights + 4 bn vectors)", info.n_missing);
    st_weights_info_free(&info);
}

/* Every same-seed layout must load to exactly the numbers of weights_r50.h5 (m: resnet50 notop). */
static void test_load_layouts(st_backend *be, st_model *m) {
    st_weights_report rep;
    int rc = st_weights_load(m, fx("weights_r50.h5"), &rep);
    TEST_CHECK(rc == 0, "load r50: %s", st_error_get());
    TEST_CHECK(rep.n_tensors == 318 && rep.n_floats == 23587712 && rep.n_weightless == 69,
               "r50: %d tensors %zu floats %d weightless", rep.n_tensors, rep.n_floats, rep.n_weightless);
    st_weights_report_free(&rep);
    size_t n;
    float *ref = download_params(m, &n);

    static const char *same[] = {"weights_r50_vlen_sorted.h5", "weights_r50_full_chunked.h5",
                                 "weights_r50_k3.weights.h5", "weights_r50_top_probs.h5",
                                 "weights_r50_positional.h5"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        zero_params(m);
        rc = st_weights_load(m, fx(same[i]), &rep);
        TEST_CHECK(rc == 0, "load %s: %s", same[i], st_error_get());
        size_t n2;
        float *got = download_params(m, &n2);
        TEST_CHECK(n2 == n && memcmp(got, ref, n * sizeof *ref) == 0, "%s: values differ from weights_r50.h5",
                   same[i]);
        free(got);
        if (strcmp(same[i], "weights_r50_top_probs.h5") == 0)
            TEST_CHECK(rep.n_ignored == 2 && contains(rep.ignored[0], "probs/kernel"),
                       "classifier of a notop model: %d ignored", rep.n_ignored);
        st_weights_report_free(&rep);
    }
    free(ref);

    /* a model with the 1000-class head takes `probs` as its predictions layer */
    m = make_model(be, "resnet50", 0, 1000, 7);
    rc = st_weights_load(m, fx("weights_r50_top_probs.h5"), &rep);
    TEST_CHECK(rc == 0 && rep.n_tensors == 320 && rep.n_ignored == 0 && rep.n_kept == 0,
               "top into 1000 classes: rc %d, %d tensors: %s", rc, rep.n_tensors, rc ? st_error_get() : "");
    st_weights_report_free(&rep);
    st_model_free(m);
}

/* Pooled features of a C-loaded file vs PyTorch on the same numbers.
 * Tolerance: relative error by norm <= 1e-4. Float32 sums of up to 4608 terms through ~50 layers
 * in a different order than PyTorch differ by ~1e-6..1e-5 relative; any mapping mistake
 * (transposed kernel, swapped BN vectors, wrong stride or padding) gives O(1) errors. */
static void check_features(st_backend *be, st_model *m, const char *weights, const char *reference) {
    const char *arch = m->arch->name;
    TEST_CHECK(st_weights_load(m, fx(weights), NULL) == 0, "load %s: %s", weights, st_error_get());
    hid_t f = st_h5_open_read(fx(reference));
    TEST_CHECK(f >= 0, "%s", st_error_get());
    if (f < 0) {
        st_model_free(m);
        return;
    }
    size_t n_in = st_numel(m->input), n_feat = (size_t)2 * m->feature_dim;
    float *input = ST_MALLOC(n_in * sizeof *input), *want = ST_MALLOC(n_feat * sizeof *want);
    float *got = ST_MALLOC(n_feat * sizeof *got);
    TEST_CHECK(st_h5_read_floats(f, "input", input, n_in, reference, "/") == 0, "%s", st_error_get());
    TEST_CHECK(st_h5_read_floats(f, "features", want, n_feat, reference, "/") == 0, "%s", st_error_get());
    H5Fclose(f);
    be->upload(be, m->input.data, input, n_in * sizeof *input);
    st_model_forward(m, 2, 0);
    be->download(be, got, m->features.data, n_feat * sizeof *got);
    double err = test_rel_error(got, want, n_feat);
    printf("%s (%s): pooled features vs PyTorch, relative error %.3g\n", arch, weights, err);
    TEST_CHECK(err <= 1e-4, "%s: features relative error %.3g > 1e-4", arch, err);
    free(input);
    free(want);
    free(got);
}

static void expect_failure(st_model *m, const char *file, const char *part1, const char *part2) {
    st_weights_report rep;
    int rc = st_weights_load(m, fx(file), &rep);
    const char *msg = st_error_get();
    TEST_CHECK(rc == -1, "%s: load should fail", file);
    TEST_CHECK(contains(msg, file), "%s: message does not name the file: %s", file, msg);
    TEST_CHECK(contains(msg, part1) && (!part2 || contains(msg, part2)), "%s: message lacks '%s'/'%s': %s", file,
               part1, part2 ? part2 : "", msg);
    printf("  %s -> %s\n", file, msg);
    st_weights_report_free(&rep);
}

/* m: resnet50 notop; tv18: tv_resnet18 notop (the damaged files are copies of weights_tv18.h5) */
static void test_bad_inputs(st_model *m, st_model *tv18) {
    size_t n, n2;
    float *before = download_params(m, &n);
    expect_failure(m, "weights_truncated.h5", "truncated", NULL);
    expect_failure(m, "weights_corrupt_meta.h5", "corrupt", NULL);
    expect_failure(m, "weights_text.h5", "not an HDF5 file", NULL);
    expect_failure(m, "weights_empty.h5", "empty file", NULL);
    expect_failure(m, "no_such_file.h5", "No such file", NULL);
    expect_failure(m, "weights_wrong_shape.h5", "conv2_block1_2_conv/kernel: file (3, 3, 64, 32)",
                   "model expects (3, 3, 64, 64)");
    expect_failure(m, "weights_missing_layers.h5", "conv3_block2_1_conv/kernel", "conv4_block1_0_bn/moving_variance");
    expect_failure(m, "weights_r50v2.h5", "resnet50v2", "HINT");
    expect_failure(m, "weights_k3_nonames.weights.h5", "without layer names", "/layers/");
    expect_failure(m, "weights_tv18.h5", "tv_resnet18", "HINT");
    /* all or nothing: failed loads left the model untouched */
    float *after = download_params(m, &n2);
    TEST_CHECK(n == n2 && memcmp(before, after, n * sizeof *before) == 0, "a failed load changed the model");
    free(after);
    /* NaN bytes inside a dataset: detected while reading, named by layer */
    expect_failure(tv18, "weights_corrupt_data.h5", "layer conv", "HINT");
    free(before);

    st_weights_info info;
    TEST_CHECK(st_weights_probe(fx("weights_k3_nonames.weights.h5"), &info) == -1, "probe of a nameless Keras 3 file");
    TEST_CHECK(st_weights_probe(fx("weights_truncated.h5"), &info) == -1, "probe of a truncated file");
}

/* notop: a resnet50 backbone without head (shared with the other tests) */
static void test_save_roundtrip(st_backend *be, st_model *notop) {
    st_model *m = make_model(be, "resnet50", 32, 7, 21);
    TEST_CHECK(st_weights_load(m, fx("weights_r50.h5"), NULL) == 0, "load: %s", st_error_get());
    const char *out = fx("weights_export_test.h5"); /* kept: test_weights_cli.py reads it with h5py */
    const char *meta = "{\"run\":\"test\",\"step\":5}";
    TEST_CHECK(st_weights_save(m, out, meta) == 0, "save: %s", st_error_get());
    TEST_CHECK(st_weights_save(m, "no_such_dir/x.h5", meta) == -1 && contains(st_error_get(), "no_such_dir/x.h5"),
               "save into a missing directory: %s", st_error_get());
    FILE *tmp = fopen(fx("weights_export_test.h5.tmp"), "rb");
    TEST_CHECK(tmp == NULL, "the temporary file was left behind");
    if (tmp) fclose(tmp);

    st_weights_info info;
    TEST_CHECK(st_weights_probe(out, &info) == 0, "probe export: %s", st_error_get());
    TEST_CHECK(info.format == ST_WEIGHTS_SIMTUNE_EXPORT && strcmp(info.arch, "resnet50") == 0 &&
                   info.n_layer_names == m->n_layers && info.embed_dim == 32 && info.num_classes == 7 &&
                   info.metadata_json && strcmp(info.metadata_json, meta) == 0,
               "export: format %d arch '%s' layer_names %d/%d embed %d classes %d", info.format, info.arch,
               info.n_layer_names, m->n_layers, info.embed_dim, info.num_classes);
    TEST_CHECK(info.n_missing + info.n_unexpected + info.n_mismatched == 0, "export vs schema: %d/%d/%d",
               info.n_missing, info.n_unexpected, info.n_mismatched);
    st_weights_info_free(&info);

    st_model *m2 = make_model(be, "resnet50", 32, 7, 99);
    st_weights_report rep;
    /* another head size: the file's 1000-class `probs` is ignored and reported, the head kept */
    TEST_CHECK(st_weights_load(m2, fx("weights_r50_top_probs.h5"), &rep) == 0 && rep.n_ignored == 2 &&
                   rep.n_kept == 4,
               "top into embedding 32 + 7 classes: %d ignored %d kept", rep.n_ignored, rep.n_kept);
    st_weights_report_free(&rep);
    TEST_CHECK(st_weights_load(m2, out, &rep) == 0 && rep.n_kept == 0 && rep.n_ignored == 0,
               "reload: %s", st_error_get());
    st_weights_report_free(&rep);
    size_t n1, n2;
    float *a = download_params(m, &n1), *b = download_params(m2, &n2);
    TEST_CHECK(n1 == n2 && memcmp(a, b, n1 * sizeof *a) == 0, "save -> load is not bit-exact");
    free(a);
    free(b);
    st_model_free(m2);

    /* the fine-tuned head is ignored (and reported) by a plain backbone */
    TEST_CHECK(st_weights_load(notop, out, &rep) == 0 && rep.n_ignored == 4, "backbone from export: %d ignored",
               rep.n_ignored);
    st_weights_report_free(&rep);
    st_model_free(m);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_weights_h5 FIXTURE_DIR\n");
        return 2;
    }
    fixture_dir = argv[1];
    FILE *probe = fopen(fx("weights_ref_tv_resnet18.h5"), "rb");
    if (!probe) test_skip("weights fixtures missing (weights_fixtures needs torch and h5py)");
    fclose(probe);
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "%s", st_error_get());
    /* st_model_create of a ResNet50 takes seconds (random init): share one backbone */
    st_model *notop = make_model(be, "resnet50", 0, 0, 7);
    st_model *tv18 = make_model(be, "tv_resnet18", 0, 0, 7);
    test_probe();
    test_load_layouts(be, notop);
    check_features(be, notop, "weights_r50.h5", "weights_ref_resnet50.h5");
    check_features(be, tv18, "weights_tv18.h5", "weights_ref_tv_resnet18.h5");
    test_bad_inputs(notop, tv18);
    test_save_roundtrip(be, notop);
    st_model_free(tv18);
    st_model_free(notop);
    st_backend_close(be);
    return test_finish("test_weights_h5");
}
