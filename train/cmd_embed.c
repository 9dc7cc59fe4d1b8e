/*
 * cmd_embed.c: `simtune embed`, embeddings of a folder-per-class tree or a TSV manifest of
 * images, written to an embedding file (infer/embeddings_h5.h schema, atomically).
 *
 * What a vector is: infer/embedder.h. The file records labels and class names from the dataset
 * (data/dataset.h), the image paths, and the attributes model (the weight file), layer,
 * pooling, normalized and image_size, which `simtune search` reuses to embed a query the same
 * way. Bad images are skipped with a warning each and left out of the file.
 *
 * With --config (a train config, train/config.h) the model section gives the defaults of
 * --weights, --image-size, --pool and --gem-p, and the config's device and threads those of
 * --device and --threads; options on the command line win. That is why this command lives in
 * train/: it reads train configs; the embedding itself is infer/embedder.c.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/dataset.h"
#include "../infer/cli.h"
#include "../infer/embedder.h"
#include "../infer/embeddings_h5.h"
#include "../kernels/check.h"
#include "commands.h"
#include "config.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune embed --weights W.h5 [--config C.yaml] --images DIR|TSV --out E.h5 [options]\n\n"
            "Embed every image of a folder tree (one subfolder per class) or a TSV manifest\n"
            "(path<TAB>label) with a ResNet, into an HDF5 embedding file.\n\n"
            "  --weights FILE        Keras / torchvision-converted / simtune weight file; the\n"
            "                        architecture, preprocessing and embedding head come from it\n"
            "  --config FILE         a train config: its model section (weights, image_size, pool,\n"
            "                        gem_p), device and threads are the defaults of the options\n"
            "  --images DIR|TSV      the images\n"
            "  --out FILE            embedding file (/embeddings, /labels, /label_names, /paths)\n"
            "  --layer NAME          export this layer's feature map, pooled by --pool (default:\n"
            "                        the model output: its embedding head, else the pooled last\n"
            "                        feature map)\n"
            "  --pool NAME           avg | max | gem | rmac (default avg); rmac pools the last\n"
            "                        feature map when no --layer is given\n"
            "  --gem-p P             GeM exponent (default 3)\n"
            "  --normalize           L2-normalise every vector (default)\n"
            "  --no-normalize        keep raw vectors\n"
            "  --batch N             images per forward pass (default 16)\n"
            "  --image-size S        centre crop side after resizing the shorter side to\n"
            "                        S*256/224 (default 224)\n"
            "  --threads T           CPU threads (default 0 = all cores)\n"
            "  --device NAME         cpu | cuda (default cpu)\n"
            "  -h, --help            this text\n");
}

static int bad_usage(const char *msg) { return st_cli_usage_error("embed", msg); }

/* Keep the embedded rows of ds (ok) in the file struct; strings are copied. */
static void collect_rows(const st_dataset *ds, const float *vectors, const uint8_t *ok, long kept,
                         int d, st_embeddings *e) {
    e->n = kept;
    e->d = d;
    e->vectors = ST_MALLOC((size_t)(kept ? kept : 1) * d * sizeof(float));
    e->labels = ST_MALLOC((size_t)(kept ? kept : 1) * sizeof(int32_t));
    e->paths = ST_MALLOC((size_t)(kept ? kept : 1) * sizeof(char *));
    long r = 0;
    for (long i = 0; i < ds->n; i++) {
        if (!ok[i]) continue;
        memcpy(e->vectors + (size_t)r * d, vectors + (size_t)i * d, (size_t)d * sizeof(float));
        e->labels[r] = ds->labels[i];
        e->paths[r] = ST_STRDUP(ds->paths[i]);
        r++;
    }
    e->n_label_names = ds->n_classes;
    e->label_names = ST_MALLOC((size_t)(ds->n_classes ? ds->n_classes : 1) * sizeof(char *));
    for (int c = 0; c < ds->n_classes; c++) e->label_names[c] = ST_STRDUP(ds->class_names[c]);
}

/* Defaults from a train config for the options not given (given[] indexed by option id). */
static void apply_config(const st_train_config *cfg, const int *given, int o_weights, int o_size, int o_pool,
                         int o_gem, int o_threads, int o_device, st_embedder_options *o) {
    static const st_embed_pool pools[] = {ST_EMBED_POOL_AVG, ST_EMBED_POOL_MAX, ST_EMBED_POOL_GEM};
    if (!given[o_weights] && cfg->model.weights) o->weights = cfg->model.weights;
    if (!given[o_size]) o->image_size = cfg->model.image_size;
    if (!given[o_pool]) o->pool = pools[cfg->model.pool];
    if (!given[o_gem]) o->gem_p = (float)cfg->model.gem_p;
    if (!given[o_threads]) o->threads = cfg->threads;
    if (!given[o_device] && cfg->device == ST_DEVICE_CUDA) o->device = "cuda";
}

