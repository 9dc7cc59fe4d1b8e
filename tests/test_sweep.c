/*
 * test_sweep.c: sweep files, trial sampling and the Hyperband runner (train/sweep.c) driven by a
 * deterministic synthetic objective in place of the trainer: metric = f(lr, arch, epochs).
 * The objective keeps a per-trial "checkpoint" (epochs done) and logs every epoch it trains and
 * every evaluation it finishes, so the test can prove that promoted trials continue instead of
 * retraining and that a sweep killed with SIGKILL and resumed redoes no finished work and ends
 * with the same leaderboard as an uninterrupted run.
 */
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/check.h"
#include "test_util.h"
#include "train/sweep.h"

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* Under -fsanitize=address (SIMTUNE_SANITIZE): fontconfig, loaded by cairo's text API for the
 * plot labels, keeps its caches until exit; that is not our leak. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig\n"; }

/* ---- the synthetic objective ----------------------------------------------------------------- */

typedef struct {
    const char *log_path; /* one line per trained epoch "E trial_dir epoch", per evaluation "V trial_dir target" */
    int kill_at_call;     /* SIGKILL ourselves in this call (1-based), after one epoch; 0: never */
    int calls;
    int epoch_sleep_us;
} objective;

static void log_line(const objective *o, const char *kind, const char *dir, int value) {
    FILE *f = fopen(o->log_path, "a");
    fprintf(f, "%s %s %d\n", kind, dir, value);
    fflush(f);
    fsync(fileno(f));
    fclose(f);
}

/* The "checkpoint" is the trainer's: a *.h5 file in the trial's run folder (cfg->output.dir),
 * so the runner's removal of stopped trials' checkpoints acts on it; a promoted trial whose
 * checkpoint went would retrain from epoch 0 and the epoch counts below would show it. */
static int synthetic_trial(const st_train_config *cfg, const char *trial_dir, int target, double *metric, void *user) {
    objective *o = user;
    o->calls++;
    char ckpt[4200], tmp[4300];
    mkdir(cfg->output.dir, 0777);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", cfg->output.dir);
    int done = 0;
    FILE *f = fopen(ckpt, "r");
    if (f) {
        if (fscanf(f, "%d", &done) != 1) done = 0;
        fclose(f);
    }
    if (done > target) return st_error_set("%s: checkpoint at epoch %d is past the target %d", trial_dir, done, target);
    for (int e = done + 1; e <= target; e++) {
        if (o->epoch_sleep_us) usleep((useconds_t)o->epoch_sleep_us);
        log_line(o, "E", trial_dir, e);
        snprintf(tmp, sizeof tmp, "%s.tmp", ckpt);
        FILE *c = fopen(tmp, "w");
        fprintf(c, "%d\n", e);
        fflush(c);
        fsync(fileno(c));
        fclose(c);
        rename(tmp, ckpt);
        if (o->calls == o->kill_at_call) raise(SIGKILL); /* a crash in the middle of a trial */
    }
    /* quality peaks at lr = 10^-2.5; resnet50 adds 0.05; more epochs approach the quality */
    double q = exp(-pow(log10(cfg->optimizer.lr) + 2.5, 2));
    double bonus = !strcmp(cfg->model.arch, "resnet50") ? 0.05 : 0.0;
    *metric = cfg->optimizer.lr > 0.09 ? NAN : q * (1 - exp(-target / 4.0)) + bonus; /* huge lr "diverges" */
    if (cfg->epochs != 9 || strcmp(cfg->early_stopping.metric, "val/map@10") != 0)
        return st_error_set("trial config: epochs %d metric %s", cfg->epochs, cfg->early_stopping.metric);
    log_line(o, "V", trial_dir, target);
    return 0;
}

/* ---- fixtures ---------------------------------------------------------------------------------- */

static const char *base_yaml = "model: {arch: tv_resnet18, image_size: 64}\n"
                               "data: {train: [{path: ., name: here}], sampler: pk, pk: {p: 4, k: 2}}\n"
                               "loss: {type: triplet}\n"
                               "optimizer: {type: adam, lr: 0.001}\n"
                               "epochs: 9\n";

