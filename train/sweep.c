/*
 * sweep.c: sweep files (parse, validate, write back), trial sampling, and the Hyperband runner
 * with its crash-safe sweep folder. Contract in sweep.h; file format in docs/config.md.
 *
 * Runner design: the only state is the table of finished evaluations (trial, rung) -> metric,
 * kept in state.json (rewritten atomically after every evaluation). Everything else (which
 * trials are alive at which rung, leaderboard, best trial) is recomputed from it and the plan,
 * so a resumed run takes exactly the decisions an uninterrupted run takes.
 */
#include "sweep.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/base/fileio.h"
#include "data/base/text.h"
#include "data/base/rng.h"
#include "data/base/json.h"
#include "../kernels/check.h"
#include "../kernels/comm.h"
#include "keytable.h"
#include "lock.h"
#include "plot.h"

/* ---- small helpers ------------------------------------------------------------------------- */

/* st_error_get() is the buffer st_error_set writes into: copy before re-wrapping a message. */
static int wrap_error(const char *fmt_prefix, const char *arg) {
    char msg[3000];
    snprintf(msg, sizeof msg, "%s", st_error_get());
    return st_error_set(fmt_prefix, arg, msg);
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static const char *metric_text(double v, char *buf, size_t size) {
    if (isnan(v))
        snprintf(buf, size, "nan");
    else
        snprintf(buf, size, "%.4f", v);
    return buf;
}

/* ---- reading the sweep file ------------------------------------------------------------------- */

/* clang-format off: the key tables read as a reference, one key per line */
static const char *const goal_names[] = {"minimize", "maximize", NULL};
static const char *const rounding_names[] = {"algorithm", "paper", NULL};
static const char *const scheduler_names[] = {"hyperband", "asha", NULL};
static const char *const distribution_names[] = {"uniform", "log_uniform", "int_uniform", "q_uniform", NULL};

#define STRUCT st_sweep_config
static const st_key metric_keys[] = { /* metric: val/map@10 is the shorthand of {name: val/map@10} */
    ST_KEY("name", ST_KEY_STR, metric, 0, 0, 0),
    ST_KEY_ENUM_OF("goal", maximize, goal_names, 0),
    ST_KEY_END};
#undef STRUCT

#define STRUCT st_hyperband_config
static const st_key hyperband_keys[] = {
    ST_KEY("max_resource", ST_KEY_INT, max_resource, 1, ST_HB_MAX_RESOURCE, 0),
    ST_KEY("min_resource", ST_KEY_INT, min_resource, 1, ST_HB_MAX_RESOURCE, 0),
    ST_KEY("eta", ST_KEY_INT, eta, 2, 1000, 0),
    ST_KEY("iterations", ST_KEY_INT, iterations, 1, ST_HB_MAX_ITERATIONS, 0),
    ST_KEY_ENUM_OF("rounding", rounding, rounding_names, 0),
    ST_KEY_END};
#undef STRUCT

#define STRUCT st_sweep_config
static const st_key sweep_keys[] = {
    ST_KEY("base", ST_KEY_PATH, base_path, 0, 0, 0),
    {.name = "metric", .type = ST_KEY_SECTION, .sub = metric_keys, .flags = ST_KEY_SHORTHAND},
    ST_KEY("seed", ST_KEY_U64, seed, 0, 0, 0),
    ST_KEY("dir", ST_KEY_STR, dir, 0, 0, 0),
    ST_KEY("keep_checkpoints", ST_KEY_BOOL, keep_checkpoints, 0, 0, 0),
    ST_KEY_ENUM_OF("scheduler", scheduler, scheduler_names, 0),
    ST_KEY("ranks_per_trial", ST_KEY_INT, ranks_per_trial, 1, 1 << 20, 0),
    ST_KEY_SUB("hyperband", hyperband, hyperband_keys, 0),
    ST_KEY_CALLER("parameters"), /* read_parameters: keys are train-config key paths */
    ST_KEY_END};
#undef STRUCT

/* A parameter's spec; values and value are YAML values, checked against the base config. */
#define STRUCT st_sweep_param
static const st_key spec_keys[] = {
    ST_KEY_CALLER("values"),
    ST_KEY_CALLER("value"),
    ST_KEY_ENUM_OF("distribution", kind, distribution_names, ST_SWEEP_UNIFORM),
    ST_KEY("min", ST_KEY_FLOAT, min, -HUGE_VAL, HUGE_VAL, 0),
    ST_KEY("max", ST_KEY_FLOAT, max, -HUGE_VAL, HUGE_VAL, 0),
    ST_KEY("q", ST_KEY_FLOAT, q, -HUGE_VAL, HUGE_VAL, 0),
    ST_KEY_END};
#undef STRUCT
/* clang-format on */

/* Input paths inside parameter values become absolute now, resolved against the sweep file, so
 * the effective sweep.yaml written into the sweep folder means the same thing. */
static void absolutize_paths(st_ynode *node, const char *key_path) {
    if (node->kind == ST_YNODE_SCALAR) {
        if (!st_ynode_is_null(node) && st_config_key_is_path(key_path)) {
            char *abs = st_key_resolve_path(node);
            free(node->value);
            node->value = abs;
            node->plain = 0;
        }
        return;
    }
    for (int i = 0; i < node->n; i++) {
        char child[512];
        if (node->kind == ST_YNODE_MAP)
            snprintf(child, sizeof child, "%.250s.%.250s", key_path, node->keys[i]->value);
        else
            snprintf(child, sizeof child, "%.250s.%d", key_path, i);
        absolutize_paths(node->items[i], child);
    }
}

/* Apply one candidate value to a copy of the base and validate the result as a train config. */
static int check_candidate(const st_sweep_config *sc, const char *key, const st_ynode *value) {
    st_ynode *tree = st_ynode_copy(sc->base);
    st_train_config cfg;
    int rc = st_ynode_set_path(tree, key, value);
    if (rc == 0) {
        rc = st_config_from_tree(tree, &cfg);
        if (rc == 0) st_config_free(&cfg);
    } else {
        char where[1200];
        st_ynode_where(value, where, sizeof where);
        wrap_error("%s: parameter: %s", where);
    }
    st_ynode_free(tree);
    return rc;
}

static int reserved_key(const char *key) {
    return !strcmp(key, "epochs") || !strcmp(key, "output") || !strcmp(key, "output.dir") ||
           !strcmp(key, "output.name") || !strcmp(key, "early_stopping.metric") || !strcmp(key, "early_stopping.goal");
}

/* values: [...] or value: x; each candidate checked against the base. */
static int read_candidates(const st_sweep_config *sc, const st_ynode *spec, const char *label, st_sweep_param *p) {
    const st_ynode *values = st_ynode_get(spec, "values"), *value = st_ynode_get(spec, "value");
    if (values && (values->kind != ST_YNODE_SEQ || values->n == 0))
        return st_key_error(values, label, "values: expected a non-empty list");
    p->kind = values ? ST_SWEEP_VALUES : ST_SWEEP_VALUE;
    p->n_values = values ? values->n : 1;
    p->values = ST_CALLOC((size_t)p->n_values, sizeof *p->values);
    for (int i = 0; i < p->n_values; i++) {
        p->values[i] = st_ynode_copy(values ? values->items[i] : value);
        absolutize_paths(p->values[i], p->key);
        if (check_candidate(sc, p->key, p->values[i])) return -1;
    }
    return 0;
}

/* distribution, min, max (q): the range checked, and both of its ends against the base. */
static int check_range(const st_sweep_config *sc, const st_ynode *spec, const char *label, const st_sweep_param *p) {
    const st_ynode *min = st_ynode_get(spec, "min"), *max = st_ynode_get(spec, "max"), *q = st_ynode_get(spec, "q");
    if (!min || !max)
        return st_key_error(spec, label, "%s needs min and max", distribution_names[p->kind - ST_SWEEP_UNIFORM]);
    if (!(p->min <= p->max)) return st_key_error(spec, label, "min %g is larger than max %g", p->min, p->max);
    if (p->kind == ST_SWEEP_LOG_UNIFORM && !(p->min > 0))
        return st_key_error(min, label, "log_uniform needs min > 0 (min and max are values, not exponents)");
    if (p->kind == ST_SWEEP_Q_UNIFORM && !(p->q > 0)) return st_key_error(q ? q : spec, label, "q must be > 0");
    long long imin = 0, imax = 0;
    if (p->kind == ST_SWEEP_INT_UNIFORM &&
        (st_yaml_parse_int(min->value, &imin) != 0 || st_yaml_parse_int(max->value, &imax) != 0))
        return st_key_error(spec, label, "int_uniform needs integer min and max");
    const st_ynode *ends[2] = {min, max};
    for (int i = 0; i < 2; i++)
        if (check_candidate(sc, p->key, ends[i])) return -1;
    return 0;
}

static int read_parameter(st_sweep_config *sc, const st_ynode *key_node, const st_ynode *spec, st_sweep_param *p) {
    const char *key = key_node->value;
    char label[600];
    snprintf(label, sizeof label, "parameters.%.500s", key);
    p->key = ST_STRDUP(key);
    if (reserved_key(key))
        return st_key_error(key_node, label,
                            "set by the sweep runner (epochs = hyperband.max_resource, output.dir and output.name = "
                            "the trial folder, early_stopping metric/goal = the sweep metric)");
    p->q = 1;
    if (st_keys_read(spec, spec_keys, p, label)) return -1;
    const st_ynode *values = st_ynode_get(spec, "values"), *value = st_ynode_get(spec, "value"),
                   *dist = st_ynode_get(spec, "distribution");
    if (!!values + !!value + !!dist != 1)
        return st_key_error(spec, label, "give exactly one of values: [...], value: x, distribution: NAME");
    if (!dist && (st_ynode_get(spec, "min") || st_ynode_get(spec, "max") || st_ynode_get(spec, "q")))
        return st_key_error(spec, label, "min/max/q go with a distribution");
    return dist ? check_range(sc, spec, label, p) : read_candidates(sc, spec, label, p);
}

static int read_parameters(st_sweep_config *sc, const st_ynode *node) {
    if (node->kind != ST_YNODE_MAP)
        return st_key_error(node, "parameters", "expected a mapping KEY.PATH: {values: [...]}");
    sc->params = ST_CALLOC((size_t)node->n, sizeof *sc->params);
    for (int i = 0; i < node->n; i++) {
        sc->n_params = i + 1;
        if (read_parameter(sc, node->keys[i], node->items[i], &sc->params[i])) return -1;
    }
    return 0;
}

/* checkpoints/<the sweep file's name without extension> */
static char *default_dir(const char *sweep_path) {
    char *stem = st_path_stem(sweep_path, ".");
    ST_CHECK(stem != NULL, "out of memory");
    size_t size = strlen(stem) + sizeof "checkpoints/";
    char *dir = ST_MALLOC(size);
    snprintf(dir, size, "checkpoints/%s", stem);
    free(stem);
    return dir;
}

/* The checks that need the base config: hyperband's defaults and ranges, the sweep metric. */
static int check_against_base(const st_ynode *root, const char *path, const st_train_config *base, st_sweep_config *sc) {
    st_hyperband_config *hb = &sc->hyperband;
    if (hb->max_resource == 0) hb->max_resource = base->epochs; /* default: the base config's epochs */
    const st_ynode *node = st_ynode_get(root, "hyperband");
    if (hb->min_resource > hb->max_resource)
        return st_key_error(node ? node : root, "hyperband.min_resource", "%d is larger than max_resource %d",
                            hb->min_resource, hb->max_resource);
    if (st_config_check_metric(base, sc->metric)) {
        const st_ynode *m = st_ynode_get(root, "metric");
        char where[1200];
        snprintf(where, sizeof where, "%s", path);
        if (m) st_ynode_where(m, where, sizeof where);
        return wrap_error("%s: metric: %s", where);
    }
    st_hb_plan plan;
    if (st_hyperband_plan(hb, &plan)) return wrap_error("%s: %s", path);
    st_hb_plan_free(&plan);
    return 0;
}

static int read_sweep_tree(const st_ynode *root, const char *path, st_sweep_config *sc) {
    if (st_keys_read(root, sweep_keys, sc, "")) return -1;
    if (!sc->base_path) {
        const st_ynode *n = st_ynode_get(root, "base");
        return st_key_error(n ? n : root, "base", "the base train config is required (HINT: base: train.yaml)");
    }
    if (!sc->dir) sc->dir = default_dir(path);
    sc->base = st_yaml_load_file(sc->base_path);
    if (!sc->base) return -1;
    st_train_config base_cfg;
    if (st_config_from_tree(sc->base, &base_cfg)) return -1;
    int rc = check_against_base(root, path, &base_cfg, sc);
    st_config_free(&base_cfg);
    if (rc) return -1;
    /* `parameters:` with nothing under it (or --set parameters=null): every trial is the base */
    const st_ynode *n = st_ynode_get(root, "parameters");
    return n && !st_ynode_is_null(n) ? read_parameters(sc, n) : 0;
}

/* ---- --set on a sweep file ------------------------------------------------------------------ */

static int is_spec_field(const char *segment, size_t len) {
    for (const st_key *k = spec_keys; k->name; k++)
        if (strlen(k->name) == len && !strncmp(segment, k->name, len)) return 1;
    return 0;
}

/* The parameter that `rest` (a --set path after "parameters.") names: the longest existing
 * parameter key that is rest or a dotted prefix of it; for a new parameter, rest up to its
 * first spec field (optimizer.lr.max -> optimizer.lr). Its length, or 0 when rest names none. */
static size_t parameter_key_length(const st_ynode *params, const char *rest) {
    size_t best = 0;
    for (int i = 0; i < params->n; i++) {
        size_t len = strlen(params->keys[i]->value);
        if (len > best && !strncmp(rest, params->keys[i]->value, len) && (rest[len] == '\0' || rest[len] == '.'))
            best = len;
    }
    if (best) return best;
    for (const char *seg = rest;; seg++) {
        size_t len = strcspn(seg, ".");
        if (is_spec_field(seg, len)) return seg == rest ? 0 : (size_t)(seg - 1 - rest);
        seg += len;
        if (!*seg) return strlen(rest);
    }
}

static st_ynode **parameter_slot(st_ynode *params, const char *key) {
    for (int i = 0; i < params->n; i++)
        if (!strcmp(params->keys[i]->value, key)) return &params->items[i];
    return NULL;
}

/* A new parameter whose key says where it came from (the --set), for messages about the key. */
static st_ynode **add_parameter(st_ynode *params, const char *key, st_ynode *spec, const st_ynode *origin) {
    st_ynode_map_add(params, key, spec);
    st_ynode *key_node = params->keys[params->n - 1];
    free(key_node->source);
    key_node->source = ST_STRDUP(origin->source);
    key_node->from_file = origin->from_file;
    key_node->line = origin->line;
    key_node->column = origin->column;
    return &params->items[params->n - 1];
}

/* The parameters mapping of a sweep tree, created when absent or null. */
static st_ynode *parameters_of(st_ynode *root, const char *label) {
    st_ynode *params = st_ynode_get(root, "parameters");
    if (params && st_ynode_is_null(params)) {
        st_ynode_remove(root, "parameters");
        params = NULL;
    }
    if (!params) {
        st_ynode_map_add(root, "parameters", st_ynode_new_map());
        params = st_ynode_get(root, "parameters");
    }
    if (params->kind != ST_YNODE_MAP) {
        st_key_error(params, "parameters", "expected a mapping KEY.PATH: {values: [...]} (cannot apply %s)", label);
        return NULL;
    }
    return params;
}

/* parameters.KEY.PATH=SPEC replaces (or with null removes) a parameter; parameters.KEY.PATH.FIELD=V
 * sets (or with null removes) one field of its spec. */
static int set_parameter(st_ynode *params, const char *rest, const st_ynode *value, const char *label) {
    size_t len = parameter_key_length(params, rest);
    if (len == 0)
        return st_error_set("%s: expected parameters.KEY.PATH[.FIELD]=VALUE, FIELD one of values, value, distribution, "
                            "min, max, q (HINT: --set parameters.optimizer.lr.max=0.1)",
                            label);
    char key[512];
    snprintf(key, sizeof key, "%.*s", (int)len, rest);
    const char *field = rest[len] ? rest + len + 1 : NULL;
    st_ynode **slot = parameter_slot(params, key);
    if (!field && st_ynode_is_null(value)) {
        st_ynode_remove(params, key);
        return 0;
    }
    if (!field) {
        if (!slot) {
            add_parameter(params, key, st_ynode_copy(value), value);
            return 0;
        }
        st_ynode_free(*slot); /* a whole spec replaces, in place: parameters apply in file order */
        *slot = st_ynode_copy(value);
        return 0;
    }
    if (!slot) slot = add_parameter(params, key, st_ynode_new_map(), value);
    if ((*slot)->kind == ST_YNODE_MAP && st_ynode_is_null(value) && !strchr(field, '.')) {
        st_ynode_remove(*slot, field);
        return 0;
    }
    if (st_ynode_set_path(*slot, field, value) == 0) return 0;
    return wrap_error("%s: %s", label);
}

static int apply_sweep_set(st_ynode *root, const char *assignment) {
    static const char prefix[] = "parameters.";
    if (strncmp(assignment, prefix, sizeof prefix - 1) != 0) return st_config_apply_set(root, assignment);
    char key[512], label[1200];
    st_ynode *value = st_config_parse_set(assignment, key, sizeof key);
    if (!value) return -1;
    snprintf(label, sizeof label, "--set %s", assignment);
    st_ynode *params = parameters_of(root, label);
    int rc = params ? set_parameter(params, key + sizeof prefix - 1, value, label) : -1;
    st_ynode_free(value);
    return rc;
}

static void sweep_defaults(st_sweep_config *sc) {
    memset(sc, 0, sizeof *sc);
    sc->metric = ST_STRDUP("val/map@10");
    sc->maximize = 1;
    sc->ranks_per_trial = 1;
    /* max_resource 0: not given, the base config's epochs (check_against_base) */
    sc->hyperband = (st_hyperband_config){
        .max_resource = 0, .min_resource = 1, .eta = 3, .iterations = 1, .rounding = ST_HB_ROUNDING_ALGORITHM};
}

int st_sweep_load(const char *path, const char *const *sets, int n_sets, st_sweep_config *sc) {
    sweep_defaults(sc);
    sc->path = ST_STRDUP(path);
    st_ynode *root = st_yaml_load_file(path);
    if (!root) {
        st_sweep_free(sc);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n_sets && rc == 0; i++) rc = apply_sweep_set(root, sets[i]);
    if (rc == 0) rc = read_sweep_tree(root, path, sc);
    st_ynode_free(root);
    if (rc != 0) st_sweep_free(sc);
    return rc;
}

void st_sweep_free(st_sweep_config *sc) {
    for (int i = 0; i < sc->n_params; i++) {
        for (int j = 0; j < sc->params[i].n_values; j++) st_ynode_free(sc->params[i].values[j]);
        free(sc->params[i].values);
        free(sc->params[i].key);
    }
    free(sc->params);
    st_ynode_free(sc->base);
    free(sc->path);
    st_keys_free(sweep_keys, sc); /* base_path, metric, dir */
    memset(sc, 0, sizeof *sc);
}

/* ---- sampling -------------------------------------------------------------------------------- */

/* A hash of (seed, trial, slot): slot 0 is the trial seed, slot i+1 parameter i's draw. */
static uint64_t trial_hash(uint64_t seed, int trial_id, int slot) {
    return st_rng_hash(seed, (uint64_t)trial_id, (uint64_t)slot);
}

static double unit_draw(uint64_t seed, int trial_id, int slot) { /* U in [0, 1) */
    return (double)(trial_hash(seed, trial_id, slot) >> 11) * 0x1.0p-53;
}

static st_ynode *sample_param(const st_sweep_param *p, double u) {
    char buf[64];
    switch (p->kind) {
    case ST_SWEEP_VALUES: {
        int i = (int)(u * p->n_values);
        return st_ynode_copy(p->values[i < p->n_values ? i : p->n_values - 1]);
    }
    case ST_SWEEP_VALUE: return st_ynode_copy(p->values[0]);
    case ST_SWEEP_UNIFORM: snprintf(buf, sizeof buf, "%.6g", p->min + u * (p->max - p->min)); break;
    case ST_SWEEP_LOG_UNIFORM:
        snprintf(buf, sizeof buf, "%.6g", exp(log(p->min) + u * (log(p->max) - log(p->min))));
        break;
    case ST_SWEEP_INT_UNIFORM: {
        long long lo = (long long)p->min, hi = (long long)p->max;
        long long v = lo + (long long)(u * (double)(hi - lo + 1));
        snprintf(buf, sizeof buf, "%lld", v > hi ? hi : v);
        break;
    }
    case ST_SWEEP_Q_UNIFORM: {
        double v = round((p->min + u * (p->max - p->min)) / p->q) * p->q;
        if (v > p->max) v -= p->q;
        if (v < p->min) v += p->q;
        if (v > p->max) v = p->max; /* the range holds no multiple of q */
        snprintf(buf, sizeof buf, "%.10g", v);
        break;
    }
    }
    return st_ynode_new_scalar(buf, 1);
}

static int has_param(const st_sweep_config *sc, const char *key) {
    for (int i = 0; i < sc->n_params; i++)
        if (!strcmp(sc->params[i].key, key)) return 1;
    return 0;
}

st_ynode *st_sweep_sample(const st_sweep_config *sc, int trial_id, uint64_t *trial_seed) {
    st_ynode *params = st_ynode_new_map();
    for (int i = 0; i < sc->n_params; i++)
        st_ynode_map_add(params, sc->params[i].key, sample_param(&sc->params[i], unit_draw(sc->seed, trial_id, i + 1)));
    *trial_seed = trial_hash(sc->seed, trial_id, 0) >> 1; /* < 2^63: a YAML integer */
    return params;
}

static void replace_string(char **slot, const char *value) {
    free(*slot);
    *slot = ST_STRDUP(value);
}

int st_sweep_trial_config(const st_sweep_config *sc, const st_ynode *params, uint64_t trial_seed, const char *trial_dir,
                          st_train_config *cfg) {
    st_ynode *tree = st_ynode_copy(sc->base);
    int rc = 0;
    for (int i = 0; i < params->n && rc == 0; i++)
        rc = st_ynode_set_path(tree, params->keys[i]->value, params->items[i]);
    if (rc == 0 && !has_param(sc, "seed")) {
        st_ynode *seed = st_ynode_new_int((long long)trial_seed);
        rc = st_ynode_set_path(tree, "seed", seed);
        st_ynode_free(seed);
    }
    if (rc == 0) rc = st_config_from_tree(tree, cfg);
    st_ynode_free(tree);
    if (rc != 0) return -1;
    if (cfg->n_phases && cfg->epochs != sc->hyperband.max_resource) {
        st_config_free(cfg);
        return st_error_set("%s: phases: they total %d epochs but hyperband.max_resource is %d (HINT: make them equal)",
                            sc->base_path, cfg->epochs, sc->hyperband.max_resource);
    }
    cfg->epochs = sc->hyperband.max_resource;
    if (st_config_check_metric(cfg, sc->metric)) {
        st_config_free(cfg);
        return wrap_error("trial config does not report the sweep metric %s: %s", sc->metric);
    }
    replace_string(&cfg->early_stopping.metric, sc->metric);
    cfg->early_stopping.maximize = sc->maximize;
    if (trial_dir) {
        char out[4200];
        snprintf(out, sizeof out, "%s/checkpoints", trial_dir);
        replace_string(&cfg->output.dir, out);
        replace_string(&cfg->output.name, "trial");
    }
    return 0;
}

/* A rank group trains on equal slices of each global batch (the trainer refuses it too, but
 * only once the trial starts). */
static int check_group_batch(const st_sweep_config *sc, const st_train_config *cfg) {
    int batch = st_config_batch_size(cfg), g = sc->ranks_per_trial;
    if (batch % g == 0) return 0;
    return st_error_set("its global batch of %d images cannot be split evenly across ranks_per_trial %d ranks "
                        "(%d %% %d = %d) (HINT: a batch that is a multiple of %d, or ranks_per_trial dividing %d)",
                        batch, g, batch, g, batch % g, g, batch);
}

int st_sweep_check_trials(const st_sweep_config *sc, int n_trials, int check_files) {
    for (int t = 0; t < n_trials; t++) {
        uint64_t seed;
        st_ynode *params = st_sweep_sample(sc, t, &seed);
        st_train_config cfg;
        const char *why = "%s: these parameters do not make a valid config together: %s";
        int rc = st_sweep_trial_config(sc, params, seed, NULL, &cfg);
        if (rc == 0) {
            if (check_group_batch(sc, &cfg)) {
                why = "%s: %s";
                rc = -1;
            } else if (check_files && st_config_check_files(&cfg)) {
                why = "%s: an input file of this trial is missing: %s";
                rc = -1;
            }
            st_config_free(&cfg);
        }
        if (rc != 0) {
            char label[2100], flow[2048];
            snprintf(label, sizeof label, "trial %d (%s)", t, st_ynode_flow(params, flow, sizeof flow));
            st_ynode_free(params);
            return wrap_error(why, label);
        }
        st_ynode_free(params);
    }
    return 0;
}

/* ---- writing the sweep back ------------------------------------------------------------------- */

static st_ynode *param_spec_tree(const st_sweep_param *p) {
    st_ynode *spec = st_ynode_new_map();
    if (p->kind == ST_SWEEP_VALUES) {
        st_ynode *list = st_ynode_new_seq();
        for (int i = 0; i < p->n_values; i++) st_ynode_seq_add(list, st_ynode_copy(p->values[i]));
        st_ynode_map_add(spec, "values", list);
    } else if (p->kind == ST_SWEEP_VALUE) {
        st_ynode_map_add(spec, "value", st_ynode_copy(p->values[0]));
    } else {
        st_ynode_map_add(spec, "distribution", st_ynode_new_scalar(distribution_names[p->kind - ST_SWEEP_UNIFORM], 1));
        st_ynode_map_add(spec, "min", st_ynode_new_number(p->min));
        st_ynode_map_add(spec, "max", st_ynode_new_number(p->max));
        if (p->kind == ST_SWEEP_Q_UNIFORM) st_ynode_map_add(spec, "q", st_ynode_new_number(p->q));
    }
    return spec;
}

int st_sweep_write(const st_sweep_config *sc, const char *dir) {
    char path[4200];
    st_train_config base;
    if (st_config_from_tree(sc->base, &base)) return -1;
    snprintf(path, sizeof path, "%s/base.yaml", dir);
    int rc = st_config_write_yaml(&base, path);
    st_config_free(&base);
    if (rc) return -1;

    /* the sweep's own keys as read, with the base and folder as they are in dir */
    st_ynode *root = st_keys_write(sweep_keys, sc), *params = st_ynode_new_map();
    st_ynode *base_name = st_ynode_new_scalar("base.yaml", 0), *dir_name = st_ynode_new_scalar(dir, 0);
    st_ynode_set_path(root, "base", base_name);
    st_ynode_set_path(root, "dir", dir_name);
    st_ynode_free(base_name);
    st_ynode_free(dir_name);
    for (int i = 0; i < sc->n_params; i++) st_ynode_map_add(params, sc->params[i].key, param_spec_tree(&sc->params[i]));
    st_ynode_map_add(root, "parameters", params);
    snprintf(path, sizeof path, "%s/sweep.yaml", dir);
    char header[4400];
    snprintf(header, sizeof header, "simtune effective sweep (from %s); resume with: simtune sweep --resume %s",
             sc->path, dir);
    rc = st_yaml_write_file(root, path, header);
    st_ynode_free(root);
    return rc;
}

int st_sweep_load_dir(const char *dir, st_sweep_config *sc) {
    char path[4200];
    snprintf(path, sizeof path, "%s/sweep.yaml", dir);
    if (!file_exists(path))
        return st_error_set("%s: no sweep.yaml: not a sweep folder (HINT: start a sweep with --config)", dir);
    return st_sweep_load(path, NULL, 0, sc);
}

/* A bracket's rungs as [{"n": trials, "r": epochs}]. */
static json_t *plan_rungs(const st_hb_bracket *br) {
    json_t *rungs = json_array();
    for (int i = 0; i < br->n_rungs; i++)
        json_array_append_new(rungs, json_pack("{s:i, s:i}", "n", br->rungs[i].n, "r", br->rungs[i].r));
    return rungs;
}

void st_sweep_plan_json(FILE *out, const st_hb_plan *plan) {
    json_t *brackets = json_array();
    for (int b = 0; b < plan->n_brackets; b++) json_array_append_new(brackets, plan_rungs(&plan->brackets[b]));
    st_json_print(out, brackets, 0); /* a closed stdout is the shell's business, as with printf */
    json_decref(brackets);
}

/* ---- the runner: state -------------------------------------------------------------------------- */

typedef struct {
    int done;
    double metric; /* NaN: diverged (ranked worst) */
    int ranks;     /* the rank group that trained it: 1 for one process (not written then) */
} evaluation;

/* An evaluation being trained: by whom, since when (its trial lock says whether it still is). */
typedef struct {
    int trial, rung;
    long pid;
    char host[256];
    char since[32];
} claim;

typedef struct {
    const st_sweep_config *sc;
    const char *dir;
    st_hb_plan plan;
    int n_trials, max_rungs;
    evaluation *evals; /* (n_trials, max_rungs) */
    int *bracket_of;   /* (n_trials) plan bracket index */
    st_ynode **params; /* (n_trials) sampled parameters */
    uint64_t *seeds;   /* (n_trials) */
    int *scratch;      /* (n_trials) */
    claim *claims;     /* (n_trials): a trial is trained by one worker at a time */
    int n_claims;
    json_t *requeues;  /* state.json's log of the claims taken over from dead workers */
    long pid;          /* this process */
    char host[256];
    char tag[300];     /* "[host:pid] " before a worker's progress lines, "" for a single process */
    FILE *progress;
} runner;

static evaluation *eval_at(const runner *r, int trial, int rung) {
    return &r->evals[(size_t)trial * (size_t)r->max_rungs + (size_t)rung];
}

static int compare_int(const void *a, const void *b) {
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

/* Trials of bracket b alive at `rung` (ascending ids) into out; the count, or -1 when an earlier
 * rung is not complete yet. Successive halving keeps floor(n_i / eta) after rung i. */
static int alive_at(const runner *r, int b, int rung, int *out) {
    const st_hb_bracket *br = &r->plan.brackets[b];
    int n = br->rungs[0].n;
    for (int k = 0; k < n; k++) out[k] = br->first_trial + k;
    double *metrics = ST_MALLOC((size_t)n * sizeof *metrics);
    int *chosen = ST_MALLOC((size_t)n * sizeof *chosen), *kept = ST_MALLOC((size_t)n * sizeof *kept);
    for (int i = 0; i < rung && n >= 0; i++) {
        for (int k = 0; k < n && n >= 0; k++) {
            if (!eval_at(r, out[k], i)->done)
                n = -1;
            else
                metrics[k] = eval_at(r, out[k], i)->metric;
        }
        if (n < 0) break;
        int keep = st_hb_select(metrics, out, n, n / r->plan.config.eta, r->sc->maximize, chosen);
        for (int k = 0; k < keep; k++) kept[k] = out[chosen[k]];
        qsort(kept, (size_t)keep, sizeof *kept, compare_int);
        memcpy(out, kept, (size_t)keep * sizeof *out);
        n = keep;
    }
    free(metrics);
    free(chosen);
    free(kept);
    return n;
}

static int last_done_rung(const runner *r, int t) {
    int last = -1;
    for (int i = 0; i < r->plan.brackets[r->bracket_of[t]].n_rungs; i++)
        if (eval_at(r, t, i)->done) last = i;
    return last;
}

/* ---- the runner: scheduling ---------------------------------------------------------------------- */

typedef struct {
    int trial, rung;
} task;

static int claim_of(const runner *r, int t, int rung) {
    for (int c = 0; c < r->n_claims; c++)
        if (r->claims[c].trial == t && r->claims[c].rung == rung) return c;
    return -1;
}

/* 1 when trial t has been evaluated, or is being trained, at `rung` or above. */
static int has_reached(const runner *r, int t, int rung) {
    for (int i = rung; i < r->plan.brackets[r->bracket_of[t]].n_rungs; i++)
        if (eval_at(r, t, i)->done || claim_of(r, t, i) >= 0) return 1;
    return 0;
}

/* hyperband: the first unclaimed evaluation of bracket b's current rung (the lowest rung not yet
 * complete: a rung opens only when the one before is complete, so its trials are known). */
static int sync_next(const runner *r, int b, task *out) {
    const st_hb_bracket *br = &r->plan.brackets[b];
    for (int i = 0; i < br->n_rungs; i++) {
        int n = alive_at(r, b, i, r->scratch);
        for (int k = 0; k < n; k++) {
            int t = r->scratch[k];
            if (!eval_at(r, t, i)->done && claim_of(r, t, i) < 0) {
                *out = (task){t, i};
                return 1;
            }
        }
        if (n < 0) break;
    }
    return 0;
}

/* asha: in bracket b, a promotion from the highest rung that has one (a trial among the best
 * floor(evaluated / eta) of the rung so far that has not gone further), else the next rung-0
 * trial nobody has started. Promotions are never taken back: the set a rung promotes depends on
 * the order its evaluations finish in. */
static int asha_next(const runner *r, int b, task *out) {
    const st_hb_bracket *br = &r->plan.brackets[b];
    int n0 = br->rungs[0].n, found = 0;
    int *ids = ST_MALLOC((size_t)n0 * sizeof *ids), *chosen = ST_MALLOC((size_t)n0 * sizeof *chosen);
    double *metrics = ST_MALLOC((size_t)n0 * sizeof *metrics);
    for (int i = br->n_rungs - 2; i >= 0 && !found; i--) {
        int m = 0;
        for (int k = 0; k < n0; k++)
            if (eval_at(r, br->first_trial + k, i)->done) {
                ids[m] = br->first_trial + k;
                metrics[m++] = eval_at(r, br->first_trial + k, i)->metric;
            }
        int keep = st_hb_select(metrics, ids, m, m / r->plan.config.eta, r->sc->maximize, chosen);
        for (int j = 0; j < keep && !found; j++)
            if (!has_reached(r, ids[chosen[j]], i + 1)) {
                *out = (task){ids[chosen[j]], i + 1};
                found = 1;
            }
    }
    for (int k = 0; k < n0 && !found; k++)
        if (!has_reached(r, br->first_trial + k, 0)) {
            *out = (task){br->first_trial + k, 0};
            found = 1;
        }
    free(ids);
    free(chosen);
    free(metrics);
    return found;
}

static int bracket_next(const runner *r, int b, task *out) {
    return r->sc->scheduler == ST_SWEEP_ASHA ? asha_next(r, b, out) : sync_next(r, b, out);
}

/* The next evaluation to train, brackets in plan order: with one worker the order of the
 * single-process runner (bracket by bracket, rung by rung, trials by id). */
static int next_task(const runner *r, task *out) {
    for (int b = 0; b < r->plan.n_brackets; b++)
        if (bracket_next(r, b, out)) return 1;
    return 0;
}

/* asha: 1 while bracket b may still train something (a claim, or an evaluation to take). */
static int bracket_open(const runner *r, int b) {
    task unused;
    for (int c = 0; c < r->n_claims; c++)
        if (r->bracket_of[r->claims[c].trial] == b) return 1;
    return asha_next(r, b, &unused);
}

/* doc written atomically (data/base/json.h), as one document or as JSON Lines; the reference
 * to doc is taken. */
static int write_json_file(const char *path, json_t *doc, int lines) {
    int rc = lines ? st_json_write_lines(path, doc, 0) : st_json_write_file(path, doc, 0);
    json_decref(doc);
    return rc;
}

static int save_state(const runner *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/state.json", r->dir);
    json_t *evals = json_array();
    for (int t = 0; t < r->n_trials; t++)
        for (int i = 0; i < r->max_rungs; i++) {
            const evaluation *e = eval_at(r, t, i);
            if (!e->done) continue;
            const st_hb_bracket *br = &r->plan.brackets[r->bracket_of[t]];
            json_t *item = json_pack("{s:i, s:i, s:i, s:o}", "trial", t, "rung", i, "epochs", br->rungs[i].r, "metric",
                                     st_json_number(e->metric));
            if (e->ranks > 1) json_object_set_new(item, "ranks", json_integer(e->ranks));
            json_array_append_new(evals, item);
        }
    json_t *claims = json_array();
    for (int c = 0; c < r->n_claims; c++) {
        const claim *k = &r->claims[c];
        json_array_append_new(claims, json_pack("{s:i, s:i, s:I, s:s, s:s}", "trial", k->trial, "rung", k->rung, "pid",
                                                (json_int_t)k->pid, "host", k->host, "since", k->since));
    }
    return write_json_file(path,
                           json_pack("{s:i, s:i, s:o, s:o, s:O}", "version", 2, "n_trials", r->n_trials, "evaluations",
                                     evals, "claims", claims, "requeues", r->requeues),
                           0);
}

/* An integer of state.json in [lo, hi] into *out: 0, or -1 with st_error_set naming key. */
static int state_int(const json_t *item, const char *key, long long lo, long long hi, long long *out) {
    const json_t *n = json_object_get(item, key);
    *out = json_is_integer(n) ? (long long)json_integer_value(n) : lo - 1;
    if (*out < lo || *out > hi) return st_error_set("%s: missing or out of range [%lld, %lld]", key, lo, hi);
    return 0;
}

/* One finished evaluation of state.json, checked against the plan, into the table. */
static int load_evaluation(runner *r, const json_t *item, int index) {
    long long t = 0, i = 0, epochs = 0, ranks = 1;
    const json_t *m = json_object_get(item, "metric");
    char where[64];
    snprintf(where, sizeof where, "evaluations[%d]", index);
    if (state_int(item, "trial", 0, r->n_trials - 1, &t)) return wrap_error("%s: %s", where);
    const st_hb_bracket *br = &r->plan.brackets[r->bracket_of[t]];
    if (state_int(item, "rung", 0, br->n_rungs - 1, &i) ||
        state_int(item, "epochs", br->rungs[i].r, br->rungs[i].r, &epochs))
        return wrap_error("%s: %s", where);
    if (!json_is_number(m) && !json_is_null(m)) return st_error_set("%s: metric: expected a number or null", where);
    if (json_object_get(item, "ranks") && state_int(item, "ranks", 1, 1 << 20, &ranks))
        return wrap_error("%s: %s", where);
    *eval_at(r, (int)t, (int)i) = (evaluation){1, json_is_null(m) ? NAN : json_number_value(m), (int)ranks};
    return 0;
}

/* One evaluation being trained, of state.json's claims (version 2; none in version 1). */
static int load_claim(runner *r, const json_t *item, int index) {
    long long t = 0, i = 0, pid = 0;
    const char *host = json_string_value(json_object_get(item, "host")),
               *since = json_string_value(json_object_get(item, "since"));
    char where[64];
    snprintf(where, sizeof where, "claims[%d]", index);
    if (r->n_claims == r->n_trials) return st_error_set("%s: more claims than trials", where);
    if (state_int(item, "trial", 0, r->n_trials - 1, &t) ||
        state_int(item, "rung", 0, r->plan.brackets[r->bracket_of[t]].n_rungs - 1, &i) ||
        state_int(item, "pid", 1, INT64_MAX, &pid))
        return wrap_error("%s: %s", where);
    if (!host || !since) return st_error_set("%s: host, since: expected strings", where);
    claim *c = &r->claims[r->n_claims++];
    *c = (claim){(int)t, (int)i, (long)pid, "", ""};
    snprintf(c->host, sizeof c->host, "%s", host);
    snprintf(c->since, sizeof c->since, "%s", since);
    return 0;
}

/* state.json read afresh (other workers change it between two reads). */
static int load_state(runner *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/state.json", r->dir);
    memset(r->evals, 0, (size_t)r->n_trials * (size_t)r->max_rungs * sizeof *r->evals);
    r->n_claims = 0;
    json_decref(r->requeues);
    r->requeues = json_array();
    if (!file_exists(path)) return 0; /* killed before the first evaluation finished */
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (!root) return st_error_set("%s:%d:%d: %s", path, error.line, error.column, error.text);
    long long n = 0;
    int rc = state_int(root, "n_trials", r->n_trials, r->n_trials, &n);
    const json_t *list = json_object_get(root, "evaluations"), *claims = json_object_get(root, "claims");
    json_t *requeues = json_object_get(root, "requeues");
    if (rc == 0 && !json_is_array(list)) rc = st_error_set("evaluations: expected a list");
    if (rc == 0 && ((claims && !json_is_array(claims)) || (requeues && !json_is_array(requeues))))
        rc = st_error_set("claims, requeues: expected lists");
    for (size_t k = 0; rc == 0 && k < json_array_size(list); k++) rc = load_evaluation(r, json_array_get(list, k), (int)k);
    for (size_t k = 0; rc == 0 && k < json_array_size(claims); k++) rc = load_claim(r, json_array_get(claims, k), (int)k);
    if (rc == 0 && requeues) json_array_extend(r->requeues, requeues);
    json_decref(root);
    if (rc != 0) return wrap_error("%s: does not match this sweep's plan: %s", path);
    return 0;
}

/* ---- the runner: derived files --------------------------------------------------------------------- */

static void trial_dir_of(const runner *r, int t, char *buf, size_t size) {
    snprintf(buf, size, "%s/trials/%04d", r->dir, t);
}

/* Status of every trial: pending (never evaluated), finished (evaluated at its bracket's last
 * rung), promoted (selected for the next rung), stopped (not selected), running (its rung is not
 * complete yet, so the selection is not made). One pass per bracket and rung. */
static void asha_statuses(const runner *r, const char **status) {
    int *open = ST_MALLOC((size_t)r->plan.n_brackets * sizeof *open);
    for (int b = 0; b < r->plan.n_brackets; b++) open[b] = bracket_open(r, b);
    for (int t = 0; t < r->n_trials; t++) {
        int last = last_done_rung(r, t);
        if (last < 0)
            status[t] = "pending";
        else if (last == r->plan.brackets[r->bracket_of[t]].n_rungs - 1)
            status[t] = "finished";
        else if (has_reached(r, t, last + 1))
            status[t] = "promoted";
        else if (!open[r->bracket_of[t]])
            status[t] = "stopped";
        else
            status[t] = "running";
    }
    free(open);
}

static void trial_statuses(const runner *r, const char **status) {
    if (r->sc->scheduler == ST_SWEEP_ASHA) {
        asha_statuses(r, status);
        return;
    }
    int *reached = ST_MALLOC((size_t)r->n_trials * sizeof *reached),
        *complete = ST_MALLOC((size_t)r->n_trials * sizeof *complete);
    for (int b = 0; b < r->plan.n_brackets; b++) {
        const st_hb_bracket *br = &r->plan.brackets[b];
        for (int i = 0; i < br->n_rungs; i++) {
            int n = alive_at(r, b, i, r->scratch);
            for (int k = 0; k < n; k++) reached[r->scratch[k]] = i;
            for (int k = 0; k < br->rungs[0].n; k++)
                complete[br->first_trial + k] = n >= 0 ? i : complete[br->first_trial + k];
            if (n < 0) break;
        }
    }
    for (int t = 0; t < r->n_trials; t++) {
        int last = last_done_rung(r, t);
        if (last < 0)
            status[t] = "pending";
        else if (last == r->plan.brackets[r->bracket_of[t]].n_rungs - 1)
            status[t] = "finished";
        else if (reached[t] > last)
            status[t] = "promoted";
        else if (complete[t] > last)
            status[t] = "stopped";
        else
            status[t] = "running";
    }
    free(reached);
    free(complete);
}

static const runner *sort_runner; /* qsort has no context argument */

static int compare_leaderboard(const void *pa, const void *pb) {
    const runner *r = sort_runner;
    int a = *(const int *)pa, b = *(const int *)pb;
    int la = last_done_rung(r, a), lb = last_done_rung(r, b);
    if ((la < 0) != (lb < 0)) return la < 0 ? 1 : -1;
    if (la >= 0) {
        int ea = r->plan.brackets[r->bracket_of[a]].rungs[la].r, eb = r->plan.brackets[r->bracket_of[b]].rungs[lb].r;
        if (ea != eb) return ea > eb ? -1 : 1;
        double ma = eval_at(r, a, la)->metric, mb = eval_at(r, b, lb)->metric;
        if (st_hb_better(ma, mb, r->sc->maximize)) return -1;
        if (st_hb_better(mb, ma, r->sc->maximize)) return 1;
    }
    return (a > b) - (a < b);
}

/* Trial ids best first: most epochs reached, then metric, then id; never-evaluated trials last. */
static int *leaderboard_order(const runner *r) {
    int *order = ST_MALLOC((size_t)r->n_trials * sizeof *order);
    for (int t = 0; t < r->n_trials; t++) order[t] = t;
    sort_runner = r;
    qsort(order, (size_t)r->n_trials, sizeof *order, compare_leaderboard);
    return order;
}

static void csv_field(FILE *f, const char *text) {
    if (!strpbrk(text, ",\"\n")) {
        fputs(text, f);
        return;
    }
    fputc('"', f);
    for (const char *p = text; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

static void write_csv_row(const runner *r, FILE *f, int rank, int t, const char *status) {
    int b = r->bracket_of[t], last = last_done_rung(r, t);
    const st_hb_bracket *br = &r->plan.brackets[b];
    char metric[40] = "", flow[2048];
    if (last >= 0) {
        if (isnan(eval_at(r, t, last)->metric))
            snprintf(metric, sizeof metric, "nan");
        else {
            st_ynode *number = st_ynode_new_number(eval_at(r, t, last)->metric); /* shortest exact text */
            snprintf(metric, sizeof metric, "%s", number->value);
            st_ynode_free(number);
        }
    }
    fprintf(f, "%d,%d,%d,%d,%d,%d,%d,%s,%s,%llu", rank, t, b, br->s, br->iteration, last,
            last >= 0 ? br->rungs[last].r : 0, metric, status, (unsigned long long)r->seeds[t]);
    for (int p = 0; p < r->params[t]->n; p++) {
        fputc(',', f);
        csv_field(f, st_ynode_flow(r->params[t]->items[p], flow, sizeof flow));
    }
    fputc('\n', f);
}

/* A trial's finished evaluations, as [{"rung", "epochs", metric_key: value}]. */
static json_t *trial_history(const runner *r, int t, const char *metric_key) {
    const st_hb_bracket *br = &r->plan.brackets[r->bracket_of[t]];
    json_t *history = json_array();
    for (int i = 0; i < br->n_rungs; i++) {
        const evaluation *e = eval_at(r, t, i);
        if (!e->done) continue;
        json_t *item =
            json_pack("{s:i, s:i, s:o}", "rung", i, "epochs", br->rungs[i].r, metric_key, st_json_number(e->metric));
        if (e->ranks > 1) json_object_set_new(item, "ranks", json_integer(e->ranks));
        json_array_append_new(history, item);
    }
    return history;
}

static json_t *json_row(const runner *r, int rank, int t, const char *status) {
    int b = r->bracket_of[t], last = last_done_rung(r, t);
    const st_hb_bracket *br = &r->plan.brackets[b];
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:s, s:I, s:o, s:o}", "rank", rank, "trial", t,
                     "bracket", b, "s", br->s, "iteration", br->iteration, "rung", last, "epochs",
                     last >= 0 ? br->rungs[last].r : 0, "metric",
                     st_json_number(last >= 0 ? eval_at(r, t, last)->metric : NAN), "status", status, "seed",
                     (json_int_t)r->seeds[t], "params", st_ynode_to_json(r->params[t]), "history",
                     trial_history(r, t, "metric"));
}

static int write_leaderboard(const runner *r) {
    char csv_path[4200], json_path[4200], csv_tmp[4300];
    snprintf(csv_path, sizeof csv_path, "%s/trials.csv", r->dir);
    snprintf(json_path, sizeof json_path, "%s/trials.jsonl", r->dir);
    FILE *csv = st_atomic_open(csv_path, csv_tmp, sizeof csv_tmp);
    if (!csv) return -1;
    fputs("rank,trial,bracket,s,iteration,rung,epochs,metric,status,seed", csv);
    for (int p = 0; p < r->sc->n_params; p++) {
        fputc(',', csv);
        csv_field(csv, r->sc->params[p].key);
    }
    fputc('\n', csv);
    int *order = leaderboard_order(r);
    const char **status = ST_MALLOC((size_t)r->n_trials * sizeof *status);
    trial_statuses(r, status);
    json_t *rows = json_array();
    for (int k = 0; k < r->n_trials; k++) {
        write_csv_row(r, csv, k + 1, order[k], status[order[k]]);
        json_array_append_new(rows, json_row(r, k + 1, order[k], status[order[k]]));
    }
    free(status);
    free(order);
    if (st_atomic_commit(csv, csv_tmp, csv_path)) {
        json_decref(rows);
        return -1;
    }
    return write_json_file(json_path, rows, 1);
}

static int write_trial_metrics(const runner *r, int t) {
    char dir[4200], path[4300];
    trial_dir_of(r, t, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    return write_json_file(path, trial_history(r, t, r->sc->metric), 1);
}

/* best.yaml: the leader's config, ready to train from scratch to max_resource. */
static int write_best(const runner *r, int *best_trial) {
    int *order = leaderboard_order(r);
    int best = order[0];
    free(order);
    *best_trial = -1;
    if (last_done_rung(r, best) < 0) return 0;
    st_train_config cfg;
    if (st_sweep_trial_config(r->sc, r->params[best], r->seeds[best], NULL, &cfg)) return -1;
    replace_string(&cfg.output.name, "best");
    char path[4200];
    snprintf(path, sizeof path, "%s/best.yaml", r->dir);
    int rc = st_config_write_yaml(&cfg, path);
    st_config_free(&cfg);
    *best_trial = best;
    return rc;
}

static int write_plot(const runner *r) {
    st_plot_series *series = ST_CALLOC((size_t)r->n_trials, sizeof *series);
    double *xs = ST_CALLOC((size_t)r->n_trials * (size_t)r->max_rungs, sizeof *xs);
    double *ys = ST_CALLOC((size_t)r->n_trials * (size_t)r->max_rungs, sizeof *ys);
    int n_series = 0;
    for (int t = 0; t < r->n_trials; t++) {
        const st_hb_bracket *br = &r->plan.brackets[r->bracket_of[t]];
        st_plot_series *s = &series[n_series];
        s->x = xs + (size_t)t * r->max_rungs;
        s->y = ys + (size_t)t * r->max_rungs;
        for (int i = 0; i < br->n_rungs; i++)
            if (eval_at(r, t, i)->done) {
                xs[(size_t)t * r->max_rungs + s->n] = br->rungs[i].r;
                ys[(size_t)t * r->max_rungs + s->n] = eval_at(r, t, i)->metric;
                s->n++;
            }
        s->color = r->plan.s_max - br->s; /* one colour per bracket s */
        if (s->n) n_series++;
    }
    char **legend = ST_CALLOC((size_t)r->plan.s_max + 1, sizeof *legend);
    for (int k = 0; k <= r->plan.s_max; k++) {
        legend[k] = ST_MALLOC(32);
        snprintf(legend[k], 32, "bracket s=%d", r->plan.s_max - k);
    }
    char path[4200], title[512];
    snprintf(path, sizeof path, "%s/curves.png", r->dir);
    snprintf(title, sizeof title, "%s per trial (Hyperband, eta=%d)", r->sc->metric, r->plan.config.eta);
    st_plot_options opt = {.title = title,
                           .x_label = "epochs",
                           .y_label = r->sc->metric,
                           .log_x = r->plan.s_max > 0,
                           .legend = (const char *const *)legend,
                           .n_legend = r->plan.s_max + 1};
    int rc = st_plot_png(path, series, n_series, &opt);
    for (int k = 0; k <= r->plan.s_max; k++) free(legend[k]);
    free(legend);
    free(series);
    free(xs);
    free(ys);
    return rc;
}

static int write_plan_json(const runner *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/plan.json", r->dir);
    const st_hyperband_config *c = &r->plan.config;
    json_t *brackets = json_array();
    for (int b = 0; b < r->plan.n_brackets; b++) {
        const st_hb_bracket *br = &r->plan.brackets[b];
        json_array_append_new(brackets, json_pack("{s:i, s:i, s:i, s:o}", "s", br->s, "iteration", br->iteration,
                                                  "first_trial", br->first_trial, "rungs", plan_rungs(br)));
    }
    json_t *plan = json_pack("{s:i, s:i, s:i, s:i, s:i, s:s, s:i, s:I, s:I, s:o}", "s_max", r->plan.s_max, "eta",
                             c->eta, "max_resource", c->max_resource, "min_resource", c->min_resource, "iterations",
                             c->iterations, "rounding", rounding_names[c->rounding], "n_trials", r->n_trials,
                             "epochs_continued", (json_int_t)st_hb_total_epochs(&r->plan, 1), "epochs_from_scratch",
                             (json_int_t)st_hb_total_epochs(&r->plan, 0), "brackets", brackets);
    return write_json_file(path, plan, 0);
}

static int write_derived(const runner *r, int *best_trial) {
    if (write_leaderboard(r) || write_best(r, best_trial)) return -1;
    return 0;
}

/* Delete the checkpoints (*.h5) of a trial's run folder; their count and bytes add to *files
 * and *bytes. A folder that does not exist (the trial never trained) has none. */
static int remove_checkpoints(const char *run_dir, int *files, long long *bytes) {
    DIR *d = opendir(run_dir);
    if (!d) return errno == ENOENT ? 0 : st_error_set("%s: cannot list: %s", run_dir, strerror(errno));
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".h5") != 0) continue;
        char path[4400];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", run_dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (unlink(path) != 0) {
            rc = st_error_set("%s: cannot remove: %s", path, strerror(errno));
            break;
        }
        (*files)++;
        if (st.st_nlink == 1) *bytes += (long long)st.st_size; /* best.h5 may be a hard link to a ckpt */
    }
    closedir(d);
    return rc;
}

