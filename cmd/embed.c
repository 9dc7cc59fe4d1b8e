/*
 * embed.c: `simtune embed`, embeddings of any folder or manifest of images (a class tree, a
 * flat folder, a TSV/CSV manifest with metadata columns; data/dataset.h st_dataset_load_index),
 * written to an embedding file (infer/embeddings_h5.h schema, atomically).
 *
 * What a vector is: infer/embedder.h; the image size, pooling, GeM p and normalisation follow
 * the weight file's recipe unless an option (or --config) sets them, and the line printed
 * before embedding says which values were used and where they came from. The file records
 * labels (-1 for unlabelled images) and class names, the image paths, the manifest's metadata
 * columns, and the attributes model (the weight file), weights_id, layer, pooling, normalized
 * and image_size, which `simtune search` reuses to embed a query the same way. Files that are
 * not images and images that fail to decode are left out with a warning that lists them and
 * gives their count. Progress goes to stderr as `train` reports it (a bar on a terminal, every
 * 10% otherwise).
 *
 * With --config (a train config, train/config.h) the model section gives the defaults of
 * --weights, --image-size, --pool and --gem-p, and the config's device and threads those of
 * --device and --threads; options on the command line win (commands sit above train/, so one
 * may read train configs); the embedding itself is infer/embedder.c.
 *
 * Under `mpirun -np N` every rank reads the image list and embeds its contiguous share of the
 * batches (rank order), rank 0 gathers the vectors and writes the one file: identical to a
 * single process, whose batches are the same ones.
 */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "data/base/clock.h"
#include "data/dataset.h"
#include "infer/embedder.h"
#include "infer/embeddings_h5.h"
#include "kernels/check.h"
#include "kernels/comm.h"
#include "train/config.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune embed --weights W.h5 [--config C.yaml] --images DIR|TSV|CSV --out E.h5 [options]\n\n"
            "Embed every image of a folder or manifest with a ResNet, into an HDF5 embedding file.\n"
            "Images: a folder tree (one subfolder per class; images at its root are kept without\n"
            "a label, with a warning), a flat folder (no labels), or a TSV/CSV manifest: a header\n"
            "line naming the columns path, optional label, and any others (kept as metadata and\n"
            "shown by search and eval), or header-less lines path<TAB>label or path.\n"
            "The image size, pooling and normalisation the weights were trained with (recorded in\n"
            "simtune weight files) are used unless an option sets them; Keras and torchvision\n"
            "files get the defaults below. What was used is printed before embedding starts.\n\n"
            "  --weights FILE        Keras / torchvision-converted / simtune weight file; the\n"
            "                        architecture, preprocessing and embedding head come from it\n"
            "  --config FILE         a train config: its model section (weights, image_size, pool,\n"
            "                        gem_p, precision), device and threads are the defaults of the\n"
            "                        options\n"
            "  --images DIR|TSV|CSV  the images\n"
            "  --out FILE            embedding file (/embeddings, /labels, /label_names, /paths,\n"
            "                        /metadata_columns, /metadata)\n"
            "  --layer NAME          export this layer's feature map, pooled by --pool (default:\n"
            "                        the model output: its embedding head, else the pooled last\n"
            "                        feature map)\n"
            "  --pool NAME           avg | max | gem | rmac (default: the weights', else avg);\n"
            "                        rmac pools the last feature map when no --layer is given\n"
            "  --gem-p P             GeM exponent (default: the weights', else 3)\n"
            "  --normalize           L2-normalise every vector (default: the weights', else yes)\n"
            "  --no-normalize        keep raw vectors\n"
            "  --batch N             images per forward pass (default 16)\n"
            "  --image-size S        centre crop side after resizing the shorter side to\n"
            "                        S*256/224 (default: the weights', else 224)\n"
            "  --threads T           CPU threads (default 0 = all cores)\n"
            "  --device NAME         cpu | cuda (default cpu)\n"
            "  --precision P         fp32 | bf16: bf16 convolutions where the CPU has AVX512_BF16\n"
            "                        (else fp32 with a warning; default fp32)\n"
            "  -h, --help            this text\n\n"
            "Under mpirun -np N each rank embeds its share of the batches and rank 0 writes the one\n"
            "file, identical to one process's (docs/scaling.md).\n");
}

static int bad_usage(const char *msg) { return st_cli_usage_error("embed", msg); }