static const char *sweep_yaml = "base: base.yaml\n"
                                "metric: {name: val/map@10, goal: maximize}\n"
                                "seed: 11\n"
                                "hyperband: {max_resource: 9, min_resource: 1, eta: 3, rounding: algorithm}\n"
                                "parameters:\n"
                                "  model:\n"
                                "    values:\n"
                                "      - {arch: tv_resnet18, weights: null}\n"
                                "      - {arch: resnet50, weights: null}\n"
                                "  optimizer.lr: {distribution: log_uniform, min: 1.0e-4, max: 0.2}\n"
                                "  optimizer.type: {values: [sgd, adam]}\n"
                                "  data.pk: {values: [{p: 4, k: 2}, {p: 2, k: 4}]}\n"
                                "  freeze_until: {values: [none, all]}\n"
                                "  loss.triplet.margin: {distribution: q_uniform, min: 0.1, max: 0.5, q: 0.05}\n"
                                "  data.workers: {distribution: int_uniform, min: 1, max: 3}\n"
                                "  schedule.warmup_epochs: {distribution: uniform, min: 0, max: 2}\n"
                                "  output_unused_check: {value: 1}\n";

static void write_fixtures(void) {
    mkdir("sweep_fixture", 0777);
    write_text("sweep_fixture/base.yaml", base_yaml);
    /* the last parameter is an unknown key on purpose; the valid file drops it */
    char valid[4096];
    snprintf(valid, sizeof valid, "%s", sweep_yaml);
    *strstr(valid, "  output_unused_check") = '\0';
    write_text("sweep_fixture/sweep.yaml", valid);
    write_text("sweep_fixture/bad_key.yaml", sweep_yaml);
}

static int count_lines(const char *text, const char *prefix) {
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; p && *p;) {
        if (!strncmp(p, prefix, len)) n++;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return n;
}

/* 1 when no line of the log appears twice (a repeated epoch or evaluation) */
static int no_duplicate_lines(const char *text) {
    int n = count_lines(text, "");
    char **lines = calloc((size_t)n + 1, sizeof *lines);
    char *copy = strdup(text);
    int k = 0;
    for (char *save, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) lines[k++] = line;
    int ok = 1;
    for (int i = 0; i < k && ok; i++)
        for (int j = i + 1; j < k && ok; j++) ok = strcmp(lines[i], lines[j]) != 0;
    free(lines);
    free(copy);
    return ok;
}

/* ---- tests -------------------------------------------------------------------------------------- */

