/*
 * demo.c: `simtune demo`: the whole job on a fresh machine with nothing downloaded.
 *
 *   1. generate a deterministic dataset of device photos, line drawings and screen close-ups
 *      (data/synthetic.h): base devices (for the base model), target devices for fine-tuning,
 *      and new images of the same target devices for the final evaluation;
 *   2. train a small base model (configs/demo/base.yaml) and export it as a Keras-layout HDF5
 *      file: it stands in for the ImageNet weights that cannot be downloaded here;
 *   3. load that file, freeze to a delimiting layer and fine-tune with a batch-hard triplet
 *      loss (configs/demo/finetune.yaml);
 *   4. run a small Hyperband sweep around it (configs/demo/sweep.yaml);
 *   5. export embeddings of the evaluation images with the base and the fine-tuned weights;
 *   6. evaluate top-k retrieval with the split protocol and write report.html comparing the two.
 * Every step is the real command or library call a user would run; the effective configs are
 * written to OUT/configs so each step can be rerun by hand.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "data/base/clock.h"
#include "data/base/fileio.h"
#include "data/synthetic.h"
#include "infer/eval.h"
#include "infer/report.h"
#include "kernels/check.h"
#include "train/config.h"
#include "train/trainer.h"

enum { PATH_LEN = 4096 };

typedef struct demo {
    char out[PATH_LEN];        /* output folder */
    char configs[PATH_LEN];    /* folder with base.yaml, finetune.yaml, sweep.yaml */
    int threads;
    int skip_sweep;
    int quick;                 /* smaller data, fewer epochs, one-trial sweep: the CI test */
    double t0;
} demo;

static void usage(FILE *out) {
    fprintf(out, "usage: simtune demo [--out DIR] [--configs DIR] [--threads N] [--no-sweep] [--quick]\n\n"
                 "The main job end to end on generated images, nothing downloaded: generate a dataset,\n"
                 "train a small base model and save it as Keras-layout HDF5, fine-tune it with a\n"
                 "batch-hard triplet loss from a delimiting layer on, run a small Hyperband sweep,\n"
                 "export embeddings, evaluate top-k retrieval, and write a report comparing base and\n"
                 "fine-tuned models (hit@1, mAP@10) with contact sheets.\n\n"
                 "  --out DIR       output folder (default checkpoints/demo-<date>-<time>); must not exist\n"
                 "  --configs DIR   the demo configs (default: configs/demo next to the binary's source)\n"
                 "  --threads N     CPU threads (default 0 = all cores)\n"
                 "  --no-sweep      skip the Hyperband step\n"
                 "  --quick         half the images, 2 epochs per model, a one-trial sweep (a smoke test)\n"
                 "  --help          this text\n");
}

static void stage(demo *d, const char *title) {
    printf("\n== [%5.0f s] %s\n", st_now_seconds() - d->t0, title);
    fflush(stdout);
}

/* configs/demo relative to the executable (build/simtune -> ../configs/demo), else in the
 * source tree the binary was built from, else relative to the current directory. */
static void find_configs(char *out, size_t size) {
    char exe[PATH_LEN];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *candidates[] = {"/../configs/demo", "/../../configs/demo", "/configs/demo"};
        for (int i = 0; i < 3; i++) {
            snprintf(out, size, "%s%s", exe, candidates[i]);
            char probe[PATH_LEN + 32];
            snprintf(probe, sizeof probe, "%s/base.yaml", out);
            if (access(probe, R_OK) == 0) return;
        }
    }
    snprintf(out, size, "%s/configs/demo", SIMTUNE_SOURCE_DIR);
    if (access(out, R_OK) == 0) return;
    snprintf(out, size, "configs/demo");
}