int cmd_embed(int argc, char **argv) {
    enum { O_WEIGHTS = 256, O_IMAGES, O_OUT, O_LAYER, O_POOL, O_GEM_P, O_NORM, O_NO_NORM, O_BATCH,
           O_SIZE, O_THREADS, O_DEVICE, O_CONFIG };
    static const struct option options[] = {
        {"weights", required_argument, NULL, O_WEIGHTS}, {"images", required_argument, NULL, O_IMAGES},
        {"out", required_argument, NULL, O_OUT},         {"layer", required_argument, NULL, O_LAYER},
        {"pool", required_argument, NULL, O_POOL},       {"gem-p", required_argument, NULL, O_GEM_P},
        {"normalize", no_argument, NULL, O_NORM},        {"no-normalize", no_argument, NULL, O_NO_NORM},
        {"batch", required_argument, NULL, O_BATCH},     {"image-size", required_argument, NULL, O_SIZE},
        {"threads", required_argument, NULL, O_THREADS}, {"device", required_argument, NULL, O_DEVICE},
        {"config", required_argument, NULL, O_CONFIG},   {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    st_embedder_options o;
    st_embedder_defaults(&o);
    const char *images = NULL, *out = NULL, *config = NULL;
    int given[O_CONFIG + 1] = {0}; /* options set on the command line win over --config */
    int c;
    char *end;
    optind = 1;
    opterr = 0; /* our own message below names the option */
    while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        if (c >= O_WEIGHTS && c <= O_CONFIG) given[c] = 1;
        switch (c) {
        case O_CONFIG: config = optarg; break;
        case O_WEIGHTS: o.weights = optarg; break;
        case O_IMAGES: images = optarg; break;
        case O_OUT: out = optarg; break;
        case O_LAYER: o.layer = optarg; break;
        case O_DEVICE: o.device = optarg; break;
        case O_NORM: o.normalize = 1; break;
        case O_NO_NORM: o.normalize = 0; break;
        case O_POOL:
            if (st_embed_pool_parse(optarg, &o.pool) != 0) return bad_usage(st_error_get());
            break;
        case O_GEM_P:
            o.gem_p = strtof(optarg, &end);
            if (*end || !(o.gem_p > 0)) return bad_usage("--gem-p must be > 0");
            break;
        case O_BATCH:
            if (st_cli_parse_int(optarg, 1, &o.batch)) return bad_usage("--batch must be >= 1");
            break;
        case O_SIZE:
            if (st_cli_parse_int(optarg, 32, &o.image_size)) return bad_usage("--image-size must be >= 32");
            break;
        case O_THREADS:
            if (st_cli_parse_int(optarg, 0, &o.threads)) return bad_usage("--threads must be >= 0");
            break;
        case 'h': usage(stdout); return 0;
        default: return st_cli_bad_option("embed", c, argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument");
    st_train_config cfg;
    if (config) {
        if (st_config_load(config, NULL, 0, &cfg)) {
            fprintf(stderr, "simtune embed: %s\n", st_error_get());
            return 1;
        }
        apply_config(&cfg, given, O_WEIGHTS, O_SIZE, O_POOL, O_GEM_P, O_THREADS, O_DEVICE, &o);
    }
    if (!o.weights || !images || !out) {
        if (config) st_config_free(&cfg);
        return bad_usage("--weights (or a config with model.weights), --images and --out are required");
    }

    st_dataset ds;
    memset(&ds, 0, sizeof ds);
    st_embedder *em = NULL;
    st_embeddings e;
    memset(&e, 0, sizeof e);
    float *vectors = NULL;
    uint8_t *ok = NULL;
    int rc = 1;
    if (st_dataset_load(images, &ds) != 0) goto done;
    if (st_embedder_open(&o, &em) != 0) goto done;
    int d = st_embedder_dim(em);
    vectors = ST_MALLOC((size_t)ds.n * d * sizeof(float));
    ok = ST_MALLOC((size_t)ds.n);
    long kept = st_embedder_run(em, (const char *const *)ds.paths, ds.n, vectors, ok);
    if (kept == 0) {
        st_error_set("%s: none of the %d images could be embedded", images, ds.n);
        goto done;
    }
    collect_rows(&ds, vectors, ok, kept, d, &e);
    e.model = ST_STRDUP(o.weights);
    e.layer = ST_STRDUP(st_embedder_layer(em));
    e.pooling = ST_STRDUP(st_embed_pool_name(o.pool));
    e.normalized = o.normalize;
    e.image_size = o.image_size;
    if (st_embeddings_write(out, &e) != 0) goto done;
    printf("embed: %ld of %d images, %s layer %s, pooling %s, D=%d -> %s\n", kept, ds.n,
           st_embedder_arch(em), e.layer, e.pooling, d, out);
    rc = 0;
done:
    if (rc) fprintf(stderr, "simtune embed: %s\n", st_error_get());
    st_embeddings_free(&e);
    st_embedder_close(em);
    st_dataset_free(&ds);
    free(vectors);
    free(ok);
    if (config) st_config_free(&cfg);
    return rc;
}