/* Keep the embedded rows of ds (ok) in the file struct; strings are copied. */
static void collect_rows(const st_dataset *ds, const float *vectors, const uint8_t *ok, long kept,
                         int d, st_embeddings *e) {
    size_t rows = (size_t)(kept ? kept : 1);
    e->n = kept;
    e->d = d;
    e->vectors = ST_MALLOC(rows * d * sizeof(float));
    e->labels = ST_MALLOC(rows * sizeof(int32_t));
    e->paths = ST_MALLOC(rows * sizeof(char *));
    e->n_meta = ds->n_meta;
    e->meta = ds->n_meta ? ST_MALLOC(rows * ds->n_meta * sizeof(char *)) : NULL;
    long r = 0;
    for (long i = 0; i < ds->n; i++) {
        if (!ok[i]) continue;
        memcpy(e->vectors + (size_t)r * d, vectors + (size_t)i * d, (size_t)d * sizeof(float));
        e->labels[r] = ds->labels[i];
        e->paths[r] = ST_STRDUP(ds->paths[i]);
        for (int c = 0; c < ds->n_meta; c++)
            e->meta[(size_t)r * ds->n_meta + c] = ST_STRDUP(ds->meta[(size_t)i * ds->n_meta + c]);
        r++;
    }
    if (ds->n_meta) {
        e->meta_names = ST_MALLOC((size_t)ds->n_meta * sizeof(char *));
        for (int c = 0; c < ds->n_meta; c++) e->meta_names[c] = ST_STRDUP(ds->meta_names[c]);
    }
    if (ds->n_classes == 0) return; /* unlabelled: no /label_names */
    e->n_label_names = ds->n_classes;
    e->label_names = ST_MALLOC((size_t)ds->n_classes * sizeof(char *));
    for (int c = 0; c < ds->n_classes; c++) e->label_names[c] = ST_STRDUP(ds->class_names[c]);
}

/* Progress on stderr the way `train` reports an epoch: a bar redrawn in place on a terminal,
 * else a line each time another 10% of the images is done (prev = images done at the last
 * call). */
static void print_progress(long prev, long done, long total, double t0) {
    double elapsed = st_now_seconds() - t0;
    double ips = done / (elapsed > 0 ? elapsed : 1e-9);
    double eta = done > 0 ? elapsed / done * (total - done) : 0;
    if (isatty(fileno(stderr))) {
        int width = 24, filled = total ? (int)(width * done / total) : width;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r  embed [%s] %ld/%ld images %.1f img/s eta %.0fs   ", bar, done, total, ips, eta);
        if (done == total) fputc('\n', stderr);
    } else {
        long every = total / 10 > 0 ? total / 10 : 1;
        if (done != total && done / every == prev / every) return;
        fprintf(stderr, "  embed %ld/%ld images %.1f img/s eta %.0fs\n", done, total, ips, eta);
    }
    fflush(stderr);
}

/* Embed the images [first, end) of ds into vectors and ok (rows from `first`) batch by batch
 * (batches start at multiples of `batch`), with progress; returns the number embedded. */
static long embed_range(st_embedder *em, const st_dataset *ds, int batch, long first, long end, float *vectors,
                        uint8_t *ok) {
    int d = st_embedder_dim(em);
    long kept = 0;
    double t0 = st_now_seconds();
    for (long i0 = first; i0 < end; i0 += batch) {
        long count = end - i0 < batch ? end - i0 : batch, row = i0 - first;
        kept += st_embedder_run(em, (const char *const *)ds->paths + i0, count, vectors + (size_t)row * d, ok + row);
        if (st_comm_rank() == 0) print_progress(row, row + count, end - first, t0);
    }
    return kept;
}

/* This rank's images [*first, *end): the rank-th contiguous share of whole batches. */
static void rank_range(long n, int batch, long *first, long *end) {
    long batches = (n + batch - 1) / batch, r = st_comm_rank(), ranks = st_comm_size();
    *first = batches * r / ranks * batch;
    *end = batches * (r + 1) / ranks * batch;
    if (*end > n) *end = n;
    if (*first > *end) *first = *end;
}

/* Every image of ds embedded into vectors and ok (ds->n rows on rank 0; on another rank, room
 * for its range): with several ranks each embeds its range and rank 0 gathers them in rank
 * order. The count embedded (valid on rank 0). */
static long embed_on_ranks(st_embedder *em, const st_dataset *ds, int batch, float *vectors, uint8_t *ok) {
    long first, end;
    rank_range(ds->n, batch, &first, &end);
    long kept = embed_range(em, ds, batch, first, end, vectors, ok);
    if (st_comm_size() == 1) return kept;
    size_t d = (size_t)st_embedder_dim(em);
    st_comm_gatherv(vectors, (size_t)(end - first) * d * sizeof *vectors, vectors);
    st_comm_gatherv(ok, (size_t)(end - first), ok);
    if (st_comm_rank() != 0) return kept; /* its own range: ok holds no more */
    kept = 0;
    for (long i = 0; i < ds->n; i++) kept += ok[i];
    return kept;
}

