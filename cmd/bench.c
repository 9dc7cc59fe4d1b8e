/*
 * bench.c: `simtune bench train|infer|data`: throughput and peak memory on random data.
 *
 *   train  forward (training mode) + loss + backward + SGD momentum step per iteration;
 *          --loss xent: 1000-way classifier and cross-entropy (the PyTorch benchmark's setup);
 *          --loss triplet: batch-hard triplet loss on the pooled features, P x 4 batches.
 *   infer  inference forward to the pooled features (BN folded into the convolutions).
 *   load   loading a weight file into its model (warm page cache: best of --steps loads).
 *   data   the image pipeline (cmd/bench_data.c).
 *   peak   the CPU's FP32 FMA and bf16 dot-product throughput on the same threads
 *          (cmd/bench_peak.c).
 * train and infer on the CPU also print the model's counted FLOPs per image (infer/model/
 * profile.c) and the share of the measured peak they reach (the peak of --precision's
 * arithmetic, measured in the same run); --profile adds the time per kind of work and pass.
 * With --json the last line is one JSON object with images_per_second and peak_rss_mb.
 * bench/run_model_bench.sh runs the same shapes in PyTorch (bench/torch_bench.py) side by side.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_data.h"
#include "bench_peak.h"
#include "cli.h"
#include "commands.h"
#include "data/base/clock.h"
#include "data/base/rng.h"
#include "data/base/json.h"
#include "infer/weights_h5.h"
#include "kernels/check.h"
#include "infer/model/model.h"
#include "train/loss.h"
#include "train/optim.h"

/* --json: one line (scripts take the last line of the output); 8 significant digits keep the
 * 4 decimals the figures had before for anything below 10000. */
#define JSON_BENCH_FLAGS ST_JSON_PRECISION(8)

typedef struct bench_args {
    const char *mode, *arch, *freeze_until, *device, *loss, *weights;
    int image_size, batch, steps, warmup, threads, json, profile;
    st_precision precision;
} bench_args;

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune bench train|infer [--arch A] [--image-size S] [--batch B] [--steps N]\n"
            "                     [--warmup W] [--threads T] [--freeze-until LAYER] [--loss xent|triplet]\n"
            "                     [--device cpu|cuda] [--precision fp32|bf16] [--profile] [--json]\n"
            "       simtune bench load --weights FILE.h5 [--steps N] [--json]\n"
            "       simtune bench peak [--threads T] [--json]\n"
            "       simtune bench data --help\n\n"
            "Throughput on random data. Defaults: --arch resnet50 --image-size 224 --batch 16 --steps 10\n"
            "--warmup 2 --threads 0 (all cores) --freeze-until none --loss xent --device cpu\n"
            "--precision fp32.\n"
            "  train   forward + loss + backward + SGD step (xent: 1000-way classifier;\n"
            "          triplet: batch-hard on pooled features, batches of P classes x 4 images)\n"
            "  infer   inference forward to pooled features\n"
            "  load    load a weight file into its architecture, warm page cache, best of --steps\n"
            "  peak    FP32 FMA (and bf16 dot-product, where the CPU has AVX512_BF16) GFLOP/s\n"
            "  --precision bf16  bf16 convolutions (FP32 where the backend has none, with a warning)\n"
            "  --profile  seconds per step by kind of work and pass (conv fwd / bwd-data /\n"
            "             bwd-weights, reorders, BN, elementwise, pool, head, loss, optimizer)\n"
            "  --json  print one JSON object last: images_per_second, peak_rss_mb, seconds,\n"
            "          percent_of_peak (cpu), profile (with --profile), ...\n"
            "bench/run_model_bench.sh compares with PyTorch in the same run.\n");
}

