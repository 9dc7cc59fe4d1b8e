/*
 * config.c: train config <-> YAML tree. One table per section lists every key with its type,
 * field offset and range; the same tables drive reading (with validation), writing, comparing
 * and freeing, so a key added to a table is parsed, written back and round-trip tested at once.
 * Cross-key rules (sampler vs batch size, loss vs sampler, phases vs datasets ...) follow the
 * tables in check_rules(). Contract in config.h, key reference in docs/config.md.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../infer/metrics.h"
#include "../kernels/check.h"

/* ---- key tables --------------------------------------------------------------------------- */

typedef enum {
    K_INT,      /* int, range lo..hi */
    K_U64,      /* uint64_t seed */
    K_FLOAT,    /* double, range lo..hi (LO_OPEN/HI_OPEN make a bound strict) */
    K_BOOL,     /* int 0/1 from true/false */
    K_STR,      /* char *, non-empty */
    K_OPTSTR,   /* char *, or NULL for null */
    K_PATH,     /* char *, NULL for null, resolved absolute against the source file */
    K_ENUM,     /* int index into choices (value_base added: preprocess auto = -1) */
    K_FLOAT2,   /* double[2], each in range, first <= second */
    K_MARGIN,   /* double at offset, or 'soft' -> int flag at offset2 */
    K_STRLIST,  /* char ** at offset, int count at offset2 */
    K_METRICS,  /* K_STRLIST whose items are validation metric names */
    K_SECTION,  /* nested mapping; sub-table offsets relative to base + offset */
    K_DATASETS, /* data.train */
    K_HOLDOUT,  /* st_class_holdout: a fraction, a list of class names, or null */
    K_PHASES    /* phases (read after everything else, they inherit top-level values) */
} key_type;

enum { LO_OPEN = 1, HI_OPEN = 2 };

typedef struct key_desc {
    const char *name;
    key_type type;
    size_t offset;
    size_t offset2;
    double lo, hi;
    unsigned flags;
    const char *const *choices; /* K_ENUM: NULL-terminated */
    int value_base;             /* K_ENUM: stored value = index + value_base */
    const struct key_desc *sub; /* K_SECTION: NULL-name-terminated */
} key_desc;

/* clang-format off: the key tables read as a reference, one key per line */
#define INF HUGE_VAL
#define F(key, kind, field, min, max, open) \
    {.name = key, .type = kind, .offset = offsetof(STRUCT, field), .lo = min, .hi = max, .flags = open}
#define E(key, field, names) {.name = key, .type = K_ENUM, .offset = offsetof(STRUCT, field), .choices = names}
#define PAIR(key, kind, field, field2) \
    {.name = key, .type = kind, .offset = offsetof(STRUCT, field), .offset2 = offsetof(STRUCT, field2)}
#define SUB(key, table) {.name = key, .type = K_SECTION, .sub = table}
#define END {.name = NULL}
#define SECTION(key, field, table) {.name = key, .type = K_SECTION, .offset = offsetof(STRUCT, field), .sub = table}

static const char *const pool_names[] = {"avg", "max", "gem", NULL};
static const char *const strategy_names[] = {"single", "cross", "sequential", NULL};
static const char *const sampler_names[] = {"shuffle", "pk", "balanced", NULL};
static const char *const preprocess_names[] = {"auto", "caffe", "tf", "torch", NULL};
static const char *const loss_names[] = {"cross_entropy", "triplet", NULL};
static const char *const mining_names[] = {"batch_hard", "batch_all", NULL};
static const char *const optimizer_names[] = {"sgd", "adam", "adamw", "rmsprop", NULL};
static const char *const schedule_names[] = {"constant", "step", "cosine", "plateau", NULL};
static const char *const device_names[] = {"auto", "cpu", "cuda", NULL};
static const char *const goal_names[] = {"minimize", "maximize", NULL};

#define STRUCT st_model_section
static const key_desc model_keys[] = {
    F("arch", K_STR, arch, 0, 0, 0),
    F("weights", K_PATH, weights, 0, 0, 0),
    F("image_size", K_INT, image_size, 32, 4096, 0),
    E("pool", pool, pool_names),
    F("gem_p", K_FLOAT, gem_p, 0, 100, LO_OPEN),
    F("embed_dim", K_INT, embed_dim, 0, 65536, 0),
    F("num_classes", K_INT, num_classes, 0, 10000000, 0),
    F("bn_momentum", K_FLOAT, bn_momentum, 0, 1, LO_OPEN),
    END};
#undef STRUCT

#define STRUCT st_data_section
static const key_desc pk_keys[] = {
    F("p", K_INT, pk_p, 2, 100000, 0),
    F("k", K_INT, pk_k, 2, 100000, 0),
    END};
static const key_desc augment_keys[] = {
    F("random_resized_crop", K_BOOL, random_resized_crop, 0, 0, 0),
    F("scale", K_FLOAT2, crop_scale, 0, 1, LO_OPEN),
    F("flip", K_BOOL, flip, 0, 0, 0),
    F("color_jitter", K_FLOAT, color_jitter, 0, 1, 0),
    END};
static const key_desc data_keys[] = {
    PAIR("train", K_DATASETS, train, n_train),
    E("strategy", strategy, strategy_names),
    F("val_fraction", K_FLOAT, val_fraction, 0, 1, HI_OPEN),
    F("split_seed", K_U64, split_seed, 0, 0, 0),
    F("val_classes", K_HOLDOUT, val_classes, 0, 1, LO_OPEN | HI_OPEN),
    F("split_file", K_PATH, split_file, 0, 0, 0),
    F("batch_size", K_INT, batch_size, 0, 1000000, 0),
    SUB("pk", pk_keys),
    E("sampler", sampler, sampler_names),
    SUB("augment", augment_keys),
    {.name = "preprocess", .type = K_ENUM, .offset = offsetof(STRUCT, preprocess), .choices = preprocess_names,
     .value_base = ST_CONFIG_PREPROCESS_AUTO},
    F("workers", K_INT, workers, 0, 1024, 0),
    END};
#undef STRUCT

#define STRUCT st_loss_section
static const key_desc triplet_keys[] = {
    E("mining", mining, mining_names),
    {.name = "margin", .type = K_MARGIN, .offset = offsetof(STRUCT, margin), .offset2 = offsetof(STRUCT, soft_margin),
     .lo = 0, .hi = 10, .flags = LO_OPEN},
    F("normalize", K_BOOL, normalize, 0, 0, 0),
    END};