static int generate_data(demo *d) {
    char path[PATH_LEN + 64];
    snprintf(path, sizeof path, "%s/data", d->out);
    if (st_mkdirs(path)) return -1;
    /* Disjoint class ranges: the base model never sees the target devices. */
    const struct {
        const char *name;
        st_synth_config cfg;
    } sets[] = {
        {"base-devices", {24, 100, 0, 40, 96, 80, 0.3, 11}},
        {"devices", {12, 0, 0, 40, 96, 80, 0.3, 11}},
        {"devices-test", {12, 0, 1000, 30, 96, 80, 0.5, 11}},
    };
    for (int i = 0; i < 3; i++) {
        st_synth_config cfg = sets[i].cfg;
        if (d->quick) cfg.images_per_class = cfg.images_per_class / 2;
        snprintf(path, sizeof path, "%s/data/%s", d->out, sets[i].name);
        printf("%s: %d classes x %d images\n", path, cfg.n_classes, cfg.images_per_class);
        if (st_synth_write_dataset(path, &cfg, NULL)) return -1;
    }
    return 0;
}

/* Load configs/demo/NAME.yaml with the demo's overrides and write the effective config to
 * OUT/configs/NAME.yaml (absolute paths), so the step can be rerun by hand. */
static int prepare_config(demo *d, const char *name, const char *const *sets, int n_sets, st_train_config *cfg) {
    char src[PATH_LEN + 64], dst[PATH_LEN + 64];
    snprintf(src, sizeof src, "%s/%s.yaml", d->configs, name);
    if (st_config_load(src, sets, n_sets, cfg)) return -1;
    snprintf(dst, sizeof dst, "%s/configs/%s.yaml", d->out, name);
    return st_config_write_yaml(cfg, dst);
}

static int train_step(demo *d, const char *name, const char *const *sets, int n_sets) {
    st_train_config cfg;
    if (prepare_config(d, name, sets, n_sets, &cfg)) return -1;
    char run_dir[PATH_LEN + 64];
    snprintf(run_dir, sizeof run_dir, "%s/runs/%s", d->out, name);
    st_train_options opt = {0};
    opt.run_dir = run_dir;
    opt.progress = stdout;
    st_train_result res;
    int rc = st_train_run(&cfg, &opt, &res);
    st_config_free(&cfg);
    if (rc == 0 && res.interrupted) rc = st_error_set("interrupted");
    return rc;
}

/* Run a simtune command with the given arguments, as a user would from the shell. */
static int run_command(int (*cmd)(int, char **), const char *const *args, int n) {
    char *argv[32];
    ST_CHECK(n < 32, "too many arguments");
    printf("$ simtune");
    for (int i = 0; i < n; i++) {
        argv[i] = (char *)args[i];
        printf(" %s", args[i]);
    }
    argv[n] = NULL;
    printf("\n");
    fflush(stdout);
    int rc = cmd(n, argv);
    fflush(stdout);
    return rc ? st_error_set("simtune %s failed (exit %d)", args[0], rc) : 0;
}

static int copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) return st_error_set("%s: cannot read: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return st_error_set("%s: cannot write: %s", dst, strerror(errno));
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    int rc = fclose(out);
    return rc ? st_error_set("%s: write failed", dst) : 0;
}

static int run_sweep(demo *d) {
    char src[PATH_LEN + 64], dst[PATH_LEN + 64], dir_set[PATH_LEN + 64];
    snprintf(src, sizeof src, "%s/sweep.yaml", d->configs);
    snprintf(dst, sizeof dst, "%s/configs/sweep.yaml", d->out);
    if (copy_file(src, dst)) return -1;
    snprintf(dir_set, sizeof dir_set, "dir=%s/sweep", d->out);
    const char *args[] = {"sweep", "--config", dst, "--set", dir_set, "--set", "hyperband.max_resource=1"};
    return run_command(cmd_sweep, args, d->quick ? 7 : 5);
}