/* Stopped trials never train again: without keep_checkpoints their checkpoints go as soon as a
 * rung stops them (and again on --resume, for a kill in between); metrics and configs stay. */
static int prune_stopped(const runner *r) {
    if (r->sc->keep_checkpoints) return 0;
    const char **status = ST_MALLOC((size_t)r->n_trials * sizeof *status);
    trial_statuses(r, status);
    int rc = 0;
    for (int t = 0; t < r->n_trials && rc == 0; t++) {
        if (strcmp(status[t], "stopped") != 0) continue;
        char dir[4200], run_dir[4300];
        int files = 0;
        long long bytes = 0;
        trial_dir_of(r, t, dir, sizeof dir);
        snprintf(run_dir, sizeof run_dir, "%s/checkpoints", dir);
        rc = remove_checkpoints(run_dir, &files, &bytes);
        if (files && r->progress)
            fprintf(r->progress,
                    "%s    trial %04d stopped: removed %d checkpoint file(s), %.1f MB (keep_checkpoints: false)\n",
                    r->tag, t, files, (double)bytes / 1e6);
    }
    free(status);
    return rc;
}

/* ---- the runner: running ---------------------------------------------------------------------------- */

static const char *params_text(const st_ynode *params, char *buf, size_t size) {
    char flow[1024];
    buf[0] = '\0';
    for (int p = 0; p < params->n; p++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s=%s", p ? " " : "", params->keys[p]->value,
                 st_ynode_flow(params->items[p], flow, sizeof flow));
    }
    return buf;
}