static const key_desc loss_keys[] = {
    E("type", type, loss_names),
    F("label_smoothing", K_FLOAT, label_smoothing, 0, 1, HI_OPEN),
    SUB("triplet", triplet_keys),
    END};
#undef STRUCT

#define STRUCT st_optimizer_config
static const key_desc optimizer_keys[] = {
    E("type", type, optimizer_names),
    F("lr", K_FLOAT, lr, 0, 100, LO_OPEN),
    F("momentum", K_FLOAT, momentum, 0, 1, HI_OPEN),
    F("alpha", K_FLOAT, alpha, 0, 1, LO_OPEN | HI_OPEN),
    F("nesterov", K_BOOL, nesterov, 0, 0, 0),
    F("betas", K_FLOAT2, betas, 0, 1, HI_OPEN),
    F("eps", K_FLOAT, eps, 0, 1, LO_OPEN),
    F("weight_decay", K_FLOAT, weight_decay, 0, 1, 0),
    F("no_decay_bn_bias", K_BOOL, no_decay_bn_bias, 0, 0, 0),
    F("head_lr_mult", K_FLOAT, head_lr_mult, 0, 1000, LO_OPEN),
    F("grad_clip", K_FLOAT, grad_clip, 0, INF, 0),
    END};
#undef STRUCT

#define STRUCT st_schedule_config
static const key_desc schedule_keys[] = {
    E("type", type, schedule_names),
    F("warmup_epochs", K_FLOAT, warmup_epochs, 0, 100000, 0),
    F("step_size", K_INT, step_size, 1, 100000, 0),
    F("gamma", K_FLOAT, gamma, 0, 1, LO_OPEN),
    F("min_lr", K_FLOAT, min_lr, 0, 100, 0),
    F("patience", K_INT, patience, 1, 100000, 0),
    F("factor", K_FLOAT, factor, 0, 1, LO_OPEN | HI_OPEN),
    END};
#undef STRUCT

#define STRUCT st_early_stopping_config
static const key_desc early_stopping_keys[] = {
    F("metric", K_STR, metric, 0, 0, 0),
    E("goal", maximize, goal_names),
    F("patience", K_INT, patience, 0, 100000, 0),
    F("restore_best", K_BOOL, restore_best, 0, 0, 0),
    END};
#undef STRUCT

#define STRUCT st_validation_config
static const key_desc validation_keys[] = {
    F("every", K_INT, every, 1, 100000, 0),
    PAIR("metrics", K_METRICS, metrics, n_metrics),
    F("k", K_INT, k, 0, 1000000, 0),
    END};
#undef STRUCT

#define STRUCT st_output_config
static const key_desc output_keys[] = {
    F("dir", K_STR, dir, 0, 0, 0),
    F("name", K_OPTSTR, name, 0, 0, 0),
    F("keep_last", K_INT, keep_last, 0, 100000, 0),
    F("save_best", K_BOOL, save_best, 0, 0, 0),
    END};
#undef STRUCT

#define STRUCT st_phase_config
static const key_desc phase_keys[] = {
    F("name", K_STR, name, 0, 0, 0),
    F("epochs", K_INT, epochs, 1, 100000, 0),
    F("freeze_until", K_STR, freeze_until, 0, 0, 0),
    SECTION("optimizer", optimizer, optimizer_keys),
    SECTION("schedule", schedule, schedule_keys),
    PAIR("data", K_STRLIST, data, n_data),
    SECTION("early_stopping", early_stopping, early_stopping_keys),
    END};
#undef STRUCT

#define STRUCT st_train_config
static const key_desc top_keys[] = {
    SECTION("model", model, model_keys),
    SECTION("data", data, data_keys),
    SECTION("loss", loss, loss_keys),
    SECTION("optimizer", optimizer, optimizer_keys),
    SECTION("schedule", schedule, schedule_keys),
    F("freeze_until", K_STR, freeze_until, 0, 0, 0),
    PAIR("phases", K_PHASES, phases, n_phases),
    F("epochs", K_INT, epochs, 1, 100000, 0),
    F("seed", K_U64, seed, 0, 0, 0),
    E("device", device, device_names),
    F("threads", K_INT, threads, 0, 4096, 0),
    F("divergence_factor", K_FLOAT, divergence_factor, 0, 1e12, 0),
    SECTION("validation", validation, validation_keys),
    SECTION("early_stopping", early_stopping, early_stopping_keys),
    SECTION("output", output, output_keys),
    END};
#undef STRUCT
#undef F
#undef E
#undef PAIR
#undef SUB
#undef END
#undef SECTION
/* clang-format on */

#define AT(base, off, type) ((type *)((char *)(base) + (off)))
#define AT_C(base, off, type) ((const type *)((const char *)(base) + (off)))
typedef char **string_list; /* so AT_C(base, off, string_list) is char **const * */

/* ---- defaults ------------------------------------------------------------------------------- */

static char **strlist(int n, const char *const *items) {
    char **list = ST_CALLOC((size_t)n, sizeof *list);
    for (int i = 0; i < n; i++) list[i] = ST_STRDUP(items[i]);
    return list;
}

void st_config_defaults(st_train_config *c) {
    memset(c, 0, sizeof *c);
    c->model = (st_model_section){
        .arch = ST_STRDUP("resnet50"), .image_size = 224, .pool = ST_GPOOL_AVG, .gem_p = 3.0, .bn_momentum = 0.1};
    c->data = (st_data_section){.strategy = ST_STRATEGY_SINGLE,
                                .val_fraction = 0.2,
                                .pk_p = 8,
                                .pk_k = 4,
                                .sampler = ST_SAMPLER_SHUFFLE,
                                .random_resized_crop = 1,
                                .crop_scale = {0.08, 1.0},
                                .flip = 1,
                                .preprocess = ST_CONFIG_PREPROCESS_AUTO};
    c->loss = (st_loss_section){.type = ST_LOSS_XENT, .mining = ST_MINING_BATCH_HARD, .margin = 0.2, .normalize = 1};
    c->optimizer = (st_optimizer_config){.type = ST_OPT_SGD,
                                         .lr = 0.01,
                                         .momentum = 0.9,
                                         .alpha = 0.99,
                                         .betas = {0.9, 0.999},
                                         .eps = 1e-8,
                                         .weight_decay = 1e-4,
                                         .no_decay_bn_bias = 1,
                                         .head_lr_mult = 1.0};
    c->schedule =
        (st_schedule_config){.type = ST_SCHED_COSINE, .step_size = 10, .gamma = 0.1, .patience = 3, .factor = 0.1};
    c->freeze_until = ST_STRDUP("none");
    c->epochs = 10;
    c->device = ST_DEVICE_AUTO;
    c->divergence_factor = 1000;
    static const char *const default_metrics[] = {"hit@1", "map@10"};
    c->validation = (st_validation_config){.every = 1, .metrics = strlist(2, default_metrics), .n_metrics = 2};
    c->early_stopping = (st_early_stopping_config){.metric = ST_STRDUP("val/map@10"), .maximize = 1, .restore_best = 1};
    c->output =
        (st_output_config){.dir = ST_STRDUP("checkpoints"), .name = NULL, .keep_last = 2, .save_best = 1};
}

