/*
 * bench_data.c: `simtune bench data`: throughput of the input pipeline alone (read, decode,
 * resize, crop, preprocess into batch buffers), no model. Called by the bench command with
 * argv[0] = "data"; bench/data_bench.py runs it next to torchvision's DataLoader.
 *
 * Prints one human line and one machine line `images_per_s=<float>` on stdout.
 */
#include "bench_data.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "data/base/clock.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "kernels/check.h"

typedef struct bench_options {
    const char *data;
    int size, resize, threads, batch, epochs, prefetch;
    int dct_scaling;
    st_preprocess preprocess;
} bench_options;

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: simtune bench data --data PATH [options]\n"
            "Measures images/s of the data loader: decode + resize + centre crop + preprocess.\n\n"
            "  --data PATH        image folder (root/<class>/<image>) or TSV manifest (required)\n"
            "  --size N           output crop size (default 224)\n"
            "  --resize N         shorter side before the centre crop; 0 = exact resize to size\n"
            "                     (default 256)\n"
            "  --threads N        worker threads (default 2)\n"
            "  --batch N          batch size (default 32)\n"
            "  --prefetch N       batch buffers in flight (default 4)\n"
            "  --epochs N         passes over the data; the first warms the page cache and is\n"
            "                     timed too (default 2, the report is the last epoch)\n"
            "  --preprocess MODE  caffe | tf | torch (default torch)\n"
            "  --no-dct-scaling   decode JPEGs at full size\n"
            "  --help             this text\n");
}

/* 0 parsed, 1 --help shown, 2 usage error. */
static int parse_options(int argc, char **argv, bench_options *o) {
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},     {"size", required_argument, NULL, 's'},
        {"resize", required_argument, NULL, 'r'},   {"threads", required_argument, NULL, 't'},
        {"batch", required_argument, NULL, 'b'},    {"epochs", required_argument, NULL, 'e'},
        {"prefetch", required_argument, NULL, 'p'}, {"preprocess", required_argument, NULL, 'm'},
        {"no-dct-scaling", no_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    *o = (bench_options){NULL, 224, 256, 2, 32, 2, 4, 1, ST_PREPROCESS_TORCH};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        int bad = 0;
        switch (c) {
        case 'd': o->data = optarg; break;
        case 's': bad = st_cli_int_option("bench data", "--size", optarg, 1, 4096, &o->size); break;
        case 'r': bad = st_cli_int_option("bench data", "--resize", optarg, 0, 8192, &o->resize); break;
        case 't': bad = st_cli_int_option("bench data", "--threads", optarg, 1, 256, &o->threads); break;
        case 'b': bad = st_cli_int_option("bench data", "--batch", optarg, 1, 4096, &o->batch); break;
        case 'e': bad = st_cli_int_option("bench data", "--epochs", optarg, 1, 1000, &o->epochs); break;
        case 'p': bad = st_cli_int_option("bench data", "--prefetch", optarg, 2, 64, &o->prefetch); break;
        case 'm':
            if (st_preprocess_parse(optarg, &o->preprocess)) {
                fprintf(stderr, "simtune bench data: %s\ntry 'simtune bench data --help'\n", st_error_get());
                bad = 1;
            }
            break;
        case 'n': o->dct_scaling = 0; break;
        case 'h': print_usage(stdout); return 1;
        default: fprintf(stderr, "try 'simtune bench data --help'\n"); return 2;
        }
        if (bad) return 2;
    }
    if (optind < argc || !o->data) {
        fprintf(stderr, "simtune bench data: %s\ntry 'simtune bench data --help'\n",
                o->data ? "unexpected argument" : "--data is required");
        return 2;
    }
    if (o->resize != 0 && o->resize < o->size) {
        fprintf(stderr, "simtune bench data: --resize %d is smaller than --size %d\n", o->resize, o->size);
        return 2;
    }
    return 0;
}

/* One epoch; returns images delivered, -1 on a loader error. */
static long long run_epoch(st_loader *L) {
    long long images = 0;
    st_batch *b;
    int rc;
    st_loader_begin_epoch(L);
    while ((rc = st_loader_next(L, &b)) == 1) {
        images += b->n;
        st_loader_release(L, b);
    }
    return rc < 0 ? -1 : images;
}

int st_bench_data(int argc, char **argv) {
    bench_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : 2;
    st_dataset ds;
    if (st_dataset_load(o.data, &ds)) {
        fprintf(stderr, "simtune bench data: %s\n", st_error_get());
        return 1;
    }
    st_transform t = st_transform_eval(o.size, o.resize ? o.resize : o.size, o.preprocess);
    if (o.resize == 0) t.geometry = ST_GEOM_RESIZE_EXACT;
    st_sampler_config sc = {ST_SAMPLE_SEQUENTIAL, o.batch, 0, 0, 0, 0};
    st_loader_config cfg = st_loader_config_default(&ds, &t, sc);
    cfg.n_threads = o.threads;
    cfg.prefetch = o.prefetch;
    if (!o.dct_scaling) cfg.decode.min_short_side = 0;
    st_loader *L;
    if (st_loader_create(&cfg, &L)) {
        fprintf(stderr, "simtune bench data: %s\n", st_error_get());
        st_dataset_free(&ds);
        return 1;
    }
    double seconds = 0;
    long long images = 0;
    for (int e = 0; e < o.epochs && images >= 0; e++) {
        double start = st_now_seconds();
        images = run_epoch(L);
        seconds = st_now_seconds() - start;
    }
    int status = 0;
    if (images < 0) {
        fprintf(stderr, "simtune bench data: %s\n", st_error_get());
        status = 1;
    } else {
        double rate = seconds > 0 ? (double)images / seconds : 0;
        printf("bench data: %lld images (%s) in %.3f s = %.1f images/s; %d threads, batch %d, %dx%d, "
               "resize %d, JPEG DCT scaling %s\n",
               images, o.data, seconds, rate, o.threads, o.batch, o.size, o.size, o.resize,
               o.dct_scaling ? "on" : "off");
        printf("images_per_s=%.2f\n", rate);
        st_loader_print_summary(L, stderr);
    }
    st_loader_destroy(L);
    st_dataset_free(&ds);
    return status;
}