static int runner_init(runner *r, const st_sweep_config *sc, const char *dir, const st_sweep_run_options *opt) {
    memset(r, 0, sizeof *r);
    r->sc = sc;
    r->dir = dir;
    r->progress = opt->progress;
    r->pid = (long)getpid();
    st_lock_host(r->host, sizeof r->host);
    if (opt->worker) snprintf(r->tag, sizeof r->tag, "[%.200s:%ld] ", r->host, r->pid);
    r->requeues = json_array();
    if (st_hyperband_plan(&sc->hyperband, &r->plan)) return -1;
    r->n_trials = r->plan.n_trials;
    r->max_rungs = r->plan.s_max + 1;
    r->evals = ST_CALLOC((size_t)r->n_trials * (size_t)r->max_rungs, sizeof *r->evals);
    r->bracket_of = ST_CALLOC((size_t)r->n_trials, sizeof *r->bracket_of);
    r->params = ST_CALLOC((size_t)r->n_trials, sizeof *r->params);
    r->seeds = ST_CALLOC((size_t)r->n_trials, sizeof *r->seeds);
    r->scratch = ST_CALLOC((size_t)r->n_trials, sizeof *r->scratch);
    r->claims = ST_CALLOC((size_t)r->n_trials, sizeof *r->claims);
    for (int b = 0; b < r->plan.n_brackets; b++)
        for (int k = 0; k < r->plan.brackets[b].rungs[0].n; k++) r->bracket_of[r->plan.brackets[b].first_trial + k] = b;
    for (int t = 0; t < r->n_trials; t++) r->params[t] = st_sweep_sample(sc, t, &r->seeds[t]);
    return st_sweep_check_trials(sc, r->n_trials, 1); /* before the first epoch is spent */
}

