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
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/base/fileio.h"
#include "data/base/text.h"
#include "data/base/rng.h"
#include "data/base/json.h"
#include "../kernels/check.h"
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

int st_sweep_check_trials(const st_sweep_config *sc, int n_trials, int check_files) {
    for (int t = 0; t < n_trials; t++) {
        uint64_t seed;
        st_ynode *params = st_sweep_sample(sc, t, &seed);
        st_train_config cfg;
        int rc = st_sweep_trial_config(sc, params, seed, NULL, &cfg), files_rc = 0;
        if (rc == 0) {
            if (check_files) files_rc = st_config_check_files(&cfg);
            st_config_free(&cfg);
        }
        if (rc != 0 || files_rc != 0) {
            char label[2100], flow[2048];
            snprintf(label, sizeof label, "trial %d (%s)", t, st_ynode_flow(params, flow, sizeof flow));
            st_ynode_free(params);
            return wrap_error(rc ? "%s: these parameters do not make a valid config together: %s"
                                 : "%s: an input file of this trial is missing: %s",
                              label);
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
} evaluation;

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
            json_array_append_new(evals, json_pack("{s:i, s:i, s:i, s:o}", "trial", t, "rung", i, "epochs",
                                                   br->rungs[i].r, "metric", st_json_number(e->metric)));
        }
    return write_json_file(path, json_pack("{s:i, s:i, s:o}", "version", 1, "n_trials", r->n_trials, "evaluations", evals),
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
    long long t = 0, i = 0, epochs = 0;
    const json_t *m = json_object_get(item, "metric");
    char where[64];
    snprintf(where, sizeof where, "evaluations[%d]", index);
    if (state_int(item, "trial", 0, r->n_trials - 1, &t)) return wrap_error("%s: %s", where);
    const st_hb_bracket *br = &r->plan.brackets[r->bracket_of[t]];
    if (state_int(item, "rung", 0, br->n_rungs - 1, &i) ||
        state_int(item, "epochs", br->rungs[i].r, br->rungs[i].r, &epochs))
        return wrap_error("%s: %s", where);
    if (!json_is_number(m) && !json_is_null(m)) return st_error_set("%s: metric: expected a number or null", where);
    *eval_at(r, (int)t, (int)i) = (evaluation){1, json_is_null(m) ? NAN : json_number_value(m)};
    return 0;
}

static int load_state(runner *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/state.json", r->dir);
    if (!file_exists(path)) return 0; /* killed before the first evaluation finished */
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (!root) return st_error_set("%s:%d:%d: %s", path, error.line, error.column, error.text);
    long long n = 0;
    int rc = state_int(root, "n_trials", r->n_trials, r->n_trials, &n);
    const json_t *list = json_object_get(root, "evaluations");
    if (rc == 0 && !json_is_array(list)) rc = st_error_set("evaluations: expected a list");
    for (size_t k = 0; rc == 0 && k < json_array_size(list); k++) rc = load_evaluation(r, json_array_get(list, k), (int)k);
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
static void trial_statuses(const runner *r, const char **status) {
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
    for (int i = 0; i < br->n_rungs; i++)
        if (eval_at(r, t, i)->done)
            json_array_append_new(history, json_pack("{s:i, s:i, s:o}", "rung", i, "epochs", br->rungs[i].r,
                                                     metric_key, st_json_number(eval_at(r, t, i)->metric)));
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
                    "    trial %04d stopped: removed %d checkpoint file(s), %.1f MB (keep_checkpoints: false)\n", t,
                    files, (double)bytes / 1e6);
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

static int runner_init(runner *r, const st_sweep_config *sc, const char *dir, FILE *progress) {
    memset(r, 0, sizeof *r);
    r->sc = sc;
    r->dir = dir;
    r->progress = progress;
    if (st_hyperband_plan(&sc->hyperband, &r->plan)) return -1;
    r->n_trials = r->plan.n_trials;
    r->max_rungs = r->plan.s_max + 1;
    r->evals = ST_CALLOC((size_t)r->n_trials * (size_t)r->max_rungs, sizeof *r->evals);
    r->bracket_of = ST_CALLOC((size_t)r->n_trials, sizeof *r->bracket_of);
    r->params = ST_CALLOC((size_t)r->n_trials, sizeof *r->params);
    r->seeds = ST_CALLOC((size_t)r->n_trials, sizeof *r->seeds);
    r->scratch = ST_CALLOC((size_t)r->n_trials, sizeof *r->scratch);
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
    st_hb_plan_free(&r->plan);
}

static int run_evaluation(runner *r, int t, int rung, st_trial_fn fn, void *user) {
    const st_hb_bracket *br = &r->plan.brackets[r->bracket_of[t]];
    char dir[4200], path[4300];
    trial_dir_of(r, t, dir, sizeof dir);
    if (st_mkdirs(dir)) return -1;
    st_train_config cfg;
    if (st_sweep_trial_config(r->sc, r->params[t], r->seeds[t], dir, &cfg)) return -1;
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    double metric = NAN;
    int rc = file_exists(path) ? 0 : st_config_write_yaml(&cfg, path);
    if (rc == 0) rc = fn(&cfg, dir, br->rungs[rung].r, &metric, user);
    st_config_free(&cfg);
    if (rc != 0) {
        char label[64];
        snprintf(label, sizeof label, "trial %d", t);
        return wrap_error("%s: %s (HINT: fix the cause, then simtune sweep --resume the sweep folder)", label);
    }
    *eval_at(r, t, rung) = (evaluation){1, metric};
    if (save_state(r) || write_trial_metrics(r, t)) return -1;
    int best;
    if (write_derived(r, &best)) return -1;
    if (r->progress) {
        char value[40], params[2048];
        fprintf(r->progress, "    trial %04d  %4d epochs  %s = %-10s %s\n", t, br->rungs[rung].r, r->sc->metric,
                metric_text(metric, value, sizeof value), params_text(r->params[t], params, sizeof params));
        fflush(r->progress);
    }
    return 0;
}

static int run_bracket(runner *r, int b, st_trial_fn fn, void *user) {
    const st_hb_bracket *br = &r->plan.brackets[b];
    if (r->progress)
        fprintf(r->progress, "bracket %d/%d (s=%d, iteration %d): %d trials, rungs of", b + 1, r->plan.n_brackets,
                br->s, br->iteration + 1, br->rungs[0].n);
    for (int i = 0; i < br->n_rungs && r->progress; i++) fprintf(r->progress, " %dx%d", br->rungs[i].n, br->rungs[i].r);
    if (r->progress) fprintf(r->progress, " (trials x epochs)\n");
    int *alive = ST_MALLOC((size_t)br->rungs[0].n * sizeof *alive);
    int rc = 0;
    for (int i = 0; i < br->n_rungs && rc == 0; i++) {
        int n = alive_at(r, b, i, alive), done = 0;
        ST_CHECK(n == br->rungs[i].n, "bracket %d rung %d: %d alive trials, plan says %d", b, i, n, br->rungs[i].n);
        for (int k = 0; k < n; k++) done += eval_at(r, alive[k], i)->done;
        if (r->progress) {
            fprintf(r->progress, "  rung %d/%d: %d trials to %d epochs", i + 1, br->n_rungs, n, br->rungs[i].r);
            if (done) fprintf(r->progress, " (%d finished earlier)", done);
            fputc('\n', r->progress);
        }
        for (int k = 0; k < n && rc == 0; k++)
            if (!eval_at(r, alive[k], i)->done) rc = run_evaluation(r, alive[k], i, fn, user);
        if (rc == 0 && r->progress && i + 1 < br->n_rungs)
            fprintf(r->progress, "  rung %d/%d done: %d of %d trials continue\n", i + 1, br->n_rungs,
                    br->rungs[i + 1].n, n);
        if (rc == 0) rc = prune_stopped(r);
        if (rc == 0) rc = write_plot(r);
    }
    free(alive);
    return rc;
}

static void print_summary(const runner *r, int best) {
    FILE *out = r->progress;
    char value[40], params[2048];
    fprintf(out, "\nsweep finished: %d trials, %lld epochs trained (continued), %d brackets\n", r->n_trials,
            st_hb_total_epochs(&r->plan, 1), r->plan.n_brackets);
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
    if (best >= 0)
        fprintf(out,
                "\nbest: trial %d; ready-to-train config: %s/best.yaml\nleaderboard: %s/trials.csv, curves: "
                "%s/curves.png\n",
                best, r->dir, r->dir, r->dir);
}

static int start_folder(const runner *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/sweep.yaml", r->dir);
    if (file_exists(path))
        return st_error_set("%s: already holds a sweep (HINT: --resume %s to continue it, or set dir to a new folder)",
                            r->dir, r->dir);
    if (st_mkdirs(r->dir) || write_plan_json(r) || save_state(r)) return -1;
    return st_sweep_write(r->sc, r->dir); /* last: its presence marks a complete start */
}

int st_sweep_run(const st_sweep_config *sc, const char *dir, const st_sweep_run_options *opt, st_trial_fn fn,
                 void *user) {
    runner r;
    st_lock lock = {0};
    int rc = runner_init(&r, sc, dir, opt->progress);
    /* locked before state.json is read: two processes on one folder would train the same trial */
    if (rc == 0) rc = st_mkdirs(dir) || st_lock_acquire(dir, &lock) ? -1 : 0;
    if (rc == 0) rc = opt->resume ? load_state(&r) : start_folder(&r);
    if (rc == 0 && opt->resume) rc = write_plan_json(&r);
    int best = -1;
    if (rc == 0) rc = write_derived(&r, &best); /* derived files may be one evaluation behind after a kill */
    if (rc == 0 && r.progress)
        fprintf(r.progress, "sweep %s: %d brackets, %d trials, %lld epochs (continued); metric %s (%s)\n", dir,
                r.plan.n_brackets, r.n_trials, st_hb_total_epochs(&r.plan, 1), sc->metric, goal_names[sc->maximize]);
    for (int b = 0; b < r.plan.n_brackets && rc == 0; b++) rc = run_bracket(&r, b, fn, user);
    if (rc == 0) rc = write_derived(&r, &best);
    if (rc == 0) rc = write_plot(&r);
    if (rc == 0 && r.progress) print_summary(&r, best);
    st_lock_release(&lock);
    runner_free(&r);
    return rc;
}