static void test_load_and_sample(void) {
    st_sweep_config a, b, c;
    int rc = st_sweep_load("sweep_fixture/sweep.yaml", NULL, 0, &a);
    TEST_CHECK(rc == 0, "load: %s", st_error_get());
    if (rc) return;
    TEST_CHECK(a.n_params == 8 && a.hyperband.max_resource == 9 && a.seed == 11, "parsed %d params", a.n_params);
    const char *sets[] = {"hyperband.eta=2", "seed=12"};
    TEST_CHECK(st_sweep_load("sweep_fixture/sweep.yaml", sets, 2, &b) == 0, "load with --set: %s", st_error_get());
    TEST_CHECK(b.hyperband.eta == 2 && b.seed == 12, "--set hyperband.eta=2: eta %d seed %llu", b.hyperband.eta,
               (unsigned long long)b.seed);
    TEST_CHECK(st_sweep_load("sweep_fixture/sweep.yaml", NULL, 0, &c) == 0, "reload");

    int seen_arch[2] = {0, 0}, seen_workers[4] = {0, 0, 0, 0}, same_as_other_seed = 0;
    for (int t = 0; t < 200; t++) {
        uint64_t s1, s2, s3;
        st_ynode *p1 = st_sweep_sample(&a, t, &s1), *p2 = st_sweep_sample(&c, t, &s2),
                 *p3 = st_sweep_sample(&b, t, &s3);
        TEST_CHECK(st_ynode_equal(p1, p2) && s1 == s2, "trial %d: same seed gave different parameters", t);
        same_as_other_seed += st_ynode_equal(p1, p3);
        double lr = atof(st_ynode_get(p1, "optimizer.lr")->value);
        TEST_CHECK(lr >= 1.0e-4 && lr <= 0.2, "log_uniform lr %g outside [1e-4, 0.2]", lr);
        double margin = atof(st_ynode_get(p1, "loss.triplet.margin")->value);
        double steps = margin / 0.05;
        TEST_CHECK(margin >= 0.1 - 1e-12 && margin <= 0.5 + 1e-12 && fabs(steps - round(steps)) < 1e-9,
                   "q_uniform margin %g is not a multiple of 0.05 in [0.1, 0.5]", margin);
        int workers = atoi(st_ynode_get(p1, "data.workers")->value);
        TEST_CHECK(workers >= 1 && workers <= 3, "int_uniform workers %d outside [1, 3]", workers);
        if (workers >= 1 && workers <= 3) seen_workers[workers] = 1;
        seen_arch[!strcmp(st_ynode_get(st_ynode_get(p1, "model"), "arch")->value, "resnet50")] = 1;
        st_ynode_free(p1);
        st_ynode_free(p2);
        st_ynode_free(p3);
    }
    TEST_CHECK(seen_workers[1] && seen_workers[3],
               "int_uniform bounds are inclusive: both 1 and 3 drawn in 200 trials");
    TEST_CHECK(seen_arch[0] && seen_arch[1], "both architectures drawn");
    TEST_CHECK(same_as_other_seed == 0, "another seed gave %d identical trials of 200", same_as_other_seed);

    /* a trial config: parameters applied, the model mapping merged (image_size kept) */
    uint64_t seed;
    st_ynode *params = st_sweep_sample(&a, 3, &seed);
    st_train_config cfg;
    rc = st_sweep_trial_config(&a, params, seed, "trialdir", &cfg);
    TEST_CHECK(rc == 0, "trial config: %s", st_error_get());
    if (rc == 0) {
        TEST_CHECK(cfg.model.image_size == 64 && cfg.seed == seed && cfg.epochs == 9, "merged model, seed, epochs");
        TEST_CHECK(!strcmp(cfg.output.dir, "trialdir/checkpoints"), "output.dir %s", cfg.output.dir);
        TEST_CHECK(cfg.optimizer.lr == atof(st_ynode_get(params, "optimizer.lr")->value), "lr applied");
        st_config_free(&cfg);
    }
    st_ynode_free(params);
    st_sweep_free(&a);
    st_sweep_free(&b);
    st_sweep_free(&c);
}

static void expect_sweep_error(const char *name, const char *text, const char *want) {
    char path[256];
    snprintf(path, sizeof path, "sweep_fixture/%s", name);
    if (text) write_text(path, text);
    st_sweep_config sc;
    int rc = st_sweep_load(path, NULL, 0, &sc);
    TEST_CHECK(rc == -1, "%s accepted", name);
    if (rc == 0)
        st_sweep_free(&sc);
    else
        TEST_CHECK(strstr(st_error_get(), want) != NULL, "%s: message\n  %s\nlacks\n  %s", name, st_error_get(), want);
}