static void runner_free(runner *r) {
    for (int t = 0; t < r->n_trials && r->params; t++) st_ynode_free(r->params[t]);
    free(r->params);
    free(r->evals);
    free(r->bracket_of);
    free(r->seeds);
    free(r->scratch);
    free(r->claims);
    json_decref(r->requeues);
    st_hb_plan_free(&r->plan);
}

/* ---- the runner: the queue ------------------------------------------------------------------------- */

/* The queue lock, held for one read-modify-write of state.json and the files derived from it:
 * the fd to close, or -1. It blocks: holders never wait for anything while they hold it. */
static int lock_queue(const runner *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/queue.lock", r->dir);
    return st_flock_file(path, 1);
}

/* Trial t's lock, held by the worker training it: the fd, 0 when another process holds it. */
static int lock_trial(const runner *r, int t) {
    char dir[4200], path[4300];
    trial_dir_of(r, t, dir, sizeof dir);
    if (st_mkdirs(dir)) return -1;
    snprintf(path, sizeof path, "%s/worker.lock", dir);
    return st_flock_file(path, 0);
}

static void set_claim(const runner *r, claim *c, task tk) {
    *c = (claim){tk.trial, tk.rung, r->pid, "", ""};
    snprintf(c->host, sizeof c->host, "%s", r->host);
    st_lock_timestamp(c->since, sizeof c->since);
}