static int parse_args(int argc, char **argv, bench_args *a) {
    static const struct option options[] = {
        {"arch", required_argument, 0, 'a'},    {"image-size", required_argument, 0, 's'},
        {"batch", required_argument, 0, 'b'},   {"steps", required_argument, 0, 'n'},
        {"warmup", required_argument, 0, 'w'},  {"threads", required_argument, 0, 't'},
        {"freeze-until", required_argument, 0, 'f'}, {"device", required_argument, 0, 'd'},
        {"loss", required_argument, 0, 'l'},    {"json", no_argument, 0, 'j'},
        {"weights", required_argument, 0, 'W'}, {"precision", required_argument, 0, 'p'},
        {"profile", no_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    *a = (bench_args){argv[0], "resnet50", "none", "cpu", "xent", NULL, 224, 16, 10, 2, 0, 0, 0,
                      ST_PRECISION_FP32};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "", options, NULL)) != -1;) {
        int bad = 0;
        switch (c) {
        case 'a': a->arch = optarg; break;
        case 's': bad = st_cli_int_option("bench", "--image-size", optarg, 32, INT_MAX, &a->image_size); break;
        case 'b': bad = st_cli_int_option("bench", "--batch", optarg, 1, INT_MAX, &a->batch); break;
        case 'n': bad = st_cli_int_option("bench", "--steps", optarg, 1, INT_MAX, &a->steps); break;
        case 'w': bad = st_cli_int_option("bench", "--warmup", optarg, 0, INT_MAX, &a->warmup); break;
        case 't': bad = st_cli_int_option("bench", "--threads", optarg, 0, INT_MAX, &a->threads); break;
        case 'f': a->freeze_until = optarg; break;
        case 'd': a->device = optarg; break;
        case 'l': a->loss = optarg; break;
        case 'j': a->json = 1; break;
        case 'W': a->weights = optarg; break;
        case 'P': a->profile = 1; break;
        case 'p':
            if (st_precision_parse(optarg, &a->precision)) {
                fprintf(stderr, "simtune bench: --precision must be fp32 or bf16, not '%s'\n", optarg);
                return -1;
            }
            break;
        case 'h': usage(stdout); return 1;
        default: return -1;
        }
        if (bad) return -1;
    }
    if (strcmp(a->loss, "xent") && strcmp(a->loss, "triplet")) {
        fprintf(stderr, "simtune bench: --loss must be xent or triplet, not '%s'\n", a->loss);
        return -1;
    }
    if (!strcmp(a->loss, "triplet") && a->batch % 4) {
        fprintf(stderr, "simtune bench: --loss triplet needs --batch divisible by 4 (P x 4 images)\n");
        return -1;
    }
    return 0;
}

static void random_input(st_model *m, int n, uint64_t seed) {
    size_t count = (size_t)n * m->input.h * m->input.w * m->input.c;
    float *x = ST_MALLOC(count * sizeof *x);
    st_rng rng;
    st_rng_seed(&rng, seed);
    for (size_t i = 0; i < count; i++) x[i] = (float)(2.0 * st_rng_uniform(&rng) - 1.0);
    m->backend->upload(m->backend, m->input.data, x, count * sizeof *x);
    free(x);
}

typedef struct train_parts {
    st_loss *loss;
    st_optimizer *optimizer;
    int32_t *labels;
} train_parts;

static int setup_training(st_model *m, const bench_args *a, train_parts *tp) {
    int triplet = !strcmp(a->loss, "triplet");
    st_loss_config lc = {0};
    lc.kind = triplet ? ST_LOSS_TRIPLET : ST_LOSS_XENT;
    lc.margin = 0.2f;
    tp->loss = st_loss_create(m, &lc);
    st_optim_config oc = st_optim_config_default(ST_OPT_SGD);
    oc.momentum = 0.9f;
    tp->optimizer = tp->loss ? st_optimizer_create(m, &oc) : NULL;
    tp->labels = ST_MALLOC((size_t)a->batch * sizeof *tp->labels);
    for (int i = 0; i < a->batch; i++) tp->labels[i] = triplet ? i / 4 : (i * 37) % 1000;
    return tp->optimizer ? 0 : -1;
}

