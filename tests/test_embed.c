/*
 * test_embed.c: `simtune embed` and `simtune search` end to end on generated images.
 *
 * A tv_resnet18 with its deterministic random initialisation is exported as a weight file; a
 * synthetic dataset of 3 classes x 4 images (64 x 64, PNG and JPEG) plus one corrupt file is
 * embedded. Checks: the corrupt file is skipped and the others written with labels, class names,
 * paths and attributes; rows are unit length; one image embedded alone (batch 1, as search does)
 * equals its row from the batched run; search ranks that image's own row first; R-MAC and a
 * named block output have the channel count of their feature map; a layer fused into the next
 * step is refused with a HINT.
 * Tolerance 1e-4 between batch-1 and batch-5 embeddings: the same convolutions run with another
 * batch size may use another oneDNN algorithm, which reorders float sums (unit vectors, so the
 * differences are ~1e-6 in practice).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "data/synthetic.h"
#include "infer/embedder.h"
#include "infer/embeddings_h5.h"
#include "infer/model/model.h"
#include "infer/weights_h5.h"
#include "kernels/check.h"
#include "test_util.h"
#include "cmd/commands.h"

static void make_fixtures(void) {
    st_synth_config sc;
    memset(&sc, 0, sizeof sc);
    sc.n_classes = 3;
    sc.images_per_class = 4;
    sc.width = sc.height = 64;
    sc.jpeg_fraction = 0.25;
    sc.seed = 1;
    ST_CHECK(st_synth_write_dataset("embed_images", &sc, NULL) == 0, "%s", st_error_get());
    FILE *bad = fopen("embed_images/device_000/zz_corrupt.png", "wb");
    ST_CHECK(bad != NULL, "cannot write the corrupt image");
    fputs("not a png at all", bad);
    fclose(bad);

    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "%s", st_error_get());
    st_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = "tv_resnet18";
    cfg.batch = 1;
    cfg.height = cfg.width = 64;
    cfg.pool = ST_GPOOL_AVG;
    cfg.bn_momentum = 0.1f;
    st_model *m = st_model_create(be, &cfg, 7);
    ST_CHECK(m, "%s", st_error_get());
    ST_CHECK(st_weights_save(m, "embed_weights.h5", NULL) == 0, "%s", st_error_get());
    st_model_free(m);
    st_backend_close(be);
}

static int run(int (*cmd)(int, char **), char **argv) {
    int argc = 0;
    while (argv[argc]) argc++;
    return cmd(argc, argv);
}

static void test_embed_file(void) {
    char *argv[] = {"embed", "--weights", "embed_weights.h5", "--images", "embed_images", "--out",
                    "embed.h5", "--image-size", "64", "--batch", "5", "--threads", "2", NULL};
    TEST_CHECK(run(cmd_embed, argv) == 0, "simtune embed failed: %s", st_error_get());
    st_embeddings e;
    TEST_CHECK(st_embeddings_read("embed.h5", &e) == 0, "read: %s", st_error_get());
    if (e.n == 0) return;
    TEST_CHECK(e.n == 12 && e.d == 512, "embed.h5 is (%ld, %d), expected 12 good images x 512", e.n, e.d);
    TEST_CHECK(e.n_label_names == 3 && !strcmp(e.label_names[2], "device_002"), "class names");
    TEST_CHECK(e.labels[0] == 0 && e.labels[11] == 2, "labels %d %d", e.labels[0], e.labels[11]);
    for (long i = 0; i < e.n; i++)
        TEST_CHECK(!strstr(e.paths[i], "corrupt"), "the corrupt image was embedded");
    TEST_CHECK(e.layer && !strcmp(e.layer, "avg_pool") && e.pooling && !strcmp(e.pooling, "avg") &&
                   e.normalized == 1 && e.image_size == 64,
               "attributes layer %s pooling %s normalized %d image_size %d", e.layer, e.pooling,
               e.normalized, e.image_size);
    for (long i = 0; i < e.n; i++) {
        double ss = 0;
        for (int j = 0; j < e.d; j++) ss += (double)e.vectors[i * e.d + j] * e.vectors[i * e.d + j];
        TEST_CHECK(fabs(ss - 1) < 1e-5, "row %ld has squared norm %g", i, ss);
    }

    /* one image alone (batch 1) equals its row of the batched run */
    st_embedder_options o;
    st_embedder_defaults(&o);
    o.weights = "embed_weights.h5";
    o.image_size = 64;
    o.batch = 1;
    o.threads = 2;
    st_embedder *em;
    TEST_CHECK(st_embedder_open(&o, &em) == 0, "embedder: %s", st_error_get());
    float one[512];
    uint8_t ok = 0;
    const char *path[1] = {e.paths[6]};
    TEST_CHECK(st_embedder_run(em, path, 1, one, &ok) == 1 && ok, "embedding one image failed");
    TEST_CLOSE("batch-1 embedding vs batched row", one, e.vectors + 6 * e.d, 512, 1e-4, 0);
    st_embedder_close(em);

    /* search ranks the query's own row first */
    char *search_argv[] = {"search", "--index", "embed.h5", "--weights", "embed_weights.h5", "--image",
                           e.paths[6], "-k", "3", "--html", "embed_search.html", NULL};
    FILE *saved = stdout;
    stdout = fopen("embed_search.txt", "w");
    int rc = run(cmd_search, search_argv);
    fclose(stdout);
    stdout = saved;
    TEST_CHECK(rc == 0, "simtune search failed: %s", st_error_get());
    char line[1024] = "";
    FILE *f = fopen("embed_search.txt", "r");
    if (f) {
        if (!fgets(line, sizeof line, f)) line[0] = '\0';
        fclose(f);
    }
    TEST_CHECK(!strncmp(line, "1\t", 2) && strstr(line, e.paths[6]), "first result: %s", line);
    struct stat st;
    TEST_CHECK(stat("embed_search.html", &st) == 0 && st.st_size > 0, "search --html wrote nothing");
    st_embeddings_free(&e);
}