/* Our claim on tk, or -1 (another worker took it over, believing us dead). */
static int own_claim(const runner *r, task tk) {
    int c = claim_of(r, tk.trial, tk.rung);
    return c >= 0 && r->claims[c].pid == r->pid && !strcmp(r->claims[c].host, r->host) ? c : -1;
}

static void remove_claim(runner *r, int c) { r->claims[c] = r->claims[--r->n_claims]; }

/* Claim c was left by a worker that died (its trial lock was free): logged, and ours now. */
static void take_over_claim(runner *r, int c) {
    claim *k = &r->claims[c];
    char now[32];
    st_lock_timestamp(now, sizeof now);
    int epochs = r->plan.brackets[r->bracket_of[k->trial]].rungs[k->rung].r;
    json_array_append_new(r->requeues,
                          json_pack("{s:i, s:i, s:i, s:I, s:s, s:s, s:s, s:I, s:s}", "trial", k->trial, "rung", k->rung,
                                    "epochs", epochs, "pid", (json_int_t)k->pid, "host", k->host, "since", k->since,
                                    "at", now, "by_pid", (json_int_t)r->pid, "by_host", r->host));
    if (r->progress)
        fprintf(r->progress,
                "%s  trial %04d rung %d: re-queued: pid %ld on host %s, training it since %s, is gone; the trial "
                "continues from its last checkpoint\n",
                r->tag, k->trial, k->rung, k->pid, k->host, k->since);
    set_claim(r, k, (task){k->trial, k->rung});
}