static void test_errors(void) {
    expect_sweep_error("bad_key.yaml", NULL, "output_unused_check: unknown key");
    expect_sweep_error("bad_value.yaml", "base: base.yaml\nparameters:\n  optimizer.lr: {values: [0.1, -1]}\n",
                       "bad_value.yaml:3:32: optimizer.lr: -1 is out of range");
    expect_sweep_error("bad_arch.yaml",
                       "base: base.yaml\nparameters:\n  model: {values: [{arch: resnet50}, {arch: vgg16}]}\n",
                       "bad_arch.yaml:3:45: model.arch: unknown architecture 'vgg16'");
    expect_sweep_error("bad_dist.yaml",
                       "base: base.yaml\nparameters:\n  optimizer.lr: {distribution: log_uniform, min: 0, max: 1}\n",
                       "bad_dist.yaml:3:50: parameters.optimizer.lr: log_uniform needs min > 0");
    expect_sweep_error("bad_reserved.yaml", "base: base.yaml\nparameters:\n  epochs: {values: [1, 2]}\n",
                       "bad_reserved.yaml:3:3: parameters.epochs: set by the sweep runner");
    expect_sweep_error("bad_eta.yaml", "base: base.yaml\nhyperband: {eta: 1}\n",
                       "bad_eta.yaml:2:18: hyperband.eta: 1 is out of range");
    expect_sweep_error("bad_metric.yaml", "base: base.yaml\nmetric: {name: val/hit@5}\n",
                       "bad_metric.yaml:2:9: metric: 'val/hit@5' is not reported by this config");
    expect_sweep_error("bad_base.yaml", "base: missing.yaml\n", "sweep_fixture/missing.yaml: cannot open");
    expect_sweep_error("bad_yaml.yaml", "base: base.yaml\nparameters: {a: [1, 2}\n", "bad_yaml.yaml:2:");
    /* a value that breaks a cross-key rule with the base (triplet loss needs the pk sampler) */
    st_sweep_config sc;
    write_text("sweep_fixture/combo.yaml", "base: base.yaml\nhyperband: {max_resource: 3}\nparameters:\n"
                                           "  data.sampler: {values: [pk, shuffle]}\n");
    int rc = st_sweep_load("sweep_fixture/combo.yaml", NULL, 0, &sc);
    TEST_CHECK(rc == -1 && strstr(st_error_get(), "data.sampler: loss triplet needs positives"),
               "sampler shuffle with the base's triplet loss: %s", rc ? st_error_get() : "accepted");
    if (rc == 0) st_sweep_free(&sc);
}

typedef struct {
    char *csv, *jsonl, *best, *log;
} run_result;

static void free_result(run_result *r) {
    free(r->csv);
    free(r->jsonl);
    free(r->best);
    free(r->log);
}

static run_result collect(const char *dir) {
    char path[512];
    run_result r;
    snprintf(path, sizeof path, "%s/trials.csv", dir);
    r.csv = read_text(path);
    snprintf(path, sizeof path, "%s/trials.jsonl", dir);
    r.jsonl = read_text(path);
    snprintf(path, sizeof path, "%s/best.yaml", dir);
    r.best = read_text(path);
    snprintf(path, sizeof path, "%s.log", dir);
    r.log = read_text(path);
    return r;
}

/* Run the sweep in a child process; returns the child's wait status. */
static int run_child(const char *dir, int resume, int kill_at_call, int kill_after_ms) {
    char log_path[512];
    snprintf(log_path, sizeof log_path, "%s.log", dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        st_sweep_config sc;
        int rc = resume ? st_sweep_load_dir(dir, &sc) : st_sweep_load("sweep_fixture/sweep.yaml", NULL, 0, &sc);
        if (rc == 0) {
            objective o = {log_path, kill_at_call, 0, kill_after_ms ? 2000 : 0};
            st_sweep_run_options opt = {.progress = NULL, .resume = resume};
            rc = st_sweep_run(&sc, dir, &opt, synthetic_trial, &o);
            st_sweep_free(&sc);
        }
        if (rc) fprintf(stderr, "child: %s\n", st_error_get());
        _exit(rc == 0 ? 0 : 1);
    }
    if (kill_after_ms) {
        usleep((useconds_t)kill_after_ms * 1000);
        kill(pid, SIGKILL);
    }
    int status;
    waitpid(pid, &status, 0);
    return status;
}