static void step_once(st_model *m, const bench_args *a, train_parts *tp) {
    if (!tp->loss) {
        st_model_forward(m, a->batch, 0);
        return;
    }
    st_model_forward(m, a->batch, 1);
    st_profile_mark mark = st_profile_begin(m);
    /* recorded on the device like the trainer's steps; read back only when the record is full */
    if (st_loss_record(tp->loss, a->batch, tp->labels) >= ST_LOSS_MAX_PENDING) {
        const st_loss_stats *done;
        st_loss_read(tp->loss, &done);
    }
    st_profile_end(m, ST_PROF_LOSS, mark);
    st_model_backward(m, a->batch);
    mark = st_profile_begin(m);
    st_optimizer_step(tp->optimizer, 0.01f);
    st_profile_end(m, ST_PROF_OPTIMIZER, mark);
}

/* What a timed run reached, for the text and JSON reports. */
typedef struct bench_result {
    double seconds, ips, rss_mb;
    double gflop_per_image; /* counted (infer/model/profile.c) */
    double peak_gflops;     /* of the precision's arithmetic; 0: not measured (CUDA) */
    st_profile profile;     /* with --profile: totals over the timed steps */
} bench_result;

static double percent_of_peak(const bench_result *r) {
    return r->peak_gflops > 0 ? 100.0 * r->ips * r->gflop_per_image / r->peak_gflops : 0;
}

/* --profile: seconds per step of each row, largest first as listed, and their share. */
static void print_profile(const bench_args *a, const bench_result *r) {
    double total = 0;
    for (int i = 0; i < ST_PROF_ROWS; i++) total += r->profile.seconds[i];
    printf("profile, seconds per step (timed rows add to %.3f s of %.3f s per step):\n",
           total / a->steps, r->seconds / a->steps);
    for (int i = 0; i < ST_PROF_ROWS; i++) {
        if (!r->profile.calls[i]) continue;
        printf("  %-17s %8.4f s  %5.1f%%  (%ld calls)\n", st_prof_row_name(i),
               r->profile.seconds[i] / a->steps, 100.0 * r->profile.seconds[i] / r->seconds,
               r->profile.calls[i] / a->steps);
    }
}

static void print_json(const bench_args *a, const st_model *m, const bench_result *r) {
    const st_backend *be = m->backend;
    json_t *j = json_pack("{s:s, s:o, s:o, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                          "peer", "simtune", "mode", st_json_text(a->mode), "arch", st_json_text(a->arch),
                          "image_size", a->image_size, "batch", a->batch, "steps", a->steps, "threads",
                          be->threads, "device", st_json_text(be->name), "freeze_until",
                          st_json_text(a->freeze_until), "loss", st_json_text(a->loss), "precision",
                          st_json_text(st_precision_name(m->config.precision)), "seconds",
                          st_json_number(r->seconds), "images_per_second", st_json_number(r->ips),
                          "peak_rss_mb", st_json_number(r->rss_mb), "gflop_per_image",
                          st_json_number(r->gflop_per_image));
    if (r->peak_gflops > 0) {
        json_object_set_new(j, "peak_gflops", st_json_number(r->peak_gflops));
        json_object_set_new(j, "percent_of_peak", st_json_number(percent_of_peak(r)));
    }
    if (a->profile) {
        json_t *prof = json_object();
        for (int i = 0; i < ST_PROF_ROWS; i++)
            if (r->profile.calls[i])
                json_object_set_new(prof, st_prof_row_name(i), st_json_number(r->profile.seconds[i] / a->steps));
        json_object_set_new(j, "profile_seconds_per_step", prof);
    }
    st_json_print(stdout, j, JSON_BENCH_FLAGS);
    json_decref(j);
}