/* The claim is in state.json: the trial lock fd is the caller's. A taken-over trial's run
 * folder still holds the dead trainer's lock, which the trainer would refuse when it was
 * written on another host: our trial lock proves its writer gone. */
static int commit_claim(runner *r, task tk, int fd, int requeued, int *trial_fd) {
    char dir[4200], run_dir[4300];
    trial_dir_of(r, tk.trial, dir, sizeof dir);
    snprintf(run_dir, sizeof run_dir, "%s/checkpoints", dir);
    if (save_state(r) || (requeued && st_lock_clear(run_dir))) {
        close(fd);
        return -1;
    }
    *trial_fd = fd;
    return 1;
}

/* Under the queue lock, state.json just read: the evaluation this worker trains next, with its
 * trial lock in *trial_fd: a dead worker's claim first (a re-queue), else the next free one.
 * 1 with a task; 0 when none is free now (*finished: none is left at all); -1 on an error. */
static int take_task(runner *r, task *out, int *trial_fd, int *finished) {
    *finished = 0;
    for (int c = 0; c < r->n_claims; c++) {
        int fd = lock_trial(r, r->claims[c].trial);
        if (fd < 0) return -1;
        if (fd == 0) continue; /* its worker is alive */
        *out = (task){r->claims[c].trial, r->claims[c].rung};
        take_over_claim(r, c);
        return commit_claim(r, *out, fd, 1, trial_fd);
    }
    if (!next_task(r, out)) {
        *finished = r->n_claims == 0;
        return 0;
    }
    int fd = lock_trial(r, out->trial);
    if (fd <= 0)
        return fd < 0 ? -1
                      : st_error_set("%s/trials/%04d/worker.lock: held by a process that state.json does not name "
                                     "(HINT: is another simtune training this trial by hand?)",
                                     r->dir, out->trial);
    set_claim(r, &r->claims[r->n_claims++], *out);
    return commit_claim(r, *out, fd, 0, trial_fd);
}