/* ---- freeing (table-driven) ---------------------------------------------------------------- */

static void free_strlist(char **list, int n) {
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}

static void free_section(const key_desc *table, void *base);

static void free_phases(st_phase_config *phases, int n) {
    for (int i = 0; i < n; i++) free_section(phase_keys, &phases[i]);
    free(phases);
}

static void free_section(const key_desc *table, void *base) {
    for (const key_desc *k = table; k->name; k++) {
        switch (k->type) {
        case K_STR:
        case K_OPTSTR:
        case K_PATH:
            free(*AT(base, k->offset, char *));
            *AT(base, k->offset, char *) = NULL;
            break;
        case K_STRLIST:
        case K_METRICS:
            free_strlist(*AT(base, k->offset, char **), *AT(base, k->offset2, int));
            *AT(base, k->offset, char **) = NULL;
            *AT(base, k->offset2, int) = 0;
            break;
        case K_SECTION: free_section(k->sub, AT(base, k->offset, char)); break;
        case K_HOLDOUT: {
            st_class_holdout *h = AT(base, k->offset, st_class_holdout);
            free_strlist(h->names, h->n_names);
            memset(h, 0, sizeof *h);
            break;
        }
        case K_DATASETS: {
            st_dataset_spec *d = *AT(base, k->offset, st_dataset_spec *);
            int n = *AT(base, k->offset2, int);
            for (int i = 0; i < n; i++) {
                free(d[i].path);
                free(d[i].name);
            }
            free(d);
            *AT(base, k->offset, st_dataset_spec *) = NULL;
            *AT(base, k->offset2, int) = 0;
            break;
        }
        case K_PHASES:
            free_phases(*AT(base, k->offset, st_phase_config *), *AT(base, k->offset2, int));
            *AT(base, k->offset, st_phase_config *) = NULL;
            *AT(base, k->offset2, int) = 0;
            break;
        default: break;
        }
    }
}

void st_config_free(st_train_config *cfg) { free_section(top_keys, cfg); }

/* ---- errors --------------------------------------------------------------------------------- */

static int key_error(const st_ynode *node, const char *path, const char *fmt, ...) ST_PRINTF(3, 4);
static int key_error(const st_ynode *node, const char *path, const char *fmt, ...) {
    char where[1200], msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return st_error_set("%s: %s: %s", st_ynode_where(node, where, sizeof where), path, msg);
}

/* Key paths for messages; a (never expected) truncation only shortens a message. */
static void join_path(char *out, size_t size, const char *prefix, const char *name) {
    int len = prefix[0] ? snprintf(out, size, "%s.%s", prefix, name) : snprintf(out, size, "%s", name);
    if (len < 0) out[0] = '\0';
}

static void index_path(char *out, size_t size, const char *prefix, int index) {
    if (snprintf(out, size, "%s.%d", prefix, index) < 0) out[0] = '\0';
}

static void list_keys(const key_desc *table, char *buf, size_t size) {
    buf[0] = '\0';
    for (const key_desc *k = table; k->name; k++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", used ? ", " : "", k->name);
    }
}

static void list_choices(const char *const *choices, char *buf, size_t size) {
    buf[0] = '\0';
    for (int i = 0; choices[i]; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", i ? ", " : "", choices[i]);
    }
}

/* ---- paths ---------------------------------------------------------------------------------- */

/* Lexically remove "." and "name/.." segments of an absolute path, in place. */
static void normalize_path(char *path) {
    char *out = path;
    const char *in = path;
    while (*in) {
        while (*in == '/') in++;
        const char *end = strchr(in, '/');
        size_t len = end ? (size_t)(end - in) : strlen(in);
        if (len == 0) break;
        if (len == 1 && in[0] == '.') {
        } else if (len == 2 && in[0] == '.' && in[1] == '.') {
            while (out > path && *--out != '/') {
            }
        } else {
            *out++ = '/';
            memmove(out, in, len);
            out += len;
        }
        in += len;
    }
    if (out == path) *out++ = '/';
    *out = '\0';
}

char *st_config_resolve_path(const st_ynode *node) {
    const char *value = node->value;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) ST_FAIL("getcwd failed: %s", strerror(errno));
    size_t size = strlen(cwd) + strlen(node->source) + strlen(value) + 4;
    char *out = ST_MALLOC(size);
    if (value[0] == '/') {
        snprintf(out, size, "%s", value);
    } else if (node->from_file) {
        const char *slash = strrchr(node->source, '/');
        int dir_len = slash ? (int)(slash - node->source) : 0;
        if (node->source[0] == '/')
            snprintf(out, size, "%.*s/%s", dir_len, node->source, value);
        else
            snprintf(out, size, "%s/%.*s/%s", cwd, dir_len, node->source, value);
    } else {
        snprintf(out, size, "%s/%s", cwd, value);
    }
    normalize_path(out);
    return out;
}

/* ---- reading -------------------------------------------------------------------------------- */

static int read_section(const st_ynode *map, const key_desc *table, void *base, const char *prefix);

static int expect_scalar(const st_ynode *node, const char *path, const char *what) {
    char buf[256];
    if (node->kind == ST_YNODE_SCALAR) return 0;
    return key_error(node, path, "expected %s, got %s", what, st_ynode_describe(node, buf, sizeof buf));
}

static int range_ok(const key_desc *k, double v) {
    if (k->flags & LO_OPEN ? !(v > k->lo) : !(v >= k->lo)) return 0;
    if (k->flags & HI_OPEN ? !(v < k->hi) : !(v <= k->hi)) return 0;
    return 1;
}