static void report(const bench_args *a, const st_model *m, const bench_result *r) {
    const st_backend *be = m->backend;
    printf("%s %s %dx%d batch %d, %d steps on %s (%d threads, %s), freeze_until %s: %.2f images/s, peak RSS %.0f MB\n",
           a->mode, a->arch, a->image_size, a->image_size, a->batch, a->steps, be->name, be->threads,
           st_precision_name(m->config.precision), a->freeze_until, r->ips, r->rss_mb);
    if (r->peak_gflops > 0)
        printf("%.2f GFLOP/image counted, %.1f GFLOP/s: %.1f%% of the measured %s peak (%.1f GFLOP/s)\n",
               r->gflop_per_image, r->ips * r->gflop_per_image, percent_of_peak(r),
               st_precision_name(m->config.precision), r->peak_gflops);
    if (a->profile) print_profile(a, r);
    if (a->json) print_json(a, m, r);
}

/* The CPU peak of the arithmetic the model runs (bf16 where it computes in bf16). */
static double cpu_peak_gflops(const st_model *m) {
    int bf16 = m->config.precision == ST_PRECISION_BF16;
    st_peak peak = st_bench_peak_measure(bf16);
    return 1e-9 * (bf16 ? peak.bf16_flops : peak.fp32_flops);
}

static bench_result run_timed(st_model *m, const bench_args *a, train_parts *tp) {
    bench_result r = {0};
    int training = tp->loss != NULL;
    st_model_flops f = st_model_count_flops(m, a->batch, training);
    r.gflop_per_image = 1e-9 * (f.forward + f.backward_data + f.backward_weights) / a->batch;
    if (!strcmp(m->backend->name, "cpu")) r.peak_gflops = cpu_peak_gflops(m);
    random_input(m, a->batch, 7);
    for (int i = 0; i < a->warmup; i++) step_once(m, a, tp);
    m->backend->sync(m->backend);
    if (a->profile) m->profile = &r.profile;
    double t0 = st_now_seconds();
    for (int i = 0; i < a->steps; i++) step_once(m, a, tp);
    m->backend->sync(m->backend);
    r.seconds = st_now_seconds() - t0;
    m->profile = NULL;
    m->backend->profile = 0; /* set by the first timer */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r.ips = a->batch * a->steps / r.seconds;
    r.rss_mb = ru.ru_maxrss / 1024.0;
    return r;
}

static int bench_model(const bench_args *a) {
    int training = !strcmp(a->mode, "train");
    st_backend *be = st_backend_open(a->device, a->threads);
    if (!be) {
        fprintf(stderr, "simtune bench: %s\n", st_error_get());
        return 1;
    }
    st_model_config mc = {0};
    mc.arch = a->arch;
    mc.batch = a->batch;
    mc.height = mc.width = a->image_size;
    mc.training = training;
    mc.freeze_until = a->freeze_until;
    mc.pool = ST_GPOOL_AVG;
    mc.num_classes = training && !strcmp(a->loss, "xent") ? 1000 : 0;
    mc.bn_momentum = 0.1f;
    mc.precision = a->precision;
    st_model *m = st_model_create(be, &mc, 1);
    train_parts tp = {0};
    if (!m || (training && setup_training(m, a, &tp))) {
        fprintf(stderr, "simtune bench: %s\n", st_error_get());
        return 1;
    }
    bench_result r = run_timed(m, a, &tp);
    report(a, m, &r);
    st_optimizer_free(tp.optimizer);
    st_loss_free(tp.loss);
    free(tp.labels);
    st_model_free(m);
    st_backend_close(be);
    return 0;
}