/* ---- the runner: rank groups (sweep.h "Rank groups") ------------------------------------------- */

/* What a group's leader sends its members before each evaluation, and once at the end. */
typedef struct {
    int32_t train;         /* 1: train with the arguments that follow; 0: stop */
    int32_t epochs_target; /* train */
    int32_t rc;            /* stop: the leader's result, 0 or -1 */
    uint64_t config_bytes, dir_bytes; /* train: the config's YAML text and trial_dir, NULs included */
} group_order;

/* Leader: the trial function's arguments to the members, who call it with them. The order is
 * an idle broadcast: members wait for it as long as the queue keeps their leader waiting. */
static int send_trial(const st_train_config *cfg, const char *trial_dir, int epochs_target) {
    char *text = st_config_yaml_text(cfg);
    if (!text) return -1;
    group_order o = {.train = 1, .epochs_target = epochs_target, .config_bytes = strlen(text) + 1,
                     .dir_bytes = strlen(trial_dir) + 1};
    st_comm_broadcast_idle(&o, sizeof o, 0);
    st_comm_broadcast(text, o.config_bytes, 0);
    st_comm_broadcast((void *)trial_dir, o.dir_bytes, 0);
    free(text);
    return 0;
}

static void stop_members(int rc) {
    group_order o = {.train = 0, .rc = rc};
    st_comm_broadcast_idle(&o, sizeof o, 0);
}

/* A member's train config from the leader's YAML text: the same text, so the trainer's config
 * hash agrees across the group. */
static void read_trial_config(const char *text, st_train_config *cfg) {
    st_ynode *tree = st_yaml_load_string(text, "the group leader's trial config");
    int rc = tree ? st_config_from_tree(tree, cfg) : -1;
    st_ynode_free(tree);
    ST_CHECK(rc == 0, "sweep: the group leader's trial config does not read back: %s", st_error_get());
}

/* Member: train what the leader sends until it says stop; its result is the leader's. A failed
 * evaluation fails on the leader too (the trainer agrees on errors across the group), which then
 * reports it and sends stop, so the member's own result is not needed. */
static int follow_leader(st_trial_fn fn, void *user) {
    for (;;) {
        group_order o;
        st_comm_broadcast_idle(&o, sizeof o, 0);
        if (!o.train)
            return o.rc == 0 ? 0
                             : st_error_set("rank 0 of this rank's group ended the sweep with an error (its message "
                                            "says why)");
        char *text = ST_MALLOC(o.config_bytes), *trial_dir = ST_MALLOC(o.dir_bytes);
        st_comm_broadcast(text, o.config_bytes, 0);
        st_comm_broadcast(trial_dir, o.dir_bytes, 0);
        st_train_config cfg;
        read_trial_config(text, &cfg);
        double metric;
        fn(&cfg, trial_dir, o.epochs_target, &metric, user);
        st_config_free(&cfg);
        free(text);
        free(trial_dir);
    }
}

static int train_task(const runner *r, task tk, st_trial_fn fn, void *user, double *metric) {
    const st_hb_bracket *br = &r->plan.brackets[r->bracket_of[tk.trial]];
    char dir[4200], path[4300];
    trial_dir_of(r, tk.trial, dir, sizeof dir);
    st_train_config cfg;
    if (st_sweep_trial_config(r->sc, r->params[tk.trial], r->seeds[tk.trial], dir, &cfg)) return -1;
    if (r->progress) {
        char ranks[48] = "";
        if (st_comm_size() > 1) snprintf(ranks, sizeof ranks, " on %d ranks", st_comm_size());
        fprintf(r->progress, "%s  trial %04d: bracket %d rung %d/%d, training to %d epochs%s\n", r->tag, tk.trial,
                r->bracket_of[tk.trial] + 1, tk.rung + 1, br->n_rungs, br->rungs[tk.rung].r, ranks);
        fflush(r->progress);
    }
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    *metric = NAN;
    int rc = file_exists(path) ? 0 : st_config_write_yaml(&cfg, path);
    if (rc == 0 && st_comm_size() > 1) rc = send_trial(&cfg, dir, br->rungs[tk.rung].r);
    if (rc == 0) rc = fn(&cfg, dir, br->rungs[tk.rung].r, metric, user);
    st_config_free(&cfg);
    if (rc != 0) {
        char label[64];
        snprintf(label, sizeof label, "trial %d", tk.trial);
        return wrap_error("%s: %s (HINT: fix the cause, then simtune sweep --resume the sweep folder)", label);
    }
    return 0;
}

static void report_result(const runner *r, task tk, double metric) {
    int b = r->bracket_of[tk.trial];
    const st_hb_bracket *br = &r->plan.brackets[b];
    char value[40], params[2048];
    fprintf(r->progress, "%s    trial %04d  %4d epochs  %s = %-10s %s\n", r->tag, tk.trial, br->rungs[tk.rung].r,
            r->sc->metric, metric_text(metric, value, sizeof value), params_text(r->params[tk.trial], params, sizeof params));
    if (r->sc->scheduler == ST_SWEEP_HYPERBAND && tk.rung + 1 < br->n_rungs) {
        int n = alive_at(r, b, tk.rung, r->scratch), done = 0;
        for (int k = 0; k < n; k++) done += eval_at(r, r->scratch[k], tk.rung)->done;
        if (n > 0 && done == n)
            fprintf(r->progress, "%s  bracket %d rung %d/%d done: %d of %d trials continue\n", r->tag, b + 1,
                    tk.rung + 1, br->n_rungs, br->rungs[tk.rung + 1].n, n);
    }
    fflush(r->progress);
}

/* Under the queue lock: the result into state.json (unless a worker that took our claim over,
 * believing us dead, recorded it first: training is deterministic, so it is the same), our
 * claim out, then the derived files. */
static int record_result(runner *r, task tk, double metric) {
    if (load_state(r)) return -1;
    int c = own_claim(r, tk), fresh = !eval_at(r, tk.trial, tk.rung)->done;
    if (c >= 0) remove_claim(r, c);
    if (fresh) *eval_at(r, tk.trial, tk.rung) = (evaluation){1, metric, st_comm_size()};
    int best;
    if (save_state(r) || write_trial_metrics(r, tk.trial) || write_derived(r, &best) || prune_stopped(r) ||
        write_plot(r))
        return -1;
    if (fresh && r->progress) report_result(r, tk, metric);
    return 0;
}

/* Under the queue lock, after a failed evaluation: our claim out, so that any worker (or a
 * --resume) takes the evaluation again; the failure's message is kept. */
static void drop_claim(runner *r, task tk) {
    char msg[3000];
    snprintf(msg, sizeof msg, "%s", st_error_get());
    if (load_state(r) == 0) {
        int c = own_claim(r, tk);
        if (c >= 0) remove_claim(r, c);
        save_state(r);
    }
    st_error_set("%s", msg);
}

/* Nothing free while other workers train what the next rungs wait for: poll state.json, at
 * most once a second (a shared file system gives no cheaper notice across machines). */