static int range_error(const st_ynode *node, const char *path, const key_desc *k, const char *text) {
    char hi[64] = "";
    if (isfinite(k->hi))
        snprintf(hi, sizeof hi, ", %g%s", k->hi, k->flags & HI_OPEN ? ")" : "]");
    else
        snprintf(hi, sizeof hi, ", inf)");
    return key_error(node, path, "%s is out of range: must be in %s%g%s", text, k->flags & LO_OPEN ? "(" : "[", k->lo,
                     hi);
}

static int read_float(const st_ynode *node, const char *path, const key_desc *k, double *out) {
    double v;
    if (expect_scalar(node, path, "a number")) return -1;
    if (st_yaml_parse_float(node->value, &v) != 0)
        return key_error(node, path, "expected a number, got '%s'", node->value);
    if (!range_ok(k, v)) return range_error(node, path, k, node->value);
    *out = v;
    return 0;
}

static int read_int(const st_ynode *node, const char *path, const key_desc *k, long long *out) {
    long long v;
    if (expect_scalar(node, path, "an integer")) return -1;
    if (st_yaml_parse_int(node->value, &v) != 0)
        return key_error(node, path, "expected an integer, got '%s'", node->value);
    if (k && !range_ok(k, (double)v)) return range_error(node, path, k, node->value);
    *out = v;
    return 0;
}