/* The CPU's peak on --threads threads. */
static int bench_peak(const bench_args *a) {
    st_backend *be = st_backend_open("cpu", a->threads); /* sets the OpenMP threads */
    if (!be) {
        fprintf(stderr, "simtune bench peak: %s\n", st_error_get());
        return 1;
    }
    st_peak p = st_bench_peak_measure(1);
    printf("peak on %d threads: FP32 %.1f GFLOP/s (%s FMA)", p.threads, 1e-9 * p.fp32_flops, p.fp32_isa);
    if (p.has_bf16)
        printf(", bf16 %.1f GFLOP/s (avx512_bf16 dot products)\n", 1e-9 * p.bf16_flops);
    else
        printf(", bf16: the CPU has no AVX512_BF16\n");
    if (a->json) {
        json_t *j = json_pack("{s:s, s:s, s:i, s:o, s:o}", "peer", "simtune", "mode", "peak", "threads", p.threads,
                              "fp32_gflops", st_json_number(1e-9 * p.fp32_flops), "fp32_isa",
                              st_json_text(p.fp32_isa));
        json_object_set_new(j, "bf16_gflops", p.has_bf16 ? st_json_number(1e-9 * p.bf16_flops) : json_null());
        st_json_print(stdout, j, JSON_BENCH_FLAGS);
        json_decref(j);
    }
    st_backend_close(be);
    return 0;
}

/* Warm-cache load time of a weight file into a model of its own architecture (batch 1). */
static int bench_load(const bench_args *a) {
    if (!a->weights) {
        fprintf(stderr, "simtune bench load: --weights FILE.h5 is required\n");
        return 2;
    }
    st_weights_info info;
    if (st_weights_probe(a->weights, &info) || !info.arch_info) {
        fprintf(stderr, "simtune bench load: %s\n", info.arch_info ? st_error_get() : "architecture not recognised");
        return 1;
    }
    st_backend *be = st_backend_open(a->device, a->threads);
    st_model_config mc = {0};
    mc.arch = info.arch;
    mc.batch = 1;
    mc.height = mc.width = 224;
    mc.pool = ST_GPOOL_AVG;
    st_model *m = be ? st_model_create(be, &mc, 1) : NULL;
    if (!m) {
        fprintf(stderr, "simtune bench load: %s\n", st_error_get());
        return 1;
    }
    double best = 1e30;
    size_t floats = 0;
    for (int i = 0; i <= a->steps; i++) { /* the first load warms the page cache */
        st_weights_report rep;
        double t0 = st_now_seconds();
        int rc = st_weights_load(m, a->weights, &rep);
        double seconds = st_now_seconds() - t0;
        floats = rep.n_floats;
        st_weights_report_free(&rep);
        if (rc) {
            fprintf(stderr, "simtune bench load: %s\n", st_error_get());
            return 1;
        }
        if (i > 0 && seconds < best) best = seconds;
    }
    printf("load %s (%s, %zu floats): best of %d warm loads %.3f s\n", a->weights, info.arch, floats, a->steps, best);
    if (a->json) {
        json_t *j = json_pack("{s:s, s:s, s:o, s:I, s:o}", "peer", "simtune", "mode", "load", "arch",
                              st_json_text(info.arch), "floats", (json_int_t)floats, "seconds", st_json_number(best));
        st_json_print(stdout, j, JSON_BENCH_FLAGS);
        json_decref(j);
    }
    st_weights_info_free(&info);
    st_model_free(m);
    st_backend_close(be);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "data")) return st_bench_data(argc - 1, argv + 1);
    if (strcmp(argv[1], "train") && strcmp(argv[1], "infer") && strcmp(argv[1], "load") &&
        strcmp(argv[1], "peak")) {
        fprintf(stderr, "simtune bench: unknown benchmark '%s' (train, infer, load, peak or data)\n", argv[1]);
        return 2;
    }
    bench_args a;
    int rc = parse_args(argc - 1, argv + 1, &a);
    if (rc) return rc > 0 ? 0 : 2;
    a.mode = argv[1];
    if (!strcmp(a.mode, "peak")) return bench_peak(&a);
    return strcmp(a.mode, "load") ? bench_model(&a) : bench_load(&a);
}