/* --set under parameters: dotted train-config keys matched whole (sweep.h, docs/config.md) */
static void test_parameter_sets(void) {
    const char *sets[] = {"parameters.optimizer.lr.max=0.1", "parameters.optimizer.type={value: sgd}",
                          "parameters.model=null", "parameters.schedule.min_lr={value: 1.0e-6}",
                          "parameters.loss.triplet.margin.q=0.1"};
    st_sweep_config sc;
    int rc = st_sweep_load("sweep_fixture/sweep.yaml", sets, 5, &sc);
    TEST_CHECK(rc == 0, "parameter --sets: %s", st_error_get());
    if (rc) return;
    /* file order: model, optimizer.lr, optimizer.type, data.pk, freeze_until, margin, workers, warmup */
    TEST_CHECK(sc.n_params == 8, "model removed, schedule.min_lr added: %d parameters", sc.n_params);
    const char *want[] = {"optimizer.lr", "optimizer.type", "data.pk", "freeze_until", "loss.triplet.margin",
                          "data.workers", "schedule.warmup_epochs", "schedule.min_lr"};
    for (int i = 0; i < sc.n_params && i < 8; i++)
        TEST_CHECK(!strcmp(sc.params[i].key, want[i]), "parameter %d is %s, want %s (order kept)", i, sc.params[i].key,
                   want[i]);
    if (sc.n_params == 8) {
        TEST_CHECK(sc.params[0].kind == ST_SWEEP_LOG_UNIFORM && sc.params[0].min == 1.0e-4 && sc.params[0].max == 0.1,
                   "optimizer.lr.max=0.1: [%g, %g]", sc.params[0].min, sc.params[0].max);
        TEST_CHECK(sc.params[1].kind == ST_SWEEP_VALUE && !strcmp(sc.params[1].values[0]->value, "sgd"),
                   "optimizer.type={value: sgd} replaced the values list");
        TEST_CHECK(sc.params[4].q == 0.1, "loss.triplet.margin.q=0.1: q %g", sc.params[4].q);
        TEST_CHECK(sc.params[7].kind == ST_SWEEP_VALUE, "schedule.min_lr added as a constant");
    }
    st_sweep_free(&sc);

    struct {
        const char *set, *want;
    } bad[] = {
        {"parameters.optimizer.lrr={value: 1}",
         "--set parameters.optimizer.lrr={value: 1}:1:1: optimizer.lrr: unknown key"},
        {"parameters.optimizer.lr.max=abc",
         "--set parameters.optimizer.lr.max=abc:1:1: parameters.optimizer.lr.max: expected a number"},
        {"parameters.optimizer.lr.maxx=1", "parameters.optimizer.lr.maxx: unknown key"},
        {"parameters.max=1", "--set parameters.max=1: expected parameters.KEY.PATH[.FIELD]=VALUE"},
        {"parameters.optimizer.type={values: [sgd, bogus]}", ":1:16: optimizer.type: 'bogus' is not one of"},
        {"parameters.freeze_until.value=all", "give exactly one of values"},
        {"hyperband.etaa=2", "hyperband.etaa: unknown key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = st_sweep_load("sweep_fixture/sweep.yaml", &bad[i].set, 1, &sc);
        TEST_CHECK(rc == -1 && strstr(st_error_get(), bad[i].want), "--set %s: %s\n  wanted: %s", bad[i].set,
                   rc ? st_error_get() : "accepted", bad[i].want);
        if (rc == 0) st_sweep_free(&sc);
    }
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

/* Every trial's trainer "checkpoint" against its leaderboard status: stopped trials lose it
 * unless keep_checkpoints, every other evaluated trial keeps it. Returns the stopped count. */
static int check_checkpoints_kept(const char *dir, const char *csv, int keep) {
    int stopped = 0;
    for (const char *line = strchr(csv, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        int rank, trial;
        char status[32] = "";
        /* rank,trial,bracket,s,iteration,rung,epochs,metric,status,... */
        if (sscanf(line + 1, "%d,%d,%*d,%*d,%*d,%*d,%*d,%*[^,],%31[^,]", &rank, &trial, status) != 3) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/trials/%04d/checkpoints/ckpt.h5", dir, trial);
        int is_stopped = !strcmp(status, "stopped");
        stopped += is_stopped;
        TEST_CHECK(file_exists(path) == (keep || !is_stopped), "%s: trial %d (%s): checkpoint %s", dir, trial, status,
                   file_exists(path) ? "kept" : "removed");
        snprintf(path, sizeof path, "%s/trials/%04d/config.yaml", dir, trial);
        TEST_CHECK(file_exists(path), "%s: trial %d keeps its config", dir, trial);
    }
    return stopped;
}

static void test_run_and_resume(void) {
    /* uninterrupted reference run, in-process */
    st_sweep_config sc;
    if (st_sweep_load("sweep_fixture/sweep.yaml", NULL, 0, &sc) != 0) {
        TEST_CHECK(0, "load: %s", st_error_get());
        return;
    }
    st_hb_plan plan;
    TEST_CHECK(st_hyperband_plan(&sc.hyperband, &plan) == 0, "plan");
    long long continued = st_hb_total_epochs(&plan, 1);
    int evaluations = 0;
    for (int b = 0; b < plan.n_brackets; b++)
        for (int i = 0; i < plan.brackets[b].n_rungs; i++) evaluations += plan.brackets[b].rungs[i].n;
    objective o = {"sweep_ref.log", 0, 0, 0};
    remove("sweep_ref.log");
    st_sweep_run_options opt = {.progress = NULL, .resume = 0};
    int rc = st_sweep_run(&sc, "sweep_ref", &opt, synthetic_trial, &o);
    TEST_CHECK(rc == 0, "reference run: %s", st_error_get());
    /* the folder exists now: a second start must refuse, not overwrite */
    TEST_CHECK(st_sweep_run(&sc, "sweep_ref", &opt, synthetic_trial, &o) == -1 &&
                   strstr(st_error_get(), "already holds a sweep"),
               "restarting into an existing sweep folder: %s", st_error_get());
    st_sweep_free(&sc);
    run_result ref = collect("sweep_ref");
    TEST_CHECK(ref.csv && ref.jsonl && ref.best && ref.log, "reference outputs exist");
    if (!ref.csv || !ref.log || !ref.jsonl) return;
    /* promoted trials continue: epochs trained = sum n_i (r_i - r_{i-1}) (69 for R=9, eta=3) */
    TEST_CHECK(count_lines(ref.log, "E ") == continued, "epochs trained %d, want %lld (continued training)",
               count_lines(ref.log, "E "), continued);
    TEST_CHECK(count_lines(ref.log, "V ") == evaluations, "evaluations %d, want %d", count_lines(ref.log, "V "),
               evaluations);
    TEST_CHECK(continued == 69 && evaluations == 9 + 3 + 1 + 5 + 1 + 3, "plan R=9 eta=3: %lld epochs %d evaluations",
               continued, evaluations);
    TEST_CHECK(count_lines(ref.csv, "") == 1 + plan.n_trials, "trials.csv has a header and %d rows", plan.n_trials);
    TEST_CHECK(strstr(ref.csv, "rank,trial,bracket,s,iteration,rung,epochs,metric,status,seed,model,optimizer.lr") ==
                   ref.csv,
               "trials.csv header: %.120s", ref.csv);
    TEST_CHECK(strstr(ref.csv, "\n1,") && strstr(ref.csv, ",finished,") && strstr(ref.csv, ",stopped,"),
               "leaderboard has finished and stopped trials");
    TEST_CHECK(check_checkpoints_kept("sweep_ref", ref.csv, 0) == 12, "R=9, eta=3 stops 6 + 2 + 4 = 12 trials");
    TEST_CHECK(strstr(ref.best, "epochs: 9") && strstr(ref.best, "name: best"), "best.yaml is a full train config");
    struct stat st;
    TEST_CHECK(stat("sweep_ref/curves.png", &st) == 0 && st.st_size > 1000, "curves.png written");
    TEST_CHECK(stat("sweep_ref/plan.json", &st) == 0 && stat("sweep_ref/trials/0000/config.yaml", &st) == 0 &&
                   stat("sweep_ref/trials/0000/metrics.jsonl", &st) == 0,
               "plan.json and per-trial files written");
    /* best.yaml is a valid config that names the leader's parameters */
    st_train_config best;
    rc = st_config_load("sweep_ref/best.yaml", NULL, 0, &best);
    TEST_CHECK(rc == 0, "best.yaml loads: %s", st_error_get());
    if (rc == 0) st_config_free(&best);

    /* killed runs: SIGKILL inside the 3rd, then the 10th, then the 2nd trial call of each resumed
     * run (after one epoch was checkpointed), then finish */
    remove("sweep_kill.log");
    int status = run_child("sweep_kill", 0, 3, 0);
    TEST_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "first child was killed (status %d)", status);
    status = run_child("sweep_kill", 1, 10, 0);
    TEST_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "second child was killed (status %d)", status);
    status = run_child("sweep_kill", 1, 2, 0);
    TEST_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "third child was killed (status %d)", status);
    status = run_child("sweep_kill", 1, 0, 0);
    TEST_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "resumed run finished (status %d)", status);
    run_result killed = collect("sweep_kill");
    TEST_CHECK(killed.csv && !strcmp(killed.csv, ref.csv),
               "trials.csv after kill+resume differs from the uninterrupted run");
    TEST_CHECK(killed.jsonl && !strcmp(killed.jsonl, ref.jsonl), "trials.jsonl after kill+resume differs");
    if (killed.csv) check_checkpoints_kept("sweep_kill", killed.csv, 0);
    TEST_CHECK(killed.best && ref.best && !strcmp(killed.best, ref.best), "best.yaml after kill+resume differs");
    if (killed.log) {
        TEST_CHECK(count_lines(killed.log, "E ") == continued,
                   "kill+resume trained %d epochs, want %lld: work was redone", count_lines(killed.log, "E "),
                   continued);
        TEST_CHECK(count_lines(killed.log, "V ") == evaluations, "kill+resume finished %d evaluations, want %d",
                   count_lines(killed.log, "V "), evaluations);
        TEST_CHECK(no_duplicate_lines(killed.log), "an epoch or an evaluation was done twice");
    }
    free_result(&killed);

    /* kills at arbitrary moments from outside (timer), then resume: same final leaderboard */
    /* (like a user: --config again while the folder has no sweep.yaml, --resume once it has) */
    remove("sweep_timed.log");
    status = run_child("sweep_timed", 0, 0, 60);
    for (int k = 0; k < 4 && WIFSIGNALED(status); k++)
        status = run_child("sweep_timed", access("sweep_timed/sweep.yaml", F_OK) == 0, 0, k < 3 ? 40 + 25 * k : 0);
    TEST_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "timed-kill sweep finished (status %d)", status);
    run_result timed = collect("sweep_timed");
    TEST_CHECK(timed.csv && !strcmp(timed.csv, ref.csv),
               "trials.csv after timed kills differs from the uninterrupted run");
    free_result(&timed);

    /* keep_checkpoints: true: the same sweep, every checkpoint kept */
    const char *keep_set[] = {"keep_checkpoints=true"};
    objective keep_obj = {"sweep_keep.log", 0, 0, 0};
    rc = st_sweep_load("sweep_fixture/sweep.yaml", keep_set, 1, &sc);
    TEST_CHECK(rc == 0 && sc.keep_checkpoints == 1, "keep_checkpoints=true: %s", st_error_get());
    if (rc == 0) {
        TEST_CHECK(st_sweep_run(&sc, "sweep_keep", &opt, synthetic_trial, &keep_obj) == 0, "keep run: %s",
                   st_error_get());
        st_sweep_free(&sc);
        run_result keep = collect("sweep_keep");
        if (keep.csv) TEST_CHECK(check_checkpoints_kept("sweep_keep", keep.csv, 1) == 12, "keep run stops 12 trials");
        TEST_CHECK(keep.csv && !strcmp(keep.csv, ref.csv), "keep_checkpoints changes no decision");
        free_result(&keep);
    }
    free_result(&ref);
    st_hb_plan_free(&plan);
}

int main(void) {
    /* sweep folders of an earlier run of this test would be refused as "already a sweep" */
    if (system("rm -rf sweep_ref sweep_kill sweep_timed sweep_keep sweep_fixture") != 0) return 1;
    write_fixtures();
    test_load_and_sample();
    test_errors();
    test_parameter_sets();
    test_run_and_resume();
    return test_finish("test_sweep");
}
