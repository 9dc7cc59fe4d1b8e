/*
 * config.c: train config <-> YAML tree through the key-table engine (train/keytable.h). One
 * table per section lists every key with its type, field offset and range; the same tables
 * drive reading (with validation), writing, comparing and freeing, so a key added to a table
 * is parsed, written back and round-trip tested at once. Values the engine has no type for
 * (datasets, held-out classes, metric names, the triplet margin, phases) have codecs here.
 * Cross-key rules (sampler vs batch size, loss vs sampler, phases vs datasets ...) follow the
 * tables in check_rules(). Contract in config.h, key reference in docs/config.md.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../infer/metrics.h"
#include "../kernels/check.h"
#include "keytable.h"

#define AT ST_KEY_AT
#define AT_C ST_KEY_AT_C
typedef char **string_list; /* so AT_C(base, off, string_list) is char **const * */

static const st_key phase_keys[];

/* ---- codecs: values beyond the engine's types --------------------------------------------- */

/* The cutoff of a validation metric name (infer/metrics.h's registry): K of the @K families, 0
 * for map@R and mrr; -1 when the name is not a metric a trainer's validation reports. */
static int metric_k(const char *name) {
    st_metric_id id;
    if (st_metric_id_parse(name, &id) != 0 || !st_metric_in_validation(id.family)) return -1;
    return id.k;
}

/* validation.metrics: a string list whose items are validation metric names. */
static int read_metrics(const st_key *k, const st_ynode *node, void *base, const char *path) {
    char ***list = AT(base, k->offset, char **);
    int *n = AT(base, k->offset2, int);
    if (st_key_read_strlist(node, path, list, n) != 0) return -1;
    if (*n == 0) return st_key_error(node, path, "at least one metric is required");
    for (int i = 0; i < *n; i++)
        if (metric_k((*list)[i]) < 0)
            return st_key_error(node->items[i], path, "'%s' is not a metric (HINT: %s)", (*list)[i],
                                st_metric_validation_names());
    return 0;
}

static st_ynode *write_strlist(const st_key *k, const void *base) {
    return st_key_strlist_node(*AT_C(base, k->offset, string_list), *AT_C(base, k->offset2, int));
}

static int equal_strlist(const st_key *k, const void *a, const void *b) {
    return st_key_strlist_equal(*AT_C(a, k->offset, string_list), *AT_C(a, k->offset2, int),
                                *AT_C(b, k->offset, string_list), *AT_C(b, k->offset2, int));
}

static void free_strlist(const st_key *k, void *base) {
    st_key_free_strlist(*AT(base, k->offset, char **), *AT(base, k->offset2, int));
    *AT(base, k->offset, char **) = NULL;
    *AT(base, k->offset2, int) = 0;
}

static const st_key_codec metrics_codec = {read_metrics, write_strlist, equal_strlist, free_strlist};


static char *default_dataset_name(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *name = ST_STRDUP(base);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
    return name;
}