static void idle(const runner *r, int *delay_ms) {
    if (*delay_ms == 0 && r->progress) {
        fprintf(r->progress, "%s  waiting: %d evaluation(s) being trained by other workers\n", r->tag, r->n_claims);
        fflush(r->progress);
    }
    *delay_ms = *delay_ms ? (*delay_ms * 2 > 1000 ? 1000 : *delay_ms * 2) : 50;
    struct timespec pause = {*delay_ms / 1000, (long)(*delay_ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* One worker's loop: take, train (without the queue lock), record; until nothing is left. */
static int work(runner *r, st_trial_fn fn, void *user) {
    for (int delay_ms = 0;;) {
        task tk;
        int trial_fd = 0, finished = 0, q = lock_queue(r);
        if (q < 0) return -1;
        int got = load_state(r) ? -1 : take_task(r, &tk, &trial_fd, &finished);
        close(q);
        if (got < 0) return -1;
        if (finished) return 0;
        if (got == 0) {
            idle(r, &delay_ms);
            continue;
        }
        delay_ms = 0;
        double metric;
        int rc = train_task(r, tk, fn, user, &metric);
        q = lock_queue(r);
        if (q >= 0 && rc == 0) rc = record_result(r, tk, metric);
        if (q >= 0 && rc != 0) drop_claim(r, tk);
        close(trial_fd); /* after state.json no longer names the claim, before the queue is free */
        if (q < 0) return -1;
        close(q);
        if (rc != 0) return -1;
    }
}

/* ---- the runner: who works on the folder --------------------------------------------------------- */

/* A worker's presence, DIR/workers/HOST.PID.lock, flocked (named) for the worker's life. */
static int register_worker(const runner *r, char *path, size_t size) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/workers", r->dir);
    if (st_mkdirs(dir)) return -1;
    snprintf(path, size, "%s/%s.%ld.lock", dir, r->host, r->pid);
    int fd = st_flock_file_named(path);
    return fd == 0 ? st_error_set("%s: held by another process", path) : fd;
}

/* A single process refuses a folder that live workers work on; dead workers' files go. */
static int refuse_live_workers(const runner *r) {
    char dir[4200], names[2048] = "";
    snprintf(dir, sizeof dir, "%s/workers", r->dir);
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : st_error_set("%s: cannot list: %s", dir, strerror(errno));
    int live = 0, rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        char path[4500], who[600];
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = st_flock_file(path, 0);
        if (fd > 0) unlink(path); /* its worker is gone */
        if (fd != 0) {
            rc = fd < 0 ? -1 : 0;
            if (fd > 0) close(fd);
            continue;
        }
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (rfd >= 0) {
            st_flock_holder(rfd, who, sizeof who);
            close(rfd);
        } else {
            snprintf(who, sizeof who, "a worker (%s)", e->d_name);
        }
        size_t used = strlen(names);
        if (used + strlen(who) + 3 < sizeof names) snprintf(names + used, sizeof names - used, "%s%s", live ? "; " : "", who);
        live++;
    }
    closedir(d);
    if (rc == 0 && live)
        rc = st_error_set("%s is worked on by %d worker(s): %s (HINT: join them with simtune sweep --worker %s, or "
                          "wait until they finish)",
                          r->dir, live, names, r->dir);
    return rc;
}

/* A worker refuses a folder that a single process holds (its .lock, train/lock.h). */
static int refuse_single_process(const runner *r) {
    if (st_lock_probe(r->dir) == 0) return 0;
    char msg[3000];
    snprintf(msg, sizeof msg, "%s", st_error_get());
    return st_error_set("%s (a single process runs this sweep: workers cannot join it; wait for it to finish, or "
                        "stop it and start the workers)",
                        msg);
}

/* Trial t's train config, as sweep sc makes it: 1 when a and b make the same. */
static int same_trial(const st_sweep_config *a, const st_ynode *a_params, uint64_t a_seed, const st_sweep_config *b,
                      const st_ynode *b_params, uint64_t b_seed) {
    st_train_config ca, cb;
    if (st_sweep_trial_config(a, a_params, a_seed, NULL, &ca)) return 0;
    int same = 0;
    if (st_sweep_trial_config(b, b_params, b_seed, NULL, &cb) == 0) {
        same = st_config_equal(&ca, &cb);
        st_config_free(&cb);
    }
    st_config_free(&ca);
    return same;
}

/* What differs between the sweep dir holds and ours into buf ("" when nothing). */
static void sweep_difference(const runner *r, const st_sweep_config *held, char *buf, size_t size) {
    const st_hyperband_config *a = &held->hyperband, *b = &r->sc->hyperband;
    const char *what = NULL;
    if (a->max_resource != b->max_resource || a->min_resource != b->min_resource || a->eta != b->eta ||
        a->iterations != b->iterations || a->rounding != b->rounding)
        what = "hyperband";
    else if (held->scheduler != r->sc->scheduler)
        what = "scheduler";
    else if (strcmp(held->metric, r->sc->metric) || held->maximize != r->sc->maximize)
        what = "metric";
    else if (held->keep_checkpoints != r->sc->keep_checkpoints)
        what = "keep_checkpoints";
    snprintf(buf, size, "%s", what ? what : "");
    for (int t = 0; t < r->n_trials && !buf[0]; t++) {
        uint64_t seed;
        st_ynode *params = st_sweep_sample(held, t, &seed);
        if (!same_trial(held, params, seed, r->sc, r->params[t], r->seeds[t]))
            snprintf(buf, size, "trial %d's train config", t);
        st_ynode_free(params);
    }
}

/* A worker started with --config joins a folder that holds a sweep only when it is the same
 * one: scheduler, plan, metric, and trial by trial the train config. */
static int check_same_sweep(const runner *r) {
    st_sweep_config held;
    if (st_sweep_load_dir(r->dir, &held)) return -1;
    char what[128];
    sweep_difference(r, &held, what, sizeof what);
    st_sweep_free(&held);
    if (!what[0]) return 0;
    return st_error_set("%s holds a different sweep: its %s differs from %s's (HINT: join it as it is with simtune "
                        "sweep --worker %s, or set dir to a new folder)",
                        r->dir, what, r->sc->path, r->dir);
}

static int start_folder(runner *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/sweep.yaml", r->dir);
    if (file_exists(path))
        return st_error_set("%s: already holds a sweep (HINT: --resume %s to continue it, or set dir to a new folder)",
                            r->dir, r->dir);
    if (st_mkdirs(r->dir) || write_plan_json(r) || save_state(r)) return -1;
    return st_sweep_write(r->sc, r->dir); /* last: its presence marks a complete start */
}

/* Under the queue lock: a new folder, or the sweep it holds (resumed, or joined by a worker). */
static int open_folder(runner *r, const st_sweep_run_options *opt) {
    char path[4200];
    snprintf(path, sizeof path, "%s/sweep.yaml", r->dir);
    if (opt->resume) return load_state(r) || write_plan_json(r) ? -1 : 0;
    if (opt->worker && file_exists(path)) return check_same_sweep(r) || load_state(r) ? -1 : 0;
    return start_folder(r);
}

/* A single process owns the folder (its .lock) for its whole run and refuses live workers; a
 * worker refuses a single process and registers. Both under the queue lock, so that neither
 * can slip in between the other's check and its hold. *presence: the worker's file, or 0. */
static int enter_folder(runner *r, const st_sweep_run_options *opt, st_lock *own, int *presence, char *presence_path,
                        size_t size) {
    if (st_mkdirs(r->dir) || (!opt->worker && st_lock_acquire(r->dir, own))) return -1;
    int q = lock_queue(r);
    if (q < 0) return -1;
    int rc = opt->worker ? refuse_single_process(r) : refuse_live_workers(r);
    if (rc == 0 && opt->worker) {
        *presence = register_worker(r, presence_path, size);
        rc = *presence < 0 ? -1 : 0;
    }
    if (rc == 0) rc = open_folder(r, opt);
    int best;
    if (rc == 0) rc = write_derived(r, &best); /* derived files may be one evaluation behind after a kill */
    close(q);
    return rc;
}

static void print_requeues(const runner *r) {
    size_t n = json_array_size(r->requeues);
    if (n == 0) return;
    fprintf(r->progress, "\nre-queued: %zu evaluation(s) whose worker died; each continued from its trial's last "
                         "checkpoint:\n",
            n);
    for (size_t k = 0; k < n; k++) {
        const json_t *q = json_array_get(r->requeues, k);
        fprintf(r->progress, "  trial %04d rung %d (%d epochs): pid %lld on host %s (since %s), taken over at %s by "
                             "pid %lld on host %s\n",
                (int)json_integer_value(json_object_get(q, "trial")), (int)json_integer_value(json_object_get(q, "rung")),
                (int)json_integer_value(json_object_get(q, "epochs")),
                (long long)json_integer_value(json_object_get(q, "pid")), json_string_value(json_object_get(q, "host")),
                json_string_value(json_object_get(q, "since")), json_string_value(json_object_get(q, "at")),
                (long long)json_integer_value(json_object_get(q, "by_pid")),
                json_string_value(json_object_get(q, "by_host")));
    }
}

/* Epochs trained, promoted trials continued: each trial's epochs at its last rung (the plan's
 * total for hyperband; asha may promote more). */
static long long trained_epochs(const runner *r) {
    long long total = 0;
    for (int t = 0; t < r->n_trials; t++) {
        int last = last_done_rung(r, t);
        if (last >= 0) total += r->plan.brackets[r->bracket_of[t]].rungs[last].r;
    }
    return total;
}

static void print_summary(const runner *r, int best) {
    FILE *out = r->progress;
    char value[40], params[2048];
    fprintf(out, "\nsweep finished: %d trials, %lld epochs trained (continued), %d brackets\n", r->n_trials,
            trained_epochs(r), r->plan.n_brackets);
    fprintf(out, "%-8s %3s %6s %6s %7s  %-10s\n", "bracket", "s", "trials", "best", "epochs", r->sc->metric);
    for (int b = 0; b < r->plan.n_brackets; b++) {
        const st_hb_bracket *br = &r->plan.brackets[b];
        int leader = -1, last = br->n_rungs - 1;
        for (int k = 0; k < br->rungs[0].n; k++) {
            int t = br->first_trial + k;
            if (eval_at(r, t, last)->done &&
                (leader < 0 ||
                 st_hb_better(eval_at(r, t, last)->metric, eval_at(r, leader, last)->metric, r->sc->maximize)))
                leader = t;
        }
        if (leader < 0) continue;
        fprintf(out, "%-8d %3d %6d %6d %7d  %-10s\n", b + 1, br->s, br->rungs[0].n, leader, br->rungs[last].r,
                metric_text(eval_at(r, leader, last)->metric, value, sizeof value));
    }
    int *order = leaderboard_order(r);
    fprintf(out, "\ntop trials:\n%4s %6s %7s %-10s %s\n", "rank", "trial", "epochs", r->sc->metric, "parameters");
    for (int k = 0; k < r->n_trials && k < 10; k++) {
        int t = order[k], last = last_done_rung(r, t);
        if (last < 0) break;
        fprintf(out, "%4d %6d %7d %-10s %s\n", k + 1, t, r->plan.brackets[r->bracket_of[t]].rungs[last].r,
                metric_text(eval_at(r, t, last)->metric, value, sizeof value),
                params_text(r->params[t], params, sizeof params));
    }
    free(order);
    print_requeues(r);
    if (best >= 0)
        fprintf(out,
                "\nbest: trial %d; ready-to-train config: %s/best.yaml\nleaderboard: %s/trials.csv, curves: "
                "%s/curves.png\n",
                best, r->dir, r->dir, r->dir);
}

/* The end, under the queue lock: the derived files from the final state (every worker writes
 * the same). */
static int finish(runner *r, int *best) {
    int q = lock_queue(r);
    if (q < 0) return -1;
    int rc = load_state(r) || write_derived(r, best) || write_plot(r) ? -1 : 0;
    close(q);
    return rc;
}

int st_sweep_run(const st_sweep_config *sc, const char *dir, const st_sweep_run_options *opt, st_trial_fn fn,
                 void *user) {
    if (st_comm_rank() > 0) return follow_leader(fn, user);
    runner r;
    st_lock own = {0};
    char presence_path[4500] = "";
    int presence = 0, best = -1;
    int rc = runner_init(&r, sc, dir, opt);
    if (rc == 0) rc = enter_folder(&r, opt, &own, &presence, presence_path, sizeof presence_path);
    if (rc == 0 && r.progress) {
        fprintf(r.progress, "sweep %s: %d brackets, %d trials, %lld epochs (continued); metric %s (%s); scheduler %s",
                dir, r.plan.n_brackets, r.n_trials, st_hb_total_epochs(&r.plan, 1), sc->metric,
                goal_names[sc->maximize], scheduler_names[sc->scheduler]);
        if (opt->worker) fprintf(r.progress, "; worker pid %ld on host %s", r.pid, r.host);
        fputc('\n', r.progress);
        fflush(r.progress);
    }
    if (rc == 0) rc = work(&r, fn, user);
    if (rc == 0) rc = finish(&r, &best);
    if (rc == 0 && r.progress && !opt->quiet_summary) print_summary(&r, best);
    if (presence > 0) {
        unlink(presence_path);
        close(presence);
    }
    st_lock_release(&own);
    runner_free(&r);
    if (st_comm_size() > 1) stop_members(rc);
    return rc;
}