static int read_bool(const st_ynode *node, const char *path, int *out) {
    if (expect_scalar(node, path, "true or false")) return -1;
    const char *v = node->value;
    if (node->plain && (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE")))
        *out = 1;
    else if (node->plain && (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE")))
        *out = 0;
    else
        return key_error(node, path, "expected true or false, got '%s'", v);
    return 0;
}

static int read_string(const st_ynode *node, const char *path, char **out) {
    if (expect_scalar(node, path, "a string")) return -1;
    if (st_ynode_is_null(node)) return key_error(node, path, "expected a string, got null");
    free(*out);
    *out = ST_STRDUP(node->value);
    return 0;
}

static int read_enum(const st_ynode *node, const char *path, const key_desc *k, int *out) {
    char choices[512];
    if (expect_scalar(node, path, "a name")) return -1;
    for (int i = 0; k->choices[i]; i++)
        if (!strcmp(node->value, k->choices[i])) {
            *out = i + k->value_base;
            return 0;
        }
    list_choices(k->choices, choices, sizeof choices);
    return key_error(node, path, "'%s' is not one of: %s", node->value, choices);
}

static int read_strlist(const st_ynode *node, const char *path, char ***list, int *n) {
    char buf[256];
    if (node->kind != ST_YNODE_SEQ)
        return key_error(node, path, "expected a list like [a, b], got %s", st_ynode_describe(node, buf, sizeof buf));
    char **items = ST_CALLOC((size_t)node->n, sizeof *items);
    for (int i = 0; i < node->n; i++) {
        char item_path[512];
        index_path(item_path, sizeof item_path, path, i);
        if (read_string(node->items[i], item_path, &items[i]) != 0) {
            free_strlist(items, node->n);
            return -1;
        }
    }
    free_strlist(*list, *n);
    *list = items;
    *n = node->n;
    return 0;
}

/* The cutoff of a validation metric name (infer/metrics.h's registry): K of the @K families, 0
 * for map@R and mrr; -1 when the name is not a metric a trainer's validation reports. */
static int metric_k(const char *name) {
    st_metric_id id;
    if (st_metric_id_parse(name, &id) != 0 || !st_metric_in_validation(id.family)) return -1;
    return id.k;
}

static int read_metrics(const st_ynode *node, const char *path, char ***list, int *n) {
    if (read_strlist(node, path, list, n) != 0) return -1;
    if (*n == 0) return key_error(node, path, "at least one metric is required");
    for (int i = 0; i < *n; i++)
        if (metric_k((*list)[i]) < 0)
            return key_error(node->items[i], path,
                             "'%s' is not a metric (HINT: %s)", (*list)[i],
                             st_metric_validation_names());
    return 0;
}

static char *default_dataset_name(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *name = ST_STRDUP(base);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
    return name;
}

static int read_datasets(const st_ynode *node, const char *path, st_dataset_spec **out, int *n_out) {
    char buf[256];
    if (node->kind != ST_YNODE_SEQ)
        return key_error(node, path, "expected a list of datasets ({path: DIR|TSV, name: NAME}), got %s",
                         st_ynode_describe(node, buf, sizeof buf));
    st_dataset_spec *d = ST_CALLOC((size_t)node->n, sizeof *d);
    int n = 0, rc = 0;
    for (int i = 0; i < node->n && rc == 0; i++) {
        const st_ynode *item = node->items[i];
        char item_path[256], key_path[300];
        index_path(item_path, sizeof item_path, path, i);
        if (item->kind == ST_YNODE_SCALAR && !st_ynode_is_null(item)) { /* shorthand: just the path */
            d[n].path = st_config_resolve_path(item);
        } else if (item->kind == ST_YNODE_MAP) {
            for (int j = 0; j < item->n && rc == 0; j++) {
                const char *key = item->keys[j]->value;
                join_path(key_path, sizeof key_path, item_path, key);
                if (!strcmp(key, "path")) {
                    if ((rc = expect_scalar(item->items[j], key_path, "a path")) == 0) {
                        if (st_ynode_is_null(item->items[j]))
                            rc = key_error(item->items[j], key_path, "a path is required");
                        else
                            d[n].path = st_config_resolve_path(item->items[j]);
                    }
                } else if (!strcmp(key, "name")) {
                    rc = read_string(item->items[j], key_path, &d[n].name);
                } else {
                    rc = key_error(item->keys[j], key_path, "unknown key (HINT: a dataset has path and name)");
                }
            }
            if (rc == 0 && !d[n].path) rc = key_error(item, item_path, "missing key 'path'");
        } else {
            rc = key_error(item, item_path, "expected {path: DIR|TSV, name: NAME}, got %s",
                           st_ynode_describe(item, buf, sizeof buf));
        }
        if (rc == 0 && !d[n].name) d[n].name = default_dataset_name(d[n].path);
        if (d[n].path || d[n].name) n++;
        for (int j = 0; rc == 0 && j < n - 1; j++)
            if (!strcmp(d[j].name, d[n - 1].name))
                rc = key_error(item, item_path, "dataset name '%s' is used twice (HINT: give each a distinct name)",
                               d[n - 1].name);
    }
    for (int i = 0; i < *n_out; i++) {
        free((*out)[i].path);
        free((*out)[i].name);
    }
    free(*out);
    *out = d;
    *n_out = n;
    return rc;
}

/* data.val_classes: null, a share of the classes in (0, 1), or a non-empty list of class names. */
static int read_holdout(const st_ynode *node, const char *path, const key_desc *k, st_class_holdout *out) {
    st_class_holdout h = {0};
    if (node->kind == ST_YNODE_SEQ) {
        if (read_strlist(node, path, &h.names, &h.n_names)) return -1;
        if (h.n_names == 0) {
            free(h.names);
            return key_error(node, path, "an empty list holds out nothing (HINT: null, or class names)");
        }
    } else if (node->kind == ST_YNODE_SCALAR && !st_ynode_is_null(node)) {
        if (st_yaml_parse_float(node->value, &h.fraction) != 0)
            return key_error(node, path, "expected a share of the classes in (0, 1), a list of class names or null, got '%s'",
                             node->value);
        if (!range_ok(k, h.fraction)) return range_error(node, path, k, node->value);
    } else if (node->kind != ST_YNODE_SCALAR) {
        char buf[256];
        return key_error(node, path, "expected a share in (0, 1) or a list of class names, got %s",
                         st_ynode_describe(node, buf, sizeof buf));
    }
    free_strlist(out->names, out->n_names);
    *out = h;
    return 0;
}

static int read_value(const key_desc *k, const st_ynode *node, void *base, const char *path) {
    long long iv = 0;
    double dv = 0;
    switch (k->type) {
    case K_INT:
        if (read_int(node, path, k, &iv)) return -1;
        *AT(base, k->offset, int) = (int)iv;
        return 0;
    case K_U64:
        if (read_int(node, path, NULL, &iv)) return -1;
        if (iv < 0) return key_error(node, path, "must be >= 0, got %lld", iv);
        *AT(base, k->offset, uint64_t) = (uint64_t)iv;
        return 0;
    case K_FLOAT:
        if (read_float(node, path, k, &dv)) return -1;
        *AT(base, k->offset, double) = dv;
        return 0;
    case K_BOOL: return read_bool(node, path, AT(base, k->offset, int));
    case K_STR: return read_string(node, path, AT(base, k->offset, char *));
    case K_OPTSTR: {
        char **slot = AT(base, k->offset, char *);
        if (expect_scalar(node, path, "a string or null")) return -1;
        if (!st_ynode_is_null(node)) return read_string(node, path, slot);
        free(*slot);
        *slot = NULL;
        return 0;
    }
    case K_HOLDOUT: return read_holdout(node, path, k, AT(base, k->offset, st_class_holdout));
    case K_PATH: {
        char **slot = AT(base, k->offset, char *);
        if (expect_scalar(node, path, "a path or null")) return -1;
        free(*slot);
        *slot = st_ynode_is_null(node) ? NULL : st_config_resolve_path(node);
        return 0;
    }
    case K_ENUM: return read_enum(node, path, k, AT(base, k->offset, int));
    case K_FLOAT2: {
        double *pair = AT(base, k->offset, double), v[2];
        char buf[256];
        if (node->kind != ST_YNODE_SEQ || node->n != 2)
            return key_error(node, path, "expected a pair [a, b], got %s", st_ynode_describe(node, buf, sizeof buf));
        for (int i = 0; i < 2; i++) {
            char item_path[300];
            index_path(item_path, sizeof item_path, path, i);
            if (read_float(node->items[i], item_path, k, &v[i])) return -1;
        }
        if (!strcmp(k->name, "scale") && v[0] > v[1])
            return key_error(node, path, "min %g is larger than max %g", v[0], v[1]);
        pair[0] = v[0];
        pair[1] = v[1];
        return 0;
    }
    case K_MARGIN:
        if (expect_scalar(node, path, "a number or 'soft'")) return -1;
        if (!strcmp(node->value, "soft")) {
            *AT(base, k->offset2, int) = 1;
            return 0;
        }
        if (st_yaml_parse_float(node->value, &dv) != 0)
            return key_error(node, path, "expected a number or 'soft', got '%s'", node->value);
        if (!range_ok(k, dv)) return range_error(node, path, k, node->value);
        *AT(base, k->offset2, int) = 0;
        *AT(base, k->offset, double) = dv;
        return 0;
    case K_STRLIST: return read_strlist(node, path, AT(base, k->offset, char **), AT(base, k->offset2, int));
    case K_METRICS: return read_metrics(node, path, AT(base, k->offset, char **), AT(base, k->offset2, int));
    case K_SECTION: return read_section(node, k->sub, AT(base, k->offset, char), path);
    case K_DATASETS:
        return read_datasets(node, path, AT(base, k->offset, st_dataset_spec *), AT(base, k->offset2, int));
    case K_PHASES: return 0; /* read_phases(), after the rest */
    }
    ST_FAIL("config: key type %d not handled", (int)k->type);
}

static int read_section(const st_ynode *map, const key_desc *table, void *base, const char *prefix) {
    char buf[256];
    if (map->kind != ST_YNODE_MAP)
        return key_error(map, prefix[0] ? prefix : "(top level)", "expected a mapping of keys, got %s",
                         st_ynode_describe(map, buf, sizeof buf));
    for (int i = 0; i < map->n; i++) {
        const char *name = map->keys[i]->value;
        char path[512];
        join_path(path, sizeof path, prefix, name);
        const key_desc *k = table;
        while (k->name && strcmp(k->name, name) != 0) k++;
        if (!k->name) {
            char keys[1024];
            list_keys(table, keys, sizeof keys);
            return key_error(map->keys[i], path, "unknown key (HINT: the keys here are: %s)", keys);
        }
        if (read_value(k, map->items[i], base, path) != 0) return -1;
    }
    return 0;
}

/* ---- phases: start from the top-level values, then read the phase's own keys --------------- */

static char *dup_or_null(const char *s) { return s ? ST_STRDUP(s) : NULL; }

static void phase_inherit(st_phase_config *p, const st_train_config *c, int index) {
    char name[32];
    snprintf(name, sizeof name, "phase%d", index);
    p->name = ST_STRDUP(name);
    p->freeze_until = ST_STRDUP(c->freeze_until);
    p->optimizer = c->optimizer;
    p->schedule = c->schedule;
    p->early_stopping = c->early_stopping;
    p->early_stopping.metric = dup_or_null(c->early_stopping.metric);
    p->data = ST_CALLOC((size_t)c->data.n_train, sizeof *p->data);
    for (int d = 0; d < c->data.n_train; d++) p->data[d] = ST_STRDUP(c->data.train[d].name);
    p->n_data = c->data.n_train;
}

static int read_phases(const st_ynode *node, st_train_config *c) {
    char buf[256];
    if (node->kind != ST_YNODE_SEQ)
        return key_error(node, "phases", "expected a list of phases, got %s", st_ynode_describe(node, buf, sizeof buf));
    free_phases(c->phases, c->n_phases);
    c->phases = ST_CALLOC((size_t)node->n, sizeof *c->phases);
    c->n_phases = node->n;
    for (int i = 0; i < node->n; i++) phase_inherit(&c->phases[i], c, i);
    for (int i = 0; i < node->n; i++) {
        char path[64];
        snprintf(path, sizeof path, "phases.%d", i);
        const st_ynode *item = node->items[i];
        st_phase_config *p = &c->phases[i];
        p->epochs = 0;
        if (read_section(item, phase_keys, p, path) != 0) return -1;
        if (p->epochs == 0) return key_error(item, path, "missing key 'epochs'");
        for (int j = 0; j < i; j++)
            if (!strcmp(c->phases[j].name, p->name))
                return key_error(item, path, "phase name '%s' is used twice", p->name);
        for (int d = 0; d < p->n_data; d++) {
            int found = 0;
            for (int t = 0; t < c->data.n_train; t++) found |= !strcmp(p->data[d], c->data.train[t].name);
            const st_ynode *where = st_ynode_get(item, "data") ? st_ynode_get(item, "data") : item;
            if (!found) return key_error(where, path, "dataset '%s' is not in data.train", p->data[d]);
        }
        if (p->n_data == 0) return key_error(item, path, "data: a phase needs at least one dataset");
    }
    return 0;
}

/* ---- cross-key rules -------------------------------------------------------------------------- */

static const st_ynode *node_at(const st_ynode *root, const char *path) {
    char copy[256];
    snprintf(copy, sizeof copy, "%s", path);
    const st_ynode *cur = root;
    char *save = NULL;
    for (char *seg = strtok_r(copy, ".", &save); seg; seg = strtok_r(NULL, ".", &save)) {
        const st_ynode *next = st_ynode_get(cur, seg);
        if (!next) return cur;
        cur = next;
    }
    return cur;
}

int st_config_check_metric(const st_train_config *c, const char *metric) {
    /* The trainer computes val/loss and val/accuracy only with a classifier (cross-entropy). */
    int xent = c->loss.type == ST_LOSS_XENT;
    if (!strcmp(metric, "train/loss")) return 0;
    if (xent && (!strcmp(metric, "val/loss") || !strcmp(metric, "val/accuracy"))) return 0;
    if (!strncmp(metric, "val/", 4))
        for (int i = 0; i < c->validation.n_metrics; i++)
            if (!strcmp(metric + 4, c->validation.metrics[i])) return 0;
    char list[1024];
    snprintf(list, sizeof list, "%s", xent ? "train/loss, val/loss, val/accuracy" : "train/loss");
    for (int i = 0; i < c->validation.n_metrics; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, ", val/%s", c->validation.metrics[i]);
    }
    return st_error_set("'%s' is not reported by this config (HINT: one of %s; add it to validation.metrics)", metric,
                        list);
}

static int check_early_stopping(const st_ynode *root, const st_train_config *c, const st_early_stopping_config *es,
                                const char *path) {
    char full[128];
    snprintf(full, sizeof full, "%s.metric", path);
    if (es->patience == 0) return 0;
    if (st_config_check_metric(c, es->metric) != 0) {
        char msg[1500];
        snprintf(msg, sizeof msg, "%s", st_error_get());
        return key_error(node_at(root, full), full, "%s", msg);
    }
    const st_data_section *d = &c->data;
    int has_val = d->val_fraction > 0 || d->strategy == ST_STRATEGY_CROSS || d->val_classes.fraction > 0 ||
                  d->val_classes.n_names > 0 || d->split_file;
    if (!strncmp(es->metric, "val/", 4) && !has_val)
        return key_error(node_at(root, full), full,
                         "'%s' needs a validation set (HINT: set data.val_fraction > 0, data.val_classes or "
                         "strategy: cross)",
                         es->metric);
    return 0;
}

static int check_rules(const st_ynode *root, st_train_config *c) {
    if (!st_arch_find(c->model.arch))
        return key_error(node_at(root, "model.arch"), "model.arch", "unknown architecture '%s' (HINT: one of %s)",
                         c->model.arch, st_arch_names());
    if (c->data.n_train == 0)
        return key_error(node_at(root, "data.train"), "data.train",
                         "at least one dataset is required (HINT: train: [{path: DIR, name: NAME}])");
    if (c->data.strategy == ST_STRATEGY_CROSS && c->data.n_train < 2)
        return key_error(node_at(root, "data.strategy"), "data.strategy",
                         "cross trains on all datasets but the last and validates on the last: it needs 2 or more");
    int holds_classes = c->data.val_classes.fraction > 0 || c->data.val_classes.n_names > 0;
    if (c->data.strategy == ST_STRATEGY_CROSS && holds_classes)
        return key_error(node_at(root, "data.val_classes"), "data.val_classes",
                         "strategy cross already validates on classes never trained on (the last dataset's) "
                         "(HINT: drop val_classes, or use strategy single)");
    int pk = c->data.pk_p * c->data.pk_k;
    if (c->data.sampler == ST_SAMPLER_PK && c->data.batch_size != 0 && c->data.batch_size != pk)
        return key_error(node_at(root, "data.batch_size"), "data.batch_size",
                         "%d differs from pk.p * pk.k = %d with sampler pk (HINT: set batch_size: 0)",
                         c->data.batch_size, pk);
    if (c->loss.type == ST_LOSS_TRIPLET) {
        if (c->data.sampler != ST_SAMPLER_PK)
            return key_error(node_at(root, "data.sampler"), "data.sampler",
                             "loss triplet needs positives in every batch (HINT: sampler: pk)");
        if (c->model.num_classes != 0)
            return key_error(node_at(root, "model.num_classes"), "model.num_classes",
                             "must be 0 with loss triplet (no classifier head)");
    }
    if (!strcmp(c->freeze_until, ""))
        return key_error(node_at(root, "freeze_until"), "freeze_until", "empty (HINT: none, all or a layer name)");
    int max_k = 1;
    for (int i = 0; i < c->validation.n_metrics; i++)
        if (metric_k(c->validation.metrics[i]) > max_k) max_k = metric_k(c->validation.metrics[i]);
    if (c->validation.k == 0)
        c->validation.k = max_k;
    else if (c->validation.k < max_k)
        return key_error(node_at(root, "validation.k"), "validation.k",
                         "%d is smaller than the largest @K %d in metrics", c->validation.k, max_k);
    if (c->schedule.type == ST_SCHED_COSINE && c->schedule.min_lr > c->optimizer.lr)
        return key_error(node_at(root, "schedule.min_lr"), "schedule.min_lr", "%g is larger than optimizer.lr %g",
                         c->schedule.min_lr, c->optimizer.lr);
    if (check_early_stopping(root, c, &c->early_stopping, "early_stopping") != 0) return -1;
    for (int i = 0; i < c->n_phases; i++) {
        char path[64];
        snprintf(path, sizeof path, "phases.%d.early_stopping", i);
        if (check_early_stopping(root, c, &c->phases[i].early_stopping, path) != 0) return -1;
    }
    if (c->n_phases) {
        int sum = 0;
        for (int i = 0; i < c->n_phases; i++) sum += c->phases[i].epochs;
        if (st_ynode_get(root, "epochs") && c->epochs != sum)
            return key_error(node_at(root, "epochs"), "epochs",
                             "%d differs from the phases' total %d (HINT: drop epochs when using phases)", c->epochs,
                             sum);
        c->epochs = sum;
    }
    return 0;
}

int st_config_from_tree(const st_ynode *root, st_train_config *cfg) {
    st_config_defaults(cfg);
    int rc = read_section(root, top_keys, cfg, "");
    const st_ynode *phases = st_ynode_get(root, "phases");
    if (rc == 0 && phases) rc = read_phases(phases, cfg);
    if (rc == 0) rc = check_rules(root, cfg);
    if (rc != 0) st_config_free(cfg);
    return rc;
}

st_ynode *st_config_parse_set(const char *assignment, char *key, size_t key_size) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) {
        st_error_set("--set '%s': expected key.path=value (HINT: --set optimizer.lr=0.01)", assignment);
        return NULL;
    }
    char label[1200];
    snprintf(key, key_size, "%.*s", (int)(eq - assignment), assignment);
    snprintf(label, sizeof label, "--set %s", assignment);
    st_ynode *value = eq[1] ? st_yaml_load_string(eq + 1, label) : st_ynode_new_scalar("null", 1);
    if (value && !eq[1]) {
        free(value->source);
        value->source = ST_STRDUP(label);
    }
    return value;
}

int st_config_apply_set(st_ynode *root, const char *assignment) {
    char key[512];
    st_ynode *value = st_config_parse_set(assignment, key, sizeof key);
    if (!value) return -1;
    int rc = st_ynode_set_path(root, key, value);
    if (rc != 0) {
        char msg[1500];
        snprintf(msg, sizeof msg, "%s", st_error_get());
        st_error_set("--set %s: %s", assignment, msg);
    }
    st_ynode_free(value);
    return rc;
}

int st_config_load(const char *path, const char *const *sets, int n_sets, st_train_config *cfg) {
    st_ynode *root = st_yaml_load_file(path);
    if (!root) return -1;
    int rc = 0;
    for (int i = 0; i < n_sets && rc == 0; i++) rc = st_config_apply_set(root, sets[i]);
    if (rc == 0) rc = st_config_from_tree(root, cfg);
    st_ynode_free(root);
    return rc;
}

/* ---- writing -------------------------------------------------------------------------------- */

static st_ynode *strlist_node(char **list, int n) {
    st_ynode *seq = st_ynode_new_seq();
    for (int i = 0; i < n; i++) st_ynode_seq_add(seq, st_ynode_new_scalar(list[i], 0));
    return seq;
}

static st_ynode *write_section(const key_desc *table, const void *base);

static st_ynode *write_value(const key_desc *k, const void *base) {
    switch (k->type) {
    case K_INT: return st_ynode_new_int(*AT_C(base, k->offset, int));
    case K_U64: return st_ynode_new_int((long long)*AT_C(base, k->offset, uint64_t));
    case K_FLOAT: return st_ynode_new_number(*AT_C(base, k->offset, double));
    case K_BOOL: return st_ynode_new_scalar(*AT_C(base, k->offset, int) ? "true" : "false", 1);
    case K_STR: return st_ynode_new_scalar(*AT_C(base, k->offset, char *), 0);
    case K_OPTSTR: {
        const char *v = *AT_C(base, k->offset, char *);
        return v ? st_ynode_new_scalar(v, 0) : st_ynode_new_scalar("null", 1);
    }
    case K_HOLDOUT: {
        const st_class_holdout *h = AT_C(base, k->offset, st_class_holdout);
        if (h->n_names) return strlist_node(h->names, h->n_names);
        return h->fraction > 0 ? st_ynode_new_number(h->fraction) : st_ynode_new_scalar("null", 1);
    }
    case K_PATH: {
        const char *p = *AT_C(base, k->offset, char *);
        return p ? st_ynode_new_scalar(p, 0) : st_ynode_new_scalar("null", 1);
    }
    case K_ENUM: return st_ynode_new_scalar(k->choices[*AT_C(base, k->offset, int) - k->value_base], 1);
    case K_FLOAT2: {
        st_ynode *seq = st_ynode_new_seq();
        for (int i = 0; i < 2; i++) st_ynode_seq_add(seq, st_ynode_new_number(AT_C(base, k->offset, double)[i]));
        return seq;
    }
    case K_MARGIN:
        return *AT_C(base, k->offset2, int) ? st_ynode_new_scalar("soft", 1)
                                            : st_ynode_new_number(*AT_C(base, k->offset, double));
    case K_STRLIST:
    case K_METRICS: return strlist_node(*AT_C(base, k->offset, string_list), *AT_C(base, k->offset2, int));
    case K_SECTION: return write_section(k->sub, AT_C(base, k->offset, char));
    case K_DATASETS: {
        st_ynode *seq = st_ynode_new_seq();
        const st_dataset_spec *d = *AT_C(base, k->offset, st_dataset_spec *);
        for (int i = 0; i < *AT_C(base, k->offset2, int); i++) {
            st_ynode *item = st_ynode_new_map();
            st_ynode_map_add(item, "path", st_ynode_new_scalar(d[i].path, 0));
            st_ynode_map_add(item, "name", st_ynode_new_scalar(d[i].name, 0));
            st_ynode_seq_add(seq, item);
        }
        return seq;
    }
    case K_PHASES: {
        st_ynode *seq = st_ynode_new_seq();
        const st_phase_config *p = *AT_C(base, k->offset, st_phase_config *);
        for (int i = 0; i < *AT_C(base, k->offset2, int); i++) st_ynode_seq_add(seq, write_section(phase_keys, &p[i]));
        return seq;
    }
    }
    ST_FAIL("config: key type %d not handled", (int)k->type);
}

static st_ynode *write_section(const key_desc *table, const void *base) {
    st_ynode *map = st_ynode_new_map();
    for (const key_desc *k = table; k->name; k++) st_ynode_map_add(map, k->name, write_value(k, base));
    return map;
}

st_ynode *st_config_to_tree(const st_train_config *cfg) {
    st_ynode *root = write_section(top_keys, cfg);
    if (cfg->n_phases == 0) st_ynode_remove(root, "phases");
    return root;
}

int st_config_write_yaml(const st_train_config *cfg, const char *path) {
    st_ynode *root = st_config_to_tree(cfg);
    int rc = st_yaml_write_file(root, path,
                                "simtune effective train config: every key explicit (docs/config.md).\n"
                                "Input paths are absolute; run it with: simtune train --config THIS_FILE");
    st_ynode_free(root);
    return rc;
}

/* ---- comparing -------------------------------------------------------------------------------- */

static int str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static int equal_section(const key_desc *table, const void *a, const void *b);

static int equal_value(const key_desc *k, const void *a, const void *b) {
    switch (k->type) {
    case K_INT:
    case K_BOOL:
    case K_ENUM: return *AT_C(a, k->offset, int) == *AT_C(b, k->offset, int);
    case K_U64: return *AT_C(a, k->offset, uint64_t) == *AT_C(b, k->offset, uint64_t);
    case K_FLOAT: return *AT_C(a, k->offset, double) == *AT_C(b, k->offset, double);
    case K_STR:
    case K_OPTSTR:
    case K_PATH: return str_eq(*AT_C(a, k->offset, char *), *AT_C(b, k->offset, char *));
    case K_HOLDOUT: {
        const st_class_holdout *x = AT_C(a, k->offset, st_class_holdout), *y = AT_C(b, k->offset, st_class_holdout);
        if (x->fraction != y->fraction || x->n_names != y->n_names) return 0;
        for (int i = 0; i < x->n_names; i++)
            if (!str_eq(x->names[i], y->names[i])) return 0;
        return 1;
    }
    case K_FLOAT2: return !memcmp(AT_C(a, k->offset, double), AT_C(b, k->offset, double), 2 * sizeof(double));
    case K_MARGIN:
        return *AT_C(a, k->offset2, int) == *AT_C(b, k->offset2, int) &&
               (*AT_C(a, k->offset2, int) || *AT_C(a, k->offset, double) == *AT_C(b, k->offset, double));
    case K_STRLIST:
    case K_METRICS: {
        int n = *AT_C(a, k->offset2, int);
        if (n != *AT_C(b, k->offset2, int)) return 0;
        for (int i = 0; i < n; i++)
            if (!str_eq((*AT_C(a, k->offset, string_list))[i], (*AT_C(b, k->offset, string_list))[i])) return 0;
        return 1;
    }
    case K_SECTION: return equal_section(k->sub, AT_C(a, k->offset, char), AT_C(b, k->offset, char));
    case K_DATASETS: {
        int n = *AT_C(a, k->offset2, int);
        if (n != *AT_C(b, k->offset2, int)) return 0;
        const st_dataset_spec *da = *AT_C(a, k->offset, st_dataset_spec *),
                              *db = *AT_C(b, k->offset, st_dataset_spec *);
        for (int i = 0; i < n; i++)
            if (!str_eq(da[i].path, db[i].path) || !str_eq(da[i].name, db[i].name)) return 0;
        return 1;
    }
    case K_PHASES: {
        int n = *AT_C(a, k->offset2, int);
        if (n != *AT_C(b, k->offset2, int)) return 0;
        const st_phase_config *pa = *AT_C(a, k->offset, st_phase_config *),
                              *pb = *AT_C(b, k->offset, st_phase_config *);
        for (int i = 0; i < n; i++)
            if (!equal_section(phase_keys, &pa[i], &pb[i])) return 0;
        return 1;
    }
    }
    ST_FAIL("config: key type %d not handled", (int)k->type);
}

static int equal_section(const key_desc *table, const void *a, const void *b) {
    for (const key_desc *k = table; k->name; k++)
        if (!equal_value(k, a, b)) return 0;
    return 1;
}

int st_config_equal(const st_train_config *a, const st_train_config *b) { return equal_section(top_keys, a, b); }

/* ---- helpers for commands ------------------------------------------------------------------------ */

int st_config_batch_size(const st_train_config *cfg) {
    if (cfg->data.batch_size) return cfg->data.batch_size;
    return cfg->data.sampler == ST_SAMPLER_PK ? cfg->data.pk_p * cfg->data.pk_k : 32;
}

static int check_exists(const char *path, const char *key) {
    struct stat st;
    if (path && stat(path, &st) != 0) return st_error_set("%s: %s: %s", key, path, strerror(errno));
    return 0;
}

int st_config_key_is_path(const char *key_path) {
    static const char prefix[] = "data.train.";
    if (!strcmp(key_path, "model.weights") || !strcmp(key_path, "data.split_file")) return 1;
    if (strncmp(key_path, prefix, sizeof prefix - 1) != 0) return 0;
    const char *rest = key_path + sizeof prefix - 1, *dot = strchr(rest, '.');
    return !dot || !strcmp(dot, ".path"); /* data.train.N (the path shorthand) or data.train.N.path */
}

int st_config_check_files(const st_train_config *cfg) {
    if (check_exists(cfg->model.weights, "model.weights")) return -1;
    for (int i = 0; i < cfg->data.n_train; i++) {
        char key[64];
        snprintf(key, sizeof key, "data.train.%d.path", i);
        if (check_exists(cfg->data.train[i].path, key)) return -1;
    }
    return 0;
}