static void test_layers_and_rmac(void) {
    char *rmac_argv[] = {"embed", "--weights", "embed_weights.h5", "--images", "embed_images", "--out",
                         "embed_rmac.h5", "--image-size", "64", "--pool", "rmac", NULL};
    TEST_CHECK(run(cmd_embed, rmac_argv) == 0, "embed --pool rmac: %s", st_error_get());
    st_embeddings e;
    if (st_embeddings_read("embed_rmac.h5", &e) == 0) {
        TEST_CHECK(e.d == 512 && !strcmp(e.pooling, "rmac"), "rmac: D=%d pooling %s", e.d, e.pooling);
        st_embeddings_free(&e);
    } else {
        TEST_CHECK(0, "rmac file unreadable: %s", st_error_get());
    }
    char *layer_argv[] = {"embed", "--weights", "embed_weights.h5", "--images", "embed_images", "--out",
                          "embed_layer.h5", "--image-size", "64", "--layer", "conv4_block2_out",
                          "--pool", "gem", "--no-normalize", NULL};
    TEST_CHECK(run(cmd_embed, layer_argv) == 0, "embed --layer conv4_block2_out: %s", st_error_get());
    if (st_embeddings_read("embed_layer.h5", &e) == 0) {
        TEST_CHECK(e.d == 256 && !strcmp(e.layer, "conv4_block2_out") && e.normalized == 0,
                   "conv4 GeM: D=%d layer %s normalized %d", e.d, e.layer, e.normalized);
        st_embeddings_free(&e);
    } else {
        TEST_CHECK(0, "layer file unreadable: %s", st_error_get());
    }
    char *fused_argv[] = {"embed", "--weights", "embed_weights.h5", "--images", "embed_images", "--out",
                          "embed_fused.h5", "--image-size", "64", "--layer", "conv1_conv", NULL};
    TEST_CHECK(run(cmd_embed, fused_argv) == 1 && strstr(st_error_get(), "HINT"),
               "a fused layer was not refused with a hint: %s", st_error_get());
}

int main(void) {
    make_fixtures();
    test_embed_file();
    test_layers_and_rmac();
    return test_finish("test_embed");
}