/* Warnings about the dataset: files left out while scanning, images without a class in a tree. */
static void warn_dataset(const st_dataset *ds, const char *images) {
    st_dataset_print_skipped(ds, images, stderr);
    int unlabelled = 0;
    for (int i = 0; i < ds->n; i++) unlabelled += ds->labels[i] < 0;
    if (ds->n_classes > 0 && unlabelled > 0)
        fprintf(stderr, "warning: %s: %d image%s without a class (at the root of the class tree or with an "
                        "empty label): embedded with label -1\n",
                images, unlabelled, unlabelled == 1 ? "" : "s");
}

enum { O_WEIGHTS = 256, O_IMAGES, O_OUT, O_LAYER, O_POOL, O_GEM_P, O_NORM, O_NO_NORM, O_BATCH, O_SIZE, O_THREADS,
       O_DEVICE, O_PRECISION, O_CONFIG };

static const struct option options[] = {
    {"weights", required_argument, NULL, O_WEIGHTS}, {"images", required_argument, NULL, O_IMAGES},
    {"out", required_argument, NULL, O_OUT},         {"layer", required_argument, NULL, O_LAYER},
    {"pool", required_argument, NULL, O_POOL},       {"gem-p", required_argument, NULL, O_GEM_P},
    {"normalize", no_argument, NULL, O_NORM},        {"no-normalize", no_argument, NULL, O_NO_NORM},
    {"batch", required_argument, NULL, O_BATCH},     {"image-size", required_argument, NULL, O_SIZE},
    {"threads", required_argument, NULL, O_THREADS}, {"device", required_argument, NULL, O_DEVICE},
    {"config", required_argument, NULL, O_CONFIG},   {"help", no_argument, NULL, 'h'},
    {"precision", required_argument, NULL, O_PRECISION},
    {NULL, 0, NULL, 0}};

typedef struct embed_args {
    st_embedder_options o;
    const char *images, *out, *config;
    int given[O_CONFIG + 1]; /* options set on the command line win over --config */
    int help;
} embed_args;

/* Defaults from a train config for the options not given on the command line. */
static void apply_config(const st_train_config *cfg, embed_args *a) {
    static const st_embed_pool pools[] = {ST_EMBED_POOL_AVG, ST_EMBED_POOL_MAX, ST_EMBED_POOL_GEM};
    st_embedder_options *o = &a->o;
    if (!a->given[O_WEIGHTS] && cfg->model.weights) o->weights = cfg->model.weights;
    if (!a->given[O_SIZE]) o->image_size = cfg->model.image_size;
    if (!a->given[O_POOL]) o->pool = pools[cfg->model.pool];
    if (!a->given[O_GEM_P]) o->gem_p = (float)cfg->model.gem_p;
    if (!a->given[O_THREADS]) o->threads = cfg->threads;
    if (!a->given[O_DEVICE] && cfg->device == ST_DEVICE_CUDA) o->device = "cuda";
    if (!a->given[O_PRECISION]) o->precision = cfg->model.precision;
}

/* The options with a value to check: 0, or 2 after the usage error. */
static int parse_value(int c, const char *arg, st_embedder_options *o) {
    double gem_p; /* --gem-p, parsed as a double */
    switch (c) {
    case O_POOL: return st_embed_pool_parse(arg, &o->pool) != 0 ? bad_usage(st_error_get()) : 0;
    case O_GEM_P:
        if (st_cli_double_option("embed", "--gem-p", arg, 0, HUGE_VAL, &gem_p)) return 2;
        if (gem_p == 0) return bad_usage("--gem-p must be > 0");
        o->gem_p = (float)gem_p;
        return 0;
    case O_BATCH: return st_cli_int_option("embed", "--batch", arg, 1, INT_MAX, &o->batch);
    case O_SIZE: return st_cli_int_option("embed", "--image-size", arg, 32, INT_MAX, &o->image_size);
    case O_THREADS: return st_cli_int_option("embed", "--threads", arg, 0, INT_MAX, &o->threads);
    case O_PRECISION:
        return st_precision_parse(arg, &o->precision) ? bad_usage("--precision must be fp32 or bf16") : 0;
    }
    ST_CHECK(0, "option %d has no parser", c);
    return 2;
}