static int embed_and_eval(demo *d, const char *label, const char *weights, st_eval_report *report) {
    char images[PATH_LEN + 64], emb[PATH_LEN + 64], eval_dir[PATH_LEN + 64], threads[16];
    snprintf(images, sizeof images, "%s/data/devices-test", d->out);
    snprintf(emb, sizeof emb, "%s/embeddings/%s.h5", d->out, label);
    snprintf(eval_dir, sizeof eval_dir, "%s/eval/%s", d->out, label);
    snprintf(threads, sizeof threads, "%d", d->threads);
    const char *embed_args[] = {"embed", "--weights", weights, "--images", images, "--out", emb,
                                "--image-size", "64", "--batch", "32", "--threads", threads};
    if (run_command(cmd_embed, embed_args, 13)) return -1;
    const char *eval_args[] = {"eval", "--embeddings", emb, "--protocol", "split", "-k", "10", "--out", eval_dir,
                               "--threads", threads};
    if (run_command(cmd_eval, eval_args, 11)) return -1;
    st_embeddings e;
    if (st_embeddings_read(emb, &e)) return -1;
    st_backend *be = st_backend_open("cpu", d->threads);
    st_eval_options o;
    st_eval_defaults(&o);
    o.protocol = ST_PROTOCOL_SPLIT;
    o.k = 10;
    int rc = st_eval_run(be, &o, &e, emb, NULL, NULL, report);
    st_backend_close(be);
    st_embeddings_free(&e);
    return rc;
}

/* OUT/report.html: hit@1, mAP@10 and MAP@R of both models, links to the other outputs. */
static int write_report(demo *d, const st_eval_report *base, const st_eval_report *tuned) {
    char path[PATH_LEN + 64], intro[1024];
    snprintf(path, sizeof path, "%s/report.html", d->out);
    snprintf(intro, sizeof intro,
             "Retrieval on new images of the 12 target devices (data/devices-test), split protocol: stratified "
             "80/20 gallery/query splits repeated %d times, mean \u00b1 std. mAP@10 divides by all relevant gallery "
             "images (trec_eval's map_cut), so with about 24 per query its ceiling is about 0.42; MAP@R has a "
             "ceiling of 1.",
             base->splits);
    static const char *const models[] = {"base (cross-entropy on other devices)", "fine-tuned (batch-hard triplet)"};
    static const char *const metrics[] = {"hit@1", "map@10", "map@r"}, *const headers[] = {"hit@1", "mAP@10", "MAP@R"};
    static const st_report_link links[] = {
        {"eval/base/index.html", "contact sheet, base model"},
        {"eval/finetuned/index.html", "contact sheet, fine-tuned model"},
        {"runs/base/curves.png", "training curves, base model"},
        {"runs/finetune/curves.png", "training curves, fine-tune"},
        {"sweep/curves.png", "sweep: metric vs epochs"},
        {"sweep/trials.csv", "sweep: leaderboard"},
        {"sweep/best.yaml", "sweep: best config"},
        {"configs/", "configs to rerun each step"}};
    const st_eval_report *reports[] = {base, tuned};
    st_comparison_page page = {"simtune demo: base vs fine-tuned", intro, models, reports, 2, metrics, headers, 3,
                               links, (int)(sizeof links / sizeof links[0])};
    return st_report_comparison_html(path, &page);
}