/* data.train: a list of {path, name} (name defaults to the path's stem) or bare paths. */
static int read_datasets(const st_key *k, const st_ynode *node, void *base, const char *path) {
    st_dataset_spec **out = AT(base, k->offset, st_dataset_spec *);
    int *n_out = AT(base, k->offset2, int);
    char buf[256];
    if (node->kind != ST_YNODE_SEQ)
        return st_key_error(node, path, "expected a list of datasets ({path: DIR|TSV, name: NAME}), got %s",
                         st_ynode_describe(node, buf, sizeof buf));
    st_dataset_spec *d = ST_CALLOC((size_t)node->n, sizeof *d);
    int n = 0, rc = 0;
    for (int i = 0; i < node->n && rc == 0; i++) {
        const st_ynode *item = node->items[i];
        char item_path[256], key_path[300];
        st_key_index_path(item_path, sizeof item_path, path, i);
        if (item->kind == ST_YNODE_SCALAR && !st_ynode_is_null(item)) { /* shorthand: just the path */
            d[n].path = st_key_resolve_path(item);
        } else if (item->kind == ST_YNODE_MAP) {
            for (int j = 0; j < item->n && rc == 0; j++) {
                const char *key = item->keys[j]->value;
                st_key_join_path(key_path, sizeof key_path, item_path, key);
                if (!strcmp(key, "path")) {
                    if ((rc = st_key_expect_scalar(item->items[j], key_path, "a path")) == 0) {
                        if (st_ynode_is_null(item->items[j]))
                            rc = st_key_error(item->items[j], key_path, "a path is required");
                        else
                            d[n].path = st_key_resolve_path(item->items[j]);
                    }
                } else if (!strcmp(key, "name")) {
                    rc = st_key_read_string(item->items[j], key_path, &d[n].name);
                } else {
                    rc = st_key_error(item->keys[j], key_path, "unknown key (HINT: a dataset has path and name)");
                }
            }
            if (rc == 0 && !d[n].path) rc = st_key_error(item, item_path, "missing key 'path'");
        } else {
            rc = st_key_error(item, item_path, "expected {path: DIR|TSV, name: NAME}, got %s",
                           st_ynode_describe(item, buf, sizeof buf));
        }
        if (rc == 0 && !d[n].name) d[n].name = default_dataset_name(d[n].path);
        if (d[n].path || d[n].name) n++;
        for (int j = 0; rc == 0 && j < n - 1; j++)
            if (!strcmp(d[j].name, d[n - 1].name))
                rc = st_key_error(item, item_path, "dataset name '%s' is used twice (HINT: give each a distinct name)",
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

static st_ynode *write_datasets(const st_key *k, const void *base) {
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

static int equal_datasets(const st_key *k, const void *a, const void *b) {
    int n = *AT_C(a, k->offset2, int);
    if (n != *AT_C(b, k->offset2, int)) return 0;
    const st_dataset_spec *da = *AT_C(a, k->offset, st_dataset_spec *), *db = *AT_C(b, k->offset, st_dataset_spec *);
    for (int i = 0; i < n; i++)
        if (strcmp(da[i].path, db[i].path) || strcmp(da[i].name, db[i].name)) return 0;
    return 1;
}

static void free_datasets(const st_key *k, void *base) {
    st_dataset_spec *d = *AT(base, k->offset, st_dataset_spec *);
    for (int i = 0; i < *AT(base, k->offset2, int); i++) {
        free(d[i].path);
        free(d[i].name);
    }
    free(d);
    *AT(base, k->offset, st_dataset_spec *) = NULL;
    *AT(base, k->offset2, int) = 0;
}

static const st_key_codec datasets_codec = {read_datasets, write_datasets, equal_datasets, free_datasets};

/* data.val_classes: null, a share of the classes in (0, 1), or a non-empty list of class names. */
static int read_holdout(const st_key *k, const st_ynode *node, void *base, const char *path) {
    st_class_holdout *out = AT(base, k->offset, st_class_holdout);
    st_class_holdout h = {0};
    if (node->kind == ST_YNODE_SEQ) {
        if (st_key_read_strlist(node, path, &h.names, &h.n_names)) return -1;
        if (h.n_names == 0) {
            free(h.names);
            return st_key_error(node, path, "an empty list holds out nothing (HINT: null, or class names)");
        }
    } else if (node->kind == ST_YNODE_SCALAR && !st_ynode_is_null(node)) {
        if (st_yaml_parse_float(node->value, &h.fraction) != 0)
            return st_key_error(node, path, "expected a share of the classes in (0, 1), a list of class names or null, got '%s'",
                             node->value);
        if (!st_key_range_ok(k, h.fraction)) return st_key_range_error(node, path, k, node->value);
    } else if (node->kind != ST_YNODE_SCALAR) {
        char buf[256];
        return st_key_error(node, path, "expected a share in (0, 1) or a list of class names, got %s",
                         st_ynode_describe(node, buf, sizeof buf));
    }
    st_key_free_strlist(out->names, out->n_names);
    *out = h;
    return 0;
}

static st_ynode *write_holdout(const st_key *k, const void *base) {
    const st_class_holdout *h = AT_C(base, k->offset, st_class_holdout);
    if (h->n_names) return st_key_strlist_node(h->names, h->n_names);
    return h->fraction > 0 ? st_ynode_new_number(h->fraction) : st_ynode_new_scalar("null", 1);
}

static int equal_holdout(const st_key *k, const void *a, const void *b) {
    const st_class_holdout *x = AT_C(a, k->offset, st_class_holdout), *y = AT_C(b, k->offset, st_class_holdout);
    return x->fraction == y->fraction && st_key_strlist_equal(x->names, x->n_names, y->names, y->n_names);
}

static void free_holdout(const st_key *k, void *base) {
    st_class_holdout *h = AT(base, k->offset, st_class_holdout);
    st_key_free_strlist(h->names, h->n_names);
    memset(h, 0, sizeof *h);
}

static const st_key_codec holdout_codec = {read_holdout, write_holdout, equal_holdout, free_holdout};

/* loss.triplet.margin: a hinge margin (double at offset) or 'soft' (int flag at offset2). */
static int read_margin(const st_key *k, const st_ynode *node, void *base, const char *path) {
    double v;
    if (st_key_expect_scalar(node, path, "a number or 'soft'")) return -1;
    if (!strcmp(node->value, "soft")) {
        *AT(base, k->offset2, int) = 1;
        return 0;
    }
    if (st_yaml_parse_float(node->value, &v) != 0)
        return st_key_error(node, path, "expected a number or 'soft', got '%s'", node->value);
    if (!st_key_range_ok(k, v)) return st_key_range_error(node, path, k, node->value);
    *AT(base, k->offset2, int) = 0;
    *AT(base, k->offset, double) = v;
    return 0;
}

static st_ynode *write_margin(const st_key *k, const void *base) {
    return *AT_C(base, k->offset2, int) ? st_ynode_new_scalar("soft", 1)
                                        : st_ynode_new_number(*AT_C(base, k->offset, double));
}

static int equal_margin(const st_key *k, const void *a, const void *b) {
    int soft = *AT_C(a, k->offset2, int);
    return soft == *AT_C(b, k->offset2, int) && (soft || *AT_C(a, k->offset, double) == *AT_C(b, k->offset, double));
}

static void free_nothing(const st_key *k, void *base) {
    (void)k;
    (void)base;
}

static const st_key_codec margin_codec = {read_margin, write_margin, equal_margin, free_nothing};

/* phases: read after every other key (st_config_from_tree), since a phase starts from the
 * top-level values; written, compared and freed with phase_keys. */
static int read_later(const st_key *k, const st_ynode *node, void *base, const char *path) {
    (void)k;
    (void)node;
    (void)base;
    (void)path;
    return 0;
}

static st_ynode *write_phases(const st_key *k, const void *base) {
    st_ynode *seq = st_ynode_new_seq();
    const st_phase_config *p = *AT_C(base, k->offset, st_phase_config *);
    for (int i = 0; i < *AT_C(base, k->offset2, int); i++) st_ynode_seq_add(seq, st_keys_write(phase_keys, &p[i]));
    return seq;
}

static int equal_phases(const st_key *k, const void *a, const void *b) {
    int n = *AT_C(a, k->offset2, int);
    if (n != *AT_C(b, k->offset2, int)) return 0;
    const st_phase_config *pa = *AT_C(a, k->offset, st_phase_config *), *pb = *AT_C(b, k->offset, st_phase_config *);
    for (int i = 0; i < n; i++)
        if (!st_keys_equal(phase_keys, &pa[i], &pb[i])) return 0;
    return 1;
}

static void free_phase_list(st_phase_config *phases, int n) {
    for (int i = 0; i < n; i++) st_keys_free(phase_keys, &phases[i]);
    free(phases);
}

static void free_phases(const st_key *k, void *base) {
    free_phase_list(*AT(base, k->offset, st_phase_config *), *AT(base, k->offset2, int));
    *AT(base, k->offset, st_phase_config *) = NULL;
    *AT(base, k->offset2, int) = 0;
}

static const st_key_codec phases_codec = {read_later, write_phases, equal_phases, free_phases};

/* ---- key tables --------------------------------------------------------------------------- */

/* clang-format off: the key tables read as a reference, one key per line */
#define INF HUGE_VAL
#define F ST_KEY
#define E(key, field, names) ST_KEY_ENUM_OF(key, field, names, 0)
#define PAIR ST_KEY_PAIR
#define SECTION(key, field, table) ST_KEY_SUB(key, field, table, 0)
#define END ST_KEY_END
#define LO_OPEN ST_KEY_LO_OPEN
#define HI_OPEN ST_KEY_HI_OPEN

static const char *const pool_names[] = {"avg", "max", "gem", NULL};
static const char *const strategy_names[] = {"single", "cross", "sequential", NULL};
static const char *const sampler_names[] = {"shuffle", "pk", "balanced", NULL}; /* from ST_SAMPLE_SHUFFLE on */
static const char *const preprocess_names[] = {"auto", "caffe", "tf", "torch", NULL};
static const char *const loss_names[] = {"cross_entropy", "triplet", NULL};
static const char *const mining_names[] = {"batch_hard", "batch_all", NULL}; /* st_loss_config.batch_all 0, 1 */
static const char *const optimizer_names[] = {"sgd", "adam", "adamw", "rmsprop", NULL};
static const char *const schedule_names[] = {"constant", "step", "cosine", "plateau", NULL};
static const char *const device_names[] = {"auto", "cpu", "cuda", NULL};
static const char *const goal_names[] = {"minimize", "maximize", NULL};
static const char *const precision_names[] = {"fp32", "bf16", NULL}; /* st_precision order */

#define STRUCT st_model_section
static const st_key model_keys[] = {
    F("arch", ST_KEY_STR, arch, 0, 0, 0),
    F("weights", ST_KEY_PATH, weights, 0, 0, 0),
    F("image_size", ST_KEY_INT, image_size, 32, 4096, 0),
    E("pool", pool, pool_names),
    F("gem_p", ST_KEY_FLOAT, gem_p, 0, 100, LO_OPEN),
    F("embed_dim", ST_KEY_INT, embed_dim, 0, 65536, 0),
    F("num_classes", ST_KEY_INT, num_classes, 0, 10000000, 0),
    F("bn_momentum", ST_KEY_FLOAT, bn_momentum, 0, 1, LO_OPEN),
    E("precision", precision, precision_names),
    END};
#undef STRUCT

#define STRUCT st_data_section
static const st_key pk_keys[] = {
    F("p", ST_KEY_INT, sampler.p, 2, 100000, 0),
    F("k", ST_KEY_INT, sampler.k, 2, 100000, 0),
    END};
static const st_key augment_keys[] = {
    F("random_resized_crop", ST_KEY_BOOL, random_resized_crop, 0, 0, 0),
    {.name = "scale", .type = ST_KEY_FLOAT2, .offset = offsetof(STRUCT, crop_scale[0]),
     .offset2 = offsetof(STRUCT, crop_scale[1]), .lo = 0, .hi = 1, .flags = LO_OPEN | ST_KEY_ORDERED},
    F("flip", ST_KEY_BOOL, flip, 0, 0, 0),
    F("color_jitter", ST_KEY_FLOAT, color_jitter, 0, 1, 0),
    END};
static const st_key data_keys[] = {
    ST_KEY_WITH("train", &datasets_codec, train, n_train, 0, 0, 0),
    E("strategy", strategy, strategy_names),
    F("val_fraction", ST_KEY_FLOAT, val_fraction, 0, 1, HI_OPEN),
    F("split_seed", ST_KEY_U64, split_seed, 0, 0, 0),
    ST_KEY_WITH("val_classes", &holdout_codec, val_classes, val_classes, 0, 1, LO_OPEN | HI_OPEN),
    F("split_file", ST_KEY_PATH, split_file, 0, 0, 0),
    F("batch_size", ST_KEY_INT, sampler.batch_size, 0, 1000000, 0),
    ST_KEY_FLAT("pk", pk_keys),
    ST_KEY_ENUM_OF("sampler", sampler.mode, sampler_names, ST_SAMPLE_SHUFFLE),
    ST_KEY_FLAT("augment", augment_keys),
    ST_KEY_ENUM_OF("preprocess", preprocess, preprocess_names, ST_CONFIG_PREPROCESS_AUTO),
    F("workers", ST_KEY_INT, workers, 0, 1024, 0),
    END};
#undef STRUCT

#define STRUCT st_loss_config
static const st_key triplet_keys[] = {
    E("mining", batch_all, mining_names),
    ST_KEY_WITH("margin", &margin_codec, margin, soft_margin, 0, 10, LO_OPEN),
    F("normalize", ST_KEY_BOOL, normalize, 0, 0, 0),
    END};
static const st_key loss_keys[] = {
    E("type", kind, loss_names),
    F("label_smoothing", ST_KEY_FLOAT, label_smoothing, 0, 1, HI_OPEN),
    ST_KEY_FLAT("triplet", triplet_keys),
    END};
#undef STRUCT

#define STRUCT st_optim_config
static const st_key optimizer_keys[] = {
    E("type", kind, optimizer_names),
    F("lr", ST_KEY_FLOAT, lr, 0, 100, LO_OPEN),
    F("momentum", ST_KEY_FLOAT, momentum, 0, 1, HI_OPEN),
    F("alpha", ST_KEY_FLOAT, alpha, 0, 1, LO_OPEN | HI_OPEN),
    F("nesterov", ST_KEY_BOOL, nesterov, 0, 0, 0),
    {.name = "betas", .type = ST_KEY_FLOAT2, .offset = offsetof(STRUCT, beta1), .offset2 = offsetof(STRUCT, beta2),
     .lo = 0, .hi = 1, .flags = HI_OPEN},
    F("eps", ST_KEY_FLOAT, eps, 0, 1, LO_OPEN),
    F("weight_decay", ST_KEY_FLOAT, weight_decay, 0, 1, 0),
    F("no_decay_bn_bias", ST_KEY_BOOL, decay_norm_and_bias, 0, 0, ST_KEY_NEGATE),
    F("head_lr_mult", ST_KEY_FLOAT, head_lr_mult, 0, 1000, LO_OPEN),
    F("grad_clip", ST_KEY_FLOAT, clip_norm, 0, INF, 0),
    END};
#undef STRUCT

#define STRUCT st_lr_schedule
static const st_key schedule_keys[] = {
    E("type", kind, schedule_names),
    F("warmup_epochs", ST_KEY_FLOAT, warmup, 0, 100000, 0),
    F("step_size", ST_KEY_INT, step_size, 1, 100000, 0),
    F("gamma", ST_KEY_FLOAT, gamma, 0, 1, LO_OPEN),
    F("min_lr", ST_KEY_FLOAT, min_lr, 0, 100, 0),
    F("patience", ST_KEY_INT, patience, 1, 100000, 0),
    F("factor", ST_KEY_FLOAT, factor, 0, 1, LO_OPEN | HI_OPEN),
    END};
#undef STRUCT

#define STRUCT st_early_stopping_config
static const st_key early_stopping_keys[] = {
    F("metric", ST_KEY_STR, metric, 0, 0, 0),
    E("goal", maximize, goal_names),
    F("patience", ST_KEY_INT, patience, 0, 100000, 0),
    F("restore_best", ST_KEY_BOOL, restore_best, 0, 0, 0),
    END};
#undef STRUCT

#define STRUCT st_validation_config
static const st_key validation_keys[] = {
    F("every", ST_KEY_INT, every, 1, 100000, 0),
    ST_KEY_WITH("metrics", &metrics_codec, metrics, n_metrics, 0, 0, 0),
    F("k", ST_KEY_INT, k, 0, 1000000, 0),
    END};
#undef STRUCT

#define STRUCT st_output_config
static const st_key output_keys[] = {
    F("dir", ST_KEY_STR, dir, 0, 0, 0),
    F("name", ST_KEY_OPTSTR, name, 0, 0, 0),
    F("keep_last", ST_KEY_INT, keep_last, 0, 100000, 0),
    F("save_best", ST_KEY_BOOL, save_best, 0, 0, 0),
    END};
#undef STRUCT

#define STRUCT st_phase_config
static const st_key phase_keys[] = {
    F("name", ST_KEY_STR, name, 0, 0, 0),
    F("epochs", ST_KEY_INT, epochs, 1, 100000, 0),
    F("freeze_until", ST_KEY_STR, freeze_until, 0, 0, 0),
    SECTION("optimizer", optimizer, optimizer_keys),
    SECTION("schedule", schedule, schedule_keys),
    PAIR("data", ST_KEY_STRLIST, data, n_data),
    SECTION("early_stopping", early_stopping, early_stopping_keys),
    END};
#undef STRUCT

#define STRUCT st_train_config
static const st_key top_keys[] = {
    SECTION("model", model, model_keys),
    SECTION("data", data, data_keys),
    SECTION("loss", loss, loss_keys),
    SECTION("optimizer", optimizer, optimizer_keys),
    SECTION("schedule", schedule, schedule_keys),
    F("freeze_until", ST_KEY_STR, freeze_until, 0, 0, 0),
    ST_KEY_WITH("phases", &phases_codec, phases, n_phases, 0, 0, 0),
    F("epochs", ST_KEY_INT, epochs, 1, 100000, 0),
    F("seed", ST_KEY_U64, seed, 0, 0, 0),
    E("device", device, device_names),
    F("threads", ST_KEY_INT, threads, 0, 4096, 0),
    F("divergence_factor", ST_KEY_FLOAT, divergence_factor, 0, 1e12, 0),
    F("sync_bn", ST_KEY_BOOL, sync_bn, 0, 0, 0),
    SECTION("validation", validation, validation_keys),
    SECTION("early_stopping", early_stopping, early_stopping_keys),
    SECTION("output", output, output_keys),
    END};
#undef STRUCT
#undef F
#undef E
#undef PAIR
#undef SECTION
#undef END
/* clang-format on */

/* ---- defaults and freeing ---------------------------------------------------------------- */

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
                                .sampler = {.mode = ST_SAMPLE_SHUFFLE, .p = 8, .k = 4},
                                .random_resized_crop = 1,
                                .crop_scale = {0.08, 1.0},
                                .flip = 1,
                                .preprocess = ST_CONFIG_PREPROCESS_AUTO};
    c->loss = (st_loss_config){.kind = ST_LOSS_XENT, .batch_all = 0, .margin = 0.2, .normalize = 1};
    c->optimizer = (st_optim_config){.kind = ST_OPT_SGD,
                                     .lr = 0.01,
                                     .momentum = 0.9,
                                     .alpha = 0.99,
                                     .beta1 = 0.9,
                                     .beta2 = 0.999,
                                     .eps = 1e-8,
                                     .weight_decay = 1e-4,
                                     .decay_norm_and_bias = 0,
                                     .head_lr_mult = 1.0};
    /* torch's threshold and cooldown for plateau; base_lr, total and mode_max are the phase's */
    c->schedule = st_lr_schedule_default(ST_LR_COSINE, c->optimizer.lr);
    c->schedule.step_size = 10;
    c->schedule.gamma = 0.1;
    c->schedule.patience = 3;
    c->schedule.factor = 0.1;
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

void st_config_free(st_train_config *cfg) { st_keys_free(top_keys, cfg); }

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
        return st_key_error(node, "phases", "expected a list of phases, got %s", st_ynode_describe(node, buf, sizeof buf));
    free_phase_list(c->phases, c->n_phases);
    c->phases = ST_CALLOC((size_t)node->n, sizeof *c->phases);
    c->n_phases = node->n;
    for (int i = 0; i < node->n; i++) phase_inherit(&c->phases[i], c, i);
    for (int i = 0; i < node->n; i++) {
        char path[64];
        snprintf(path, sizeof path, "phases.%d", i);
        const st_ynode *item = node->items[i];
        st_phase_config *p = &c->phases[i];
        p->epochs = 0;
        if (st_keys_read(item, phase_keys, p, path) != 0) return -1;
        if (p->epochs == 0) return st_key_error(item, path, "missing key 'epochs'");
        for (int j = 0; j < i; j++)
            if (!strcmp(c->phases[j].name, p->name))
                return st_key_error(item, path, "phase name '%s' is used twice", p->name);
        for (int d = 0; d < p->n_data; d++) {
            int found = 0;
            for (int t = 0; t < c->data.n_train; t++) found |= !strcmp(p->data[d], c->data.train[t].name);
            const st_ynode *where = st_ynode_get(item, "data") ? st_ynode_get(item, "data") : item;
            if (!found) return st_key_error(where, path, "dataset '%s' is not in data.train", p->data[d]);
        }
        if (p->n_data == 0) return st_key_error(item, path, "data: a phase needs at least one dataset");
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
    int xent = c->loss.kind == ST_LOSS_XENT;
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
        return st_key_error(node_at(root, full), full, "%s", msg);
    }
    const st_data_section *d = &c->data;
    int has_val = d->val_fraction > 0 || d->strategy == ST_STRATEGY_CROSS || d->val_classes.fraction > 0 ||
                  d->val_classes.n_names > 0 || d->split_file;
    if (!strncmp(es->metric, "val/", 4) && !has_val)
        return st_key_error(node_at(root, full), full,
                         "'%s' needs a validation set (HINT: set data.val_fraction > 0, data.val_classes or "
                         "strategy: cross)",
                         es->metric);
    return 0;
}

static int check_rules(const st_ynode *root, st_train_config *c) {
    if (!st_arch_find(c->model.arch))
        return st_key_error(node_at(root, "model.arch"), "model.arch", "unknown architecture '%s' (HINT: one of %s)",
                         c->model.arch, st_arch_names());
    if (c->data.n_train == 0)
        return st_key_error(node_at(root, "data.train"), "data.train",
                         "at least one dataset is required (HINT: train: [{path: DIR, name: NAME}])");
    if (c->data.strategy == ST_STRATEGY_CROSS && c->data.n_train < 2)
        return st_key_error(node_at(root, "data.strategy"), "data.strategy",
                         "cross trains on all datasets but the last and validates on the last: it needs 2 or more");
    int holds_classes = c->data.val_classes.fraction > 0 || c->data.val_classes.n_names > 0;
    if (c->data.strategy == ST_STRATEGY_CROSS && holds_classes)
        return st_key_error(node_at(root, "data.val_classes"), "data.val_classes",
                         "strategy cross already validates on classes never trained on (the last dataset's) "
                         "(HINT: drop val_classes, or use strategy single)");
    int pk = c->data.sampler.p * c->data.sampler.k;
    if (c->data.sampler.mode == ST_SAMPLE_PK && c->data.sampler.batch_size != 0 && c->data.sampler.batch_size != pk)
        return st_key_error(node_at(root, "data.batch_size"), "data.batch_size",
                         "%d differs from pk.p * pk.k = %d with sampler pk (HINT: set batch_size: 0)",
                         c->data.sampler.batch_size, pk);
    if (c->loss.kind == ST_LOSS_TRIPLET) {
        if (c->data.sampler.mode != ST_SAMPLE_PK)
            return st_key_error(node_at(root, "data.sampler"), "data.sampler",
                             "loss triplet needs positives in every batch (HINT: sampler: pk)");
        if (c->model.num_classes != 0)
            return st_key_error(node_at(root, "model.num_classes"), "model.num_classes",
                             "must be 0 with loss triplet (no classifier head)");
    }
    if (!strcmp(c->freeze_until, ""))
        return st_key_error(node_at(root, "freeze_until"), "freeze_until", "empty (HINT: none, all or a layer name)");
    int max_k = 1;
    for (int i = 0; i < c->validation.n_metrics; i++)
        if (metric_k(c->validation.metrics[i]) > max_k) max_k = metric_k(c->validation.metrics[i]);
    if (c->validation.k == 0)
        c->validation.k = max_k;
    else if (c->validation.k < max_k)
        return st_key_error(node_at(root, "validation.k"), "validation.k",
                         "%d is smaller than the largest @K %d in metrics", c->validation.k, max_k);
    if (c->schedule.kind == ST_LR_COSINE && c->schedule.min_lr > c->optimizer.lr)
        return st_key_error(node_at(root, "schedule.min_lr"), "schedule.min_lr", "%g is larger than optimizer.lr %g",
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
            return st_key_error(node_at(root, "epochs"), "epochs",
                             "%d differs from the phases' total %d (HINT: drop epochs when using phases)", c->epochs,
                             sum);
        c->epochs = sum;
    }
    return 0;
}

int st_config_from_tree(const st_ynode *root, st_train_config *cfg) {
    st_config_defaults(cfg);
    int rc = st_keys_read(root, top_keys, cfg, "");
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

/* ---- writing and comparing ------------------------------------------------------------------ */

st_ynode *st_config_to_tree(const st_train_config *cfg) {
    st_ynode *root = st_keys_write(top_keys, cfg);
    if (cfg->n_phases == 0) st_ynode_remove(root, "phases");
    return root;
}

static const char effective_header[] = "simtune effective train config: every key explicit (docs/config.md).\n"
                                       "Input paths are absolute; run it with: simtune train --config THIS_FILE";

char *st_config_yaml_text(const st_train_config *cfg) {
    st_ynode *root = st_config_to_tree(cfg);
    char *text = st_yaml_text(root, effective_header);
    st_ynode_free(root);
    return text;
}

int st_config_write_yaml(const st_train_config *cfg, const char *path) {
    st_ynode *root = st_config_to_tree(cfg);
    int rc = st_yaml_write_file(root, path, effective_header);
    st_ynode_free(root);
    return rc;
}

int st_config_equal(const st_train_config *a, const st_train_config *b) { return st_keys_equal(top_keys, a, b); }

/* ---- helpers for commands ------------------------------------------------------------------------ */

int st_config_batch_size(const st_train_config *cfg) {
    const st_sampler_config *s = &cfg->data.sampler;
    if (s->batch_size) return s->batch_size;
    return s->mode == ST_SAMPLE_PK ? s->p * s->k : 32;
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
