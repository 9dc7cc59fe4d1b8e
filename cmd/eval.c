/*
 * eval.c: `simtune eval`, retrieval metrics of embedding files under a protocol
 * (infer/eval.h), written to an output directory by the report writers (infer/report.h):
 *
 *   report.json  protocol, options, sizes, metrics (mean over splits), metrics_std, per_split
 *   run.trec     TREC run of the first split: "topic Q0 docno rank score simtune"
 *   qrels.txt    TREC qrels of the first split: "topic 0 docno 1" for every relevant gallery row
 *   topk.json    per query of the first split: query path, top-k paths, scores, hit flags
 *   index.html   contact sheet: queries with their top-k thumbnails, hits framed green
 * (rank100 writes report.json, topk.json and index.html; its 100 candidates are not a ranking
 * of the gallery, so there is no run file.) The summary goes to stdout.
 */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "data/base/fileio.h"
#include "infer/embeddings_h5.h"
#include "infer/eval.h"
#include "infer/report.h"
#include "kernels/check.h"

enum { SHEET_DEFAULT = 50 };

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune eval --embeddings E.h5 [--protocol split|loo|rank100] --out DIR [options]\n"
            "       simtune eval --gallery G.h5 --queries Q.h5 --out DIR [options]\n\n"
            "Retrieval metrics of labelled embeddings (hit@k, precision@k, map@k, map@r, r-precision,\n"
            "map, mrr, mean/median rank of the first relevant item).\n\n"
            "  --embeddings FILE     one labelled embedding file, split by --protocol\n"
            "  --protocol NAME       split (default): stratified query/gallery split, repeated;\n"
            "                        loo: each row against all others; rank100: 1 positive + 99\n"
            "                        negatives per query\n"
            "  --splits R            split repetitions (default 10); mean and std are reported\n"
            "  --query-fraction F    split: share of each class used as queries (default 0.2)\n"
            "  --seed S              split and rank100 sampling seed (default 0)\n"
            "  --gallery FILE        explicit gallery (with --queries; labels matched by name)\n"
            "  --queries FILE        explicit queries\n"
            "  -k, --k K             extra cutoff besides 1, 5, 10 and results per query in\n"
            "                        topk.json / index.html (default 10)\n"
            "  --depth D             ranking depth for map and run.trec (default 1000; raised to\n"
            "                        cover k, 100 and the largest class, capped at the gallery)\n"
            "  --metric NAME         cosine | ip | l2 (default cosine)\n"
            "  --pca D               PCA to D dimensions fitted on the gallery (default off)\n"
            "  --whiten              PCA whitening (with --pca)\n"
            "  --qe N                alpha query expansion with the top N results (default off)\n"
            "  --qe-alpha A          query expansion exponent (default 3)\n"
            "  --diffusion           diffusion re-ranking on the gallery's mutual k-NN graph\n"
            "                        (gamma 3, 20 conjugate-gradient iterations)\n"
            "  --diffusion-k K       graph and query neighbours (default 50; keep it near the\n"
            "                        class size: far larger k mixes classes and ranks by\n"
            "                        graph centrality)\n"
            "  --diffusion-alpha A   restart weight in (0, 1) (default 0.99)\n"
            "  --sheet N             queries shown in index.html (default %d)\n"
            "  --threads T           CPU threads (default 0 = all cores)\n"
            "  --device NAME         cpu | cuda (default cpu)\n"
            "  --out DIR             output directory (created if missing)\n"
            "  -h, --help            this text\n\n"
            "Queries with no relevant gallery item are excluded from every average (counted in\n"
            "report.json excluded_queries). run.trec + qrels.txt reproduce map and map_cut of\n"
            "the first split with trec_eval.\n",
            SHEET_DEFAULT);
}

static int bad_usage(const char *msg) { return st_cli_usage_error("eval", msg); }

typedef struct eval_args {
    st_eval_options o;
    const char *embeddings, *gallery, *queries, *out, *device;
    int threads, sheet, protocol_given, help;
} eval_args;