static int run_demo(demo *d) {
    char path[PATH_LEN + 64], data_set[2 * PATH_LEN], weights_set[2 * PATH_LEN], out_set[2 * PATH_LEN];
    char threads_set[32];
    snprintf(threads_set, sizeof threads_set, "threads=%d", d->threads);
    snprintf(out_set, sizeof out_set, "output.dir=%s/runs", d->out);
    if (st_mkdirs(d->out)) return -1;
    snprintf(path, sizeof path, "%s/configs", d->out);
    if (st_mkdirs(path) || (snprintf(path, sizeof path, "%s/embeddings", d->out), st_mkdirs(path)) ||
        (snprintf(path, sizeof path, "%s/eval", d->out), st_mkdirs(path)))
        return -1;

    stage(d, "1/6 generating images: device photos, line drawings, screen close-ups");
    if (generate_data(d)) return -1;

    stage(d, "2/6 training a small base model (stands in for ImageNet weights)");
    snprintf(data_set, sizeof data_set, "data.train.0.path=%s/data/base-devices", d->out);
    const char *base_sets[] = {data_set, out_set, threads_set, "epochs=2"};
    if (train_step(d, "base", base_sets, d->quick ? 4 : 3)) return -1;
    char base_weights[PATH_LEN + 64];
    snprintf(base_weights, sizeof base_weights, "%s/runs/base/best_weights.h5", d->out);
    const char *inspect_args[] = {"inspect", base_weights};
    if (run_command(cmd_inspect, inspect_args, 2)) return -1;

    stage(d, "3/6 fine-tuning: load HDF5, freeze to conv3_block2_out, batch-hard triplet loss");
    snprintf(data_set, sizeof data_set, "data.train.0.path=%s/data/devices", d->out);
    snprintf(weights_set, sizeof weights_set, "model.weights=%s", base_weights);
    const char *tune_sets[] = {data_set, weights_set, out_set, threads_set, "epochs=2"};
    if (train_step(d, "finetune", tune_sets, d->quick ? 5 : 4)) return -1;

    if (!d->skip_sweep) {
        stage(d, "4/6 Hyperband sweep: learning rate, delimiting layer, margin");
        if (run_sweep(d)) return -1;
    }

    stage(d, "5/6 embeddings and top-k evaluation of the base model");
    st_eval_report base, tuned;
    if (embed_and_eval(d, "base", base_weights, &base)) return -1;
    stage(d, "6/6 embeddings and top-k evaluation of the fine-tuned model");
    char tuned_weights[PATH_LEN + 64];
    snprintf(tuned_weights, sizeof tuned_weights, "%s/runs/finetune/best_weights.h5", d->out);
    if (embed_and_eval(d, "finetuned", tuned_weights, &tuned)) return -1;
    int rc = write_report(d, &base, &tuned);
    double s;
    printf("\n== [%5.0f s] done\n\n  %-12s hit@1 %.3f  mAP@10 %.3f\n  %-12s hit@1 %.3f  mAP@10 %.3f\n\n",
           st_now_seconds() - d->t0, "base", st_eval_report_metric(&base, "hit@1", &s),
           st_eval_report_metric(&base, "map@10", &s), "fine-tuned", st_eval_report_metric(&tuned, "hit@1", &s),
           st_eval_report_metric(&tuned, "map@10", &s));
    printf("open %s/report.html (contact sheets, curves, sweep leaderboard)\n", d->out);
    st_eval_report_free(&base);
    st_eval_report_free(&tuned);
    return rc;
}

int cmd_demo(int argc, char **argv) {
    static const struct option options[] = {{"out", required_argument, 0, 'o'},     {"configs", required_argument, 0, 'c'},
                                            {"threads", required_argument, 0, 't'}, {"no-sweep", no_argument, 0, 'n'},
                                            {"quick", no_argument, 0, 'q'},
                                            {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    demo d = {0};
    d.t0 = st_now_seconds();
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case 'o': snprintf(d.out, sizeof d.out, "%s", optarg); break;
        case 'c': snprintf(d.configs, sizeof d.configs, "%s", optarg); break;
        case 't':
            if (st_cli_int_option("demo", "--threads", optarg, 0, INT_MAX, &d.threads)) return 2;
            break;
        case 'n': d.skip_sweep = 1; break;
        case 'q': d.quick = 1; break;
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "try 'simtune demo --help'\n"); return 2;
        }
    }
    if (optind < argc || d.threads < 0) {
        fprintf(stderr, "simtune demo: unexpected argument; try 'simtune demo --help'\n");
        return 2;
    }
    if (!d.configs[0]) find_configs(d.configs, sizeof d.configs);
    if (!d.out[0]) {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        if (st_mkdirs("checkpoints")) {
            fprintf(stderr, "simtune demo: %s\n", st_error_get());
            return 1;
        }
        snprintf(d.out, sizeof d.out, "checkpoints/demo-%s", stamp);
    }
    if (access(d.out, F_OK) == 0) {
        fprintf(stderr, "simtune demo: %s already exists; choose another --out\n", d.out);
        return 2;
    }
    printf("simtune demo: writing to %s (configs from %s)\n", d.out, d.configs);
    if (run_demo(&d)) {
        fprintf(stderr, "simtune demo: %s\n", st_error_get());
        return 1;
    }
    return 0;
}