/* argv into a: 0 to go on (a->help: --help was printed), or 2 after the usage error. */
static int parse_args(int argc, char **argv, embed_args *a) {
    memset(a, 0, sizeof *a);
    st_embedder_defaults(&a->o);
    int c, rc = 0;
    optind = 1;
    opterr = 0; /* our own message below names the option */
    while (rc == 0 && (c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        if (c >= O_WEIGHTS && c <= O_CONFIG) a->given[c] = 1;
        switch (c) {
        case O_CONFIG: a->config = optarg; break;
        case O_WEIGHTS: a->o.weights = optarg; break;
        case O_IMAGES: a->images = optarg; break;
        case O_OUT: a->out = optarg; break;
        case O_LAYER: a->o.layer = optarg; break;
        case O_DEVICE: a->o.device = optarg; break;
        case O_NORM: a->o.normalize = 1; break;
        case O_NO_NORM: a->o.normalize = 0; break;
        case 'h': usage(stdout); a->help = 1; return 0;
        case ':':
        case '?': return st_cli_bad_option("embed", c, argv[optind - 1]);
        default: rc = parse_value(c, optarg, &a->o);
        }
    }
    if (rc) return rc;
    return optind < argc ? bad_usage("unexpected argument") : 0;
}

/* The file's rows and the attributes that let `search` embed a query the same way. */
static void fill_embeddings(const st_dataset *ds, const float *vectors, const uint8_t *ok, long kept,
                            const st_embedder *em, const char *weights, st_embeddings *e) {
    collect_rows(ds, vectors, ok, kept, st_embedder_dim(em), e);
    const st_embedder_settings *used = st_embedder_settings_of(em);
    e->model = ST_STRDUP(weights);
    e->weights_id = ST_STRDUP(st_embedder_weights_id(em));
    e->layer = ST_STRDUP(st_embedder_layer(em));
    e->pooling = ST_STRDUP(st_embed_pool_name(used->pool));
    e->normalized = used->normalize;
    e->image_size = used->image_size;
    if (used->pool == ST_EMBED_POOL_GEM) e->gem_p = used->gem_p;
}

/* Embed every image of a->images into a->out: 0, or 1 after the error message. */
static int embed(const embed_args *a) {
    st_dataset ds = {0};
    st_embedder *em = NULL;
    st_embeddings e = {0};
    float *vectors = NULL;
    uint8_t *ok = NULL;
    int rc = 1;
    int root = st_comm_rank() == 0; /* prints, gathers and writes */
    if (st_dataset_load_index(a->images, &ds) != 0) goto done;
    if (root) warn_dataset(&ds, a->images);
    if (st_embedder_open(&a->o, &em) != 0) goto done;
    char used[512];
    st_embedder_describe(em, used, sizeof used);
    if (root) printf("embed: %d images with %s%s\n", ds.n, used, st_comm_size() > 1 ? ", split across ranks" : "");
    fflush(stdout);
    int d = st_embedder_dim(em);
    long first, end; /* rank 0 holds every row to gather them, another rank its own */
    rank_range(ds.n, a->o.batch, &first, &end);
    size_t rows = (size_t)(root ? ds.n : end - first) + 1;
    vectors = ST_MALLOC(rows * d * sizeof(float));
    ok = ST_CALLOC(rows, 1);
    long kept = embed_on_ranks(em, &ds, a->o.batch, vectors, ok);
    if (!root) {
        rc = 0;
        goto done;
    }
    if (kept == 0) {
        st_error_set("%s: none of the %d images could be embedded", a->images, ds.n);
        goto done;
    }
    if (kept < ds.n)
        fprintf(stderr, "warning: %s: %ld of %d images could not be read or decoded (listed above) and are "
                        "left out\n", a->images, ds.n - kept, ds.n);
    fill_embeddings(&ds, vectors, ok, kept, em, a->o.weights, &e);
    if (st_embeddings_write(a->out, &e) != 0) goto done;
    printf("embed: %ld of %d images, %s layer %s, pooling %s, D=%d%s -> %s\n", kept, ds.n, st_embedder_arch(em),
           e.layer, e.pooling, d, ds.n_classes ? "" : ", unlabelled", a->out);
    rc = 0;
done:
    if (rc) fprintf(stderr, "simtune embed: %s\n", st_error_get());
    st_embeddings_free(&e);
    st_embedder_close(em);
    st_dataset_free(&ds);
    free(vectors);
    free(ok);
    return rc;
}

int cmd_embed(int argc, char **argv) {
    embed_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc || a.help) return rc;
    st_train_config cfg;
    if (a.config) {
        if (st_config_load(a.config, NULL, 0, &cfg)) {
            fprintf(stderr, "simtune embed: %s\n", st_error_get());
            return 1;
        }
        apply_config(&cfg, &a);
    }
    if (!a.o.weights || !a.images || !a.out)
        rc = bad_usage("--weights (or a config with model.weights), --images and --out are required");
    else
        rc = embed(&a);
    if (a.config) st_config_free(&cfg); /* after embedding: a.o.weights may point into it */
    return rc;
}