enum { O_EMB = 256, O_PROTOCOL, O_SPLITS, O_FRACTION, O_SEED, O_GALLERY, O_QUERIES, O_DEPTH, O_METRIC, O_PCA,
       O_WHITEN, O_QE, O_QE_ALPHA, O_DIFFUSION, O_DIFFUSION_K, O_DIFFUSION_ALPHA, O_SHEET, O_THREADS, O_DEVICE,
       O_OUT };

static const struct option options[] = {
    {"embeddings", required_argument, NULL, O_EMB}, {"protocol", required_argument, NULL, O_PROTOCOL},
    {"splits", required_argument, NULL, O_SPLITS}, {"query-fraction", required_argument, NULL, O_FRACTION},
    {"seed", required_argument, NULL, O_SEED},     {"gallery", required_argument, NULL, O_GALLERY},
    {"queries", required_argument, NULL, O_QUERIES}, {"k", required_argument, NULL, 'k'},
    {"depth", required_argument, NULL, O_DEPTH},   {"metric", required_argument, NULL, O_METRIC},
    {"pca", required_argument, NULL, O_PCA},       {"whiten", no_argument, NULL, O_WHITEN},
    {"qe", required_argument, NULL, O_QE},         {"qe-alpha", required_argument, NULL, O_QE_ALPHA},
    {"diffusion", no_argument, NULL, O_DIFFUSION}, {"diffusion-k", required_argument, NULL, O_DIFFUSION_K},
    {"diffusion-alpha", required_argument, NULL, O_DIFFUSION_ALPHA}, {"sheet", required_argument, NULL, O_SHEET},
    {"threads", required_argument, NULL, O_THREADS}, {"device", required_argument, NULL, O_DEVICE},
    {"out", required_argument, NULL, O_OUT},       {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

/* A float option in (0, 1), both ends excluded: 0, or 2 after the usage error. */
static int open_unit_option(const char *option, const char *arg, double *out) {
    if (st_cli_double_option("eval", option, arg, 0, 1, out)) return 2;
    if (*out == 0 || *out == 1) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be between 0 and 1", option);
        return bad_usage(msg);
    }
    return 0;
}

/* The options with a numeric value: 0, or 2 after the usage error. */
static int parse_number(int c, const char *arg, eval_args *a) {
    st_eval_options *o = &a->o;
    double value; /* a float option, parsed as a double */
    int rc;
    switch (c) {
    case O_SPLITS: return st_cli_int_option("eval", "--splits", arg, 1, INT_MAX, &o->splits);
    case O_FRACTION: return open_unit_option("--query-fraction", arg, &o->query_fraction);
    case O_SEED: return st_cli_u64_option("eval", "--seed", arg, UINT64_MAX, &o->seed);
    case 'k': return st_cli_int_option("eval", "-k", arg, 1, INT_MAX, &o->k);
    case O_DEPTH: return st_cli_int_option("eval", "--depth", arg, 1, INT_MAX, &o->depth);
    case O_PCA: return st_cli_int_option("eval", "--pca", arg, 1, INT_MAX, &o->pca_dims);
    case O_QE: return st_cli_int_option("eval", "--qe", arg, 1, INT_MAX, &o->qe);
    case O_QE_ALPHA:
        rc = st_cli_double_option("eval", "--qe-alpha", arg, 0, HUGE_VAL, &value);
        if (!rc) o->qe_alpha = (float)value;
        return rc;
    case O_DIFFUSION_K: return st_cli_int_option("eval", "--diffusion-k", arg, 1, INT_MAX, &o->diffusion_options.k);
    case O_DIFFUSION_ALPHA:
        rc = open_unit_option("--diffusion-alpha", arg, &value);
        if (!rc) o->diffusion_options.alpha = (float)value;
        return rc;
    case O_SHEET: return st_cli_int_option("eval", "--sheet", arg, 0, INT_MAX, &a->sheet);
    case O_THREADS: return st_cli_int_option("eval", "--threads", arg, 0, INT_MAX, &a->threads);
    }
    ST_CHECK(0, "option %d has no parser", c);
    return 2;
}

/* Options that only make sense together: 0, or 2 after the usage error. */
static int check_args(eval_args *a) {
    if (!a->out) return bad_usage("--out DIR is required");
    if (a->embeddings && (a->gallery || a->queries)) return bad_usage("give --embeddings or --gallery/--queries, not both");
    if (!a->embeddings && !(a->gallery && a->queries))
        return bad_usage("give --embeddings, or both --gallery and --queries");
    if (!a->embeddings && a->protocol_given) return bad_usage("--protocol applies to --embeddings only");
    if (a->o.whiten && !a->o.pca_dims) return bad_usage("--whiten needs --pca D");
    if (!a->embeddings) a->o.protocol = ST_PROTOCOL_FILES;
    return 0;
}

/* argv into a: 0 to go on (a->help: --help was printed), or 2 after the usage error. */
static int parse_args(int argc, char **argv, eval_args *a) {
    memset(a, 0, sizeof *a);
    st_eval_defaults(&a->o);
    a->device = "cpu";
    a->sheet = SHEET_DEFAULT;
    int c, rc = 0;
    optind = 1;
    opterr = 0; /* our own message below names the option */
    while (rc == 0 && (c = getopt_long(argc, argv, ":k:h", options, NULL)) != -1) {
        switch (c) {
        case O_EMB: a->embeddings = optarg; break;
        case O_GALLERY: a->gallery = optarg; break;
        case O_QUERIES: a->queries = optarg; break;
        case O_OUT: a->out = optarg; break;
        case O_DEVICE: a->device = optarg; break;
        case O_WHITEN: a->o.whiten = 1; break;
        case O_DIFFUSION: a->o.diffusion = 1; break;
        case O_PROTOCOL:
            if (st_protocol_parse(optarg, &a->o.protocol) != 0) return bad_usage(st_error_get());
            a->protocol_given = 1;
            break;
        case O_METRIC:
            if (st_metric_parse(optarg, &a->o.metric) != 0) return bad_usage(st_error_get());
            break;
        case 'h': usage(stdout); a->help = 1; return 0;
        case ':':
        case '?': return st_cli_bad_option("eval", c, argv[optind - 1]);
        default: rc = parse_number(c, optarg, a);
        }
    }
    if (rc) return rc;
    if (optind < argc) return bad_usage("unexpected argument");
    return check_args(a);
}

static void print_summary(const st_eval_report *r, const st_eval_options *o, const char *out) {
    printf("%s: %ld queries (%ld excluded), gallery %ld, %s", st_protocol_name(o->protocol), r->queries, r->excluded,
           r->gallery_size, st_metric_name(o->metric));
    if (r->splits > 1) printf(", mean of %d splits", r->splits);
    printf("\n");
    for (int m = 0; m < r->n_metrics; m++) {
        printf("  %-14s %.4f", r->names[m], r->mean[m]);
        if (r->splits > 1) printf(" +- %.4f", r->std[m]);
        printf("\n");
    }
    printf("wrote %s/report.json\n", out);
}

/* Read the files, evaluate, write the reports: 0, or 1 after the error message. */
static int evaluate(const eval_args *a) {
    st_embeddings data = {0}, qdata = {0};
    st_backend *be = NULL;
    st_eval_report report = {0};
    int rc = 1, have_report = 0;
    const char *data_path = a->embeddings ? a->embeddings : a->gallery;
    if (st_embeddings_read(data_path, &data) != 0) goto done;
    if (!a->embeddings && st_embeddings_read(a->queries, &qdata) != 0) goto done;
    if (st_mkdirs(a->out) != 0) goto done;
    be = st_backend_open(a->device, a->threads);
    if (!be) goto done;
    const st_embeddings *queries = a->embeddings ? NULL : &qdata;
    if (st_eval_run(be, &a->o, &data, data_path, queries, a->queries, &report) != 0) goto done;
    have_report = 1;
    st_eval_outputs x = {&a->o, &report, &data, queries ? queries : &data, data_path,
                         a->embeddings ? a->embeddings : a->queries, a->o.k, a->sheet};
    if (st_report_eval_dir(a->out, &x) != 0) goto done;
    print_summary(&report, &a->o, a->out);
    rc = 0;
done:
    if (rc) fprintf(stderr, "simtune eval: %s\n", st_error_get());
    if (have_report) st_eval_report_free(&report);
    st_backend_close(be);
    st_embeddings_free(&data);
    st_embeddings_free(&qdata);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc || a.help) return rc;
    return evaluate(&a);
}
