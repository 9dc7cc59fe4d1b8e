/*
 * eval.c: `simtune eval`, retrieval metrics of embedding files under a protocol
 * (infer/eval.h), written to an output directory:
 *
 *   report.json  protocol, options, sizes, metrics (mean over splits), metrics_std, per_split
 *   run.trec     TREC run of the first split: "topic Q0 docno rank score simtune"
 *   qrels.txt    TREC qrels of the first split: "topic 0 docno 1" for every relevant gallery row
 *   topk.json    per query of the first split: query path, top-k paths, scores, hit flags
 *   index.html   contact sheet: queries with their top-k thumbnails, hits framed green
 * (rank100 writes report.json, topk.json and index.html; its 100 candidates are not a ranking
 * of the gallery, so there is no run file.)
 *
 * The run file reproduces our numbers in trec_eval (`trec_eval -m map -m map_cut qrels.txt
 * run.trec`): trec_eval ignores the rank column, sorts by score descending and breaks ties by
 * docno in DESCENDING strcmp order, while we break ties by the LOWER gallery row. So the score
 * column is the exact float we ranked by (printed with 9 significant digits, which round-trips a
 * float), and docno = "<N-1-row zero-padded>_<row>": the fixed-width complement makes descending
 * strcmp order equal ascending row order, and the suffix keeps the row readable. Topics are
 * "q<query row>"; queries we exclude (no relevant gallery row) have no qrels line, so trec_eval
 * leaves them out of its average exactly as we do.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "data/fileio.h"
#include "infer/embeddings_h5.h"
#include "infer/eval.h"
#include "infer/html.h"
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

/* ---- small writers ----------------------------------------------------------------------- */

/* Open DIR/name.tmp for an atomic write, finished by st_atomic_commit (data/fileio.h). */
static FILE *open_tmp(const char *dir, const char *name, char *tmp, char *final, size_t size) {
    snprintf(final, size, "%s/%s", dir, name);
    return st_atomic_open(final, tmp, size);
}

typedef struct {
    const char *out_dir;
    const st_eval_options *o;
    const st_embeddings *gallery, *queries; /* queries == gallery except for protocol files */
    const char *gallery_path, *queries_path;
    const st_eval_report *r;
    int sheet;
} outputs;

static void docno(char *buf, size_t size, long n_rows, int64_t row) {
    int width = snprintf(NULL, 0, "%ld", n_rows > 1 ? n_rows - 1 : 0);
    snprintf(buf, size, "%0*ld_%ld", width, n_rows - 1 - (long)row, (long)row);
}

static void metrics_object(FILE *f, const st_eval_report *r, const double *values) {
    fputc('{', f);
    for (int m = 0; m < r->n_metrics; m++) fprintf(f, "%s\"%s\": %.8g", m ? ", " : "", r->names[m], values[m]);
    fputc('}', f);
}

static int write_report(const outputs *x) {
    char tmp[PATH_MAX], final[PATH_MAX];
    FILE *f = open_tmp(x->out_dir, "report.json", tmp, final, sizeof tmp);
    if (!f) return -1;
    const st_eval_report *r = x->r;
    const st_eval_options *o = x->o;
    fprintf(f, "{\n  \"protocol\": \"%s\",\n  \"metric\": \"%s\",\n", st_protocol_name(o->protocol),
            st_metric_name(o->metric));
    fprintf(f, "  \"%s\": ", o->protocol == ST_PROTOCOL_FILES ? "gallery" : "embeddings");
    st_cli_json_string(f, x->gallery_path);
    if (o->protocol == ST_PROTOCOL_FILES) {
        fprintf(f, ",\n  \"queries_file\": ");
        st_cli_json_string(f, x->queries_path);
    }
    fprintf(f, ",\n  \"k\": %d,\n", o->k);
    if (o->protocol == ST_PROTOCOL_RANK100)
        fprintf(f, "  \"candidates_per_query\": %d,\n", r->depth);
    else
        fprintf(f, "  \"depth\": %d,\n  \"map_is_full_ranking\": %s,\n", r->depth,
                r->depth >= r->gallery_size ? "true" : "false");
    fprintf(f, "  \"splits\": %d,\n  \"query_fraction\": %g,\n  \"seed\": %llu,\n", r->splits,
            o->query_fraction, (unsigned long long)o->seed);
    fprintf(f, "  \"postprocess\": {\"pca\": %d, \"whiten\": %s, \"qe\": %d, \"qe_alpha\": %g, "
               "\"diffusion\": %s, \"diffusion_k\": %d, \"diffusion_alpha\": %g},\n",
            o->pca_dims, o->whiten ? "true" : "false", o->qe, o->qe_alpha,
            o->diffusion ? "true" : "false", o->diffusion_options.k, o->diffusion_options.alpha);
    fprintf(f, "  \"gallery_size\": %ld,\n  \"queries\": %ld,\n  \"excluded_queries\": %ld,\n",
            r->gallery_size, r->queries, r->excluded);
    fprintf(f, "  \"excluded_policy\": \"queries without a relevant gallery item are left out of "
               "every average (trec_eval does the same: they have no qrels line)\",\n");
    fprintf(f, "  \"notes\": \"hit@k is trec_eval success.k and the Recall@K of metric learning; "
               "map@k is trec_eval map_cut.k (divided by all relevant items R); map@r and "
               "r-precision follow Musgrave et al. 2020; mean_rank/median_rank are the rank of "
               "the first relevant item%s\",\n",
            o->protocol == ST_PROTOCOL_RANK100 ? " (the positive among 100, pessimistic on ties)" : "");
    fprintf(f, "  \"metrics\": ");
    metrics_object(f, r, r->mean);
    fprintf(f, ",\n  \"metrics_std\": ");
    metrics_object(f, r, r->std);
    fprintf(f, ",\n  \"per_split\": [");
    for (int s = 0; s < r->splits; s++) {
        fprintf(f, "%s\n    ", s ? "," : "");
        metrics_object(f, r, r->per_split + (size_t)s * r->n_metrics);
    }
    fprintf(f, "\n  ]");
    if (o->protocol != ST_PROTOCOL_RANK100)
        fprintf(f, ",\n  \"trec\": {\"run\": \"run.trec\", \"qrels\": \"qrels.txt\", \"split\": 0}");
    fprintf(f, "\n}\n");
    return st_atomic_commit(f, tmp, final);
}

/* The searched gallery rows grouped by label (counting sort): class c is
 * members[start[c] .. start[c+1]), ascending rows. */
typedef struct {
    int32_t n_classes;
    long *start;      /* (n_classes + 1) */
    int64_t *members; /* (labelled gallery rows) */
} label_groups;

static label_groups group_by_label(const st_eval_ranking *rk, const int32_t *labels) {
    label_groups g = {0, NULL, NULL};
    for (long i = 0; i < rk->n_gallery; i++)
        if (labels[rk->gallery_rows[i]] + 1 > g.n_classes) g.n_classes = labels[rk->gallery_rows[i]] + 1;
    g.start = ST_CALLOC((size_t)g.n_classes + 1, sizeof(long));
    g.members = ST_MALLOC((size_t)(rk->n_gallery ? rk->n_gallery : 1) * sizeof(int64_t));
    for (long i = 0; i < rk->n_gallery; i++)
        if (labels[rk->gallery_rows[i]] >= 0) g.start[labels[rk->gallery_rows[i]] + 1]++;
    for (int32_t c = 0; c < g.n_classes; c++) g.start[c + 1] += g.start[c];
    long *fill = ST_MALLOC((size_t)(g.n_classes ? g.n_classes : 1) * sizeof(long));
    memcpy(fill, g.start, (size_t)g.n_classes * sizeof(long));
    for (long i = 0; i < rk->n_gallery; i++) {
        int32_t l = labels[rk->gallery_rows[i]];
        if (l >= 0) g.members[fill[l]++] = rk->gallery_rows[i];
    }
    free(fill);
    return g;
}

static int write_trec(const outputs *x) {
    const st_eval_ranking *rk = &x->r->first;
    char tmp[PATH_MAX], final[PATH_MAX], tmp2[PATH_MAX], final2[PATH_MAX], doc[48];
    FILE *run = open_tmp(x->out_dir, "run.trec", tmp, final, sizeof tmp);
    if (!run) return -1;
    FILE *qrels = open_tmp(x->out_dir, "qrels.txt", tmp2, final2, sizeof tmp2);
    if (!qrels) {
        fclose(run);
        remove(tmp);
        return -1;
    }
    long n_rows = x->gallery->n;
    label_groups groups = group_by_label(rk, x->gallery->labels);
    for (int i = 0; i < rk->q; i++) {
        if (rk->n_relevant[i] <= 0) continue;
        long qrow = (long)rk->query_rows[i];
        for (int j = 0; j < rk->depth; j++) {
            size_t at = (size_t)i * rk->depth + j;
            if (rk->result_rows[at] < 0) continue;
            docno(doc, sizeof doc, n_rows, rk->result_rows[at]);
            fprintf(run, "q%ld Q0 %s %d %.9g simtune\n", qrow, doc, j + 1, rk->key[at]);
        }
        int32_t l = rk->query_labels[i]; /* R > 0, so l is a gallery class */
        for (long m = groups.start[l]; m < groups.start[l + 1]; m++) {
            int64_t row = groups.members[m];
            if (rk->excludes_self && row == qrow) continue;
            docno(doc, sizeof doc, n_rows, row);
            fprintf(qrels, "q%ld 0 %s 1\n", qrow, doc);
        }
    }
    free(groups.start);
    free(groups.members);
    int rc = st_atomic_commit(run, tmp, final);
    int rc2 = st_atomic_commit(qrels, tmp2, final2);
    return rc || rc2 ? -1 : 0;
}

static const char *row_path(const st_embeddings *e, int64_t row, char *buf, size_t size) {
    if (e->paths) return e->paths[row];
    snprintf(buf, size, "row %lld", (long long)row);
    return buf;
}

static int write_topk_json(const outputs *x) {
    const st_eval_ranking *rk = &x->r->first;
    char tmp[PATH_MAX], final[PATH_MAX], buf[64];
    FILE *f = open_tmp(x->out_dir, "topk.json", tmp, final, sizeof tmp);
    if (!f) return -1;
    int shown = x->o->k < rk->depth ? x->o->k : rk->depth;
    fprintf(f, "{\"k\": %d, \"queries\": [", shown);
    int first = 1;
    for (int i = 0; i < rk->q; i++) {
        if (rk->n_relevant[i] <= 0) continue;
        fprintf(f, "%s\n  {\"query\": ", first ? "" : ",");
        first = 0;
        st_cli_json_string(f, row_path(x->queries, rk->query_rows[i], buf, sizeof buf));
        fprintf(f, ", \"row\": %lld, \"relevant\": %ld, \"results\": [",
                (long long)rk->query_rows[i], rk->n_relevant[i]);
        for (int j = 0; j < shown; j++) {
            size_t at = (size_t)i * rk->depth + j;
            int64_t row = rk->result_rows[at];
            if (row < 0) break;
            fprintf(f, "%s{\"path\": ", j ? ", " : "");
            st_cli_json_string(f, row_path(x->gallery, row, buf, sizeof buf));
            fprintf(f, ", \"row\": %lld, \"score\": %.7g, \"hit\": %s}", (long long)row, rk->score[at],
                    rk->rel[at] ? "true" : "false");
        }
        fprintf(f, "]}");
    }
    fprintf(f, "\n]}\n");
    return st_atomic_commit(f, tmp, final);
}

/* One figure of the sheet: the image linked by its path relative to the sheet (infer/html.h),
 * its row, label, score and metadata columns. */
static void html_image(FILE *f, const char *page, const st_embeddings *e, int64_t row, int hit, float score,
                       int is_query) {
    char buf[64];
    const char *label = e->labels[row] >= 0 && e->label_names ? e->label_names[e->labels[row]] : "";
    fprintf(f, "<figure class=\"%s\">", is_query ? "query" : hit ? "hit" : "miss");
    if (e->paths) {
        fputs("<a href=\"", f);
        st_html_image_url(f, e->paths[row], page, 0);
        fputs("\"><img loading=\"lazy\" src=\"", f);
        st_html_image_url(f, e->paths[row], page, 0);
        fputs("\"></a>", f);
    }
    fputs("<figcaption>", f);
    st_html_text(f, row_path(e, row, buf, sizeof buf));
    fputs("<br>", f);
    st_html_text(f, label);
    if (!is_query) fprintf(f, " %.4f", score);
    for (int c = 0; c < e->n_meta; c++) st_html_metadata(f, e->meta_names[c], e->meta[(size_t)row * e->n_meta + c]);
    fputs("</figcaption></figure>", f);
}

static int write_sheet(const outputs *x) {
    const st_eval_ranking *rk = &x->r->first;
    char tmp[PATH_MAX], final[PATH_MAX];
    FILE *f = open_tmp(x->out_dir, "index.html", tmp, final, sizeof tmp);
    if (!f) return -1;
    int shown = x->o->k < rk->depth ? x->o->k : rk->depth;
    fprintf(f, "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>simtune eval</title>\n"
               "<style>body{font-family:sans-serif} .row{display:flex;gap:6px;margin:8px 0;"
               "align-items:flex-start} figure{margin:0;width:120px;font-size:11px;"
               "word-break:break-all} img{width:112px;height:112px;object-fit:cover;"
               "border:4px solid #ccc} .hit img{border-color:#2a2} .miss img{border-color:#d22}"
               " .query img{border-color:#228} .query{margin-right:16px}</style></head><body>\n");
    fprintf(f, "<h1>simtune eval: %s, %s</h1>\n<p>", st_protocol_name(x->o->protocol),
            st_metric_name(x->o->metric));
    for (int m = 0; m < x->r->n_metrics; m++) fprintf(f, "%s %s = %.4f", m ? "," : "", x->r->names[m], x->r->mean[m]);
    fprintf(f, "</p>\n<p>Blue: query; green: relevant; red: not relevant. First split, top %d.</p>\n", shown);
    int rows = 0;
    for (int i = 0; i < rk->q && rows < x->sheet; i++) {
        if (rk->n_relevant[i] <= 0) continue;
        rows++;
        fputs("<div class=\"row\">", f);
        html_image(f, final, x->queries, rk->query_rows[i], 0, 0.0f, 1);
        for (int j = 0; j < shown; j++) {
            size_t at = (size_t)i * rk->depth + j;
            if (rk->result_rows[at] < 0) break;
            html_image(f, final, x->gallery, rk->result_rows[at], rk->rel[at], rk->score[at], 0);
        }
        fputs("</div>\n", f);
    }
    fputs("</body></html>\n", f);
    return st_atomic_commit(f, tmp, final);
}

/* ---- the command ------------------------------------------------------------------------ */

int cmd_eval(int argc, char **argv) {
    enum { O_EMB = 256, O_PROTOCOL, O_SPLITS, O_FRACTION, O_SEED, O_GALLERY, O_QUERIES, O_DEPTH,
           O_METRIC, O_PCA, O_WHITEN, O_QE, O_QE_ALPHA, O_DIFFUSION, O_DIFFUSION_K,
           O_DIFFUSION_ALPHA, O_SHEET, O_THREADS, O_DEVICE, O_OUT };
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
    st_eval_options o;
    st_eval_defaults(&o);
    const char *emb = NULL, *gallery = NULL, *queries = NULL, *out = NULL, *device = "cpu";
    int threads = 0, sheet = SHEET_DEFAULT, protocol_given = 0, c;
    double value; /* a float option, parsed as a double */
    optind = 1;
    opterr = 0; /* our own message below names the option */
    while ((c = getopt_long(argc, argv, ":k:h", options, NULL)) != -1) {
        switch (c) {
        case O_EMB: emb = optarg; break;
        case O_GALLERY: gallery = optarg; break;
        case O_QUERIES: queries = optarg; break;
        case O_OUT: out = optarg; break;
        case O_DEVICE: device = optarg; break;
        case O_PROTOCOL:
            if (st_protocol_parse(optarg, &o.protocol) != 0) return bad_usage(st_error_get());
            protocol_given = 1;
            break;
        case O_METRIC:
            if (st_metric_parse(optarg, &o.metric) != 0) return bad_usage(st_error_get());
            break;
        case O_SPLITS:
            if (st_cli_int_option("eval", "--splits", optarg, 1, INT_MAX, &o.splits)) return 2;
            break;
        case O_FRACTION:
            if (st_cli_double_option("eval", "--query-fraction", optarg, 0, 1, &o.query_fraction)) return 2;
            if (o.query_fraction == 0 || o.query_fraction == 1)
                return bad_usage("--query-fraction must be between 0 and 1");
            break;
        case O_SEED:
            if (st_cli_u64_option("eval", "--seed", optarg, UINT64_MAX, &o.seed)) return 2;
            break;
        case 'k':
            if (st_cli_int_option("eval", "-k", optarg, 1, INT_MAX, &o.k)) return 2;
            break;
        case O_DEPTH:
            if (st_cli_int_option("eval", "--depth", optarg, 1, INT_MAX, &o.depth)) return 2;
            break;
        case O_PCA:
            if (st_cli_int_option("eval", "--pca", optarg, 1, INT_MAX, &o.pca_dims)) return 2;
            break;
        case O_WHITEN: o.whiten = 1; break;
        case O_QE:
            if (st_cli_int_option("eval", "--qe", optarg, 1, INT_MAX, &o.qe)) return 2;
            break;
        case O_QE_ALPHA:
            if (st_cli_double_option("eval", "--qe-alpha", optarg, 0, HUGE_VAL, &value)) return 2;
            o.qe_alpha = (float)value;
            break;
        case O_DIFFUSION: o.diffusion = 1; break;
        case O_DIFFUSION_K:
            if (st_cli_int_option("eval", "--diffusion-k", optarg, 1, INT_MAX, &o.diffusion_options.k)) return 2;
            break;
        case O_DIFFUSION_ALPHA:
            if (st_cli_double_option("eval", "--diffusion-alpha", optarg, 0, 1, &value)) return 2;
            if (value == 0 || value == 1) return bad_usage("--diffusion-alpha must be between 0 and 1");
            o.diffusion_options.alpha = (float)value;
            break;
        case O_SHEET:
            if (st_cli_int_option("eval", "--sheet", optarg, 0, INT_MAX, &sheet)) return 2;
            break;
        case O_THREADS:
            if (st_cli_int_option("eval", "--threads", optarg, 0, INT_MAX, &threads)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: return st_cli_bad_option("eval", c, argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument");
    if (!out) return bad_usage("--out DIR is required");
    if (emb && (gallery || queries)) return bad_usage("give --embeddings or --gallery/--queries, not both");
    if (!emb && !(gallery && queries)) return bad_usage("give --embeddings, or both --gallery and --queries");
    if (!emb && protocol_given) return bad_usage("--protocol applies to --embeddings only");
    if (o.whiten && !o.pca_dims) return bad_usage("--whiten needs --pca D");
    if (!emb) o.protocol = ST_PROTOCOL_FILES;

    st_embeddings data = {0}, qdata = {0};
    st_backend *be = NULL;
    st_eval_report report = {0};
    int rc = 1, have_report = 0;
    const char *data_path = emb ? emb : gallery;
    if (st_embeddings_read(data_path, &data) != 0) goto done;
    if (!emb && st_embeddings_read(queries, &qdata) != 0) goto done;
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        st_error_set("%s: cannot create the output directory: %s", out, strerror(errno));
        goto done;
    }
    be = st_backend_open(device, threads);
    if (!be) goto done;
    if (st_eval_run(be, &o, &data, data_path, emb ? NULL : &qdata, queries, &report) != 0) goto done;
    have_report = 1;
    outputs x = {out, &o, &data, emb ? &data : &qdata, data_path, emb ? emb : queries, &report, sheet};
    if (write_report(&x) != 0) goto done;
    if (o.protocol != ST_PROTOCOL_RANK100 && write_trec(&x) != 0) goto done;
    if (write_topk_json(&x) != 0 || write_sheet(&x) != 0) goto done;
    printf("%s: %ld queries (%ld excluded), gallery %ld, %s", st_protocol_name(o.protocol),
           report.queries, report.excluded, report.gallery_size, st_metric_name(o.metric));
    if (report.splits > 1) printf(", mean of %d splits", report.splits);
    printf("\n");
    for (int m = 0; m < report.n_metrics; m++) {
        printf("  %-14s %.4f", report.names[m], report.mean[m]);
        if (report.splits > 1) printf(" +- %.4f", report.std[m]);
        printf("\n");
    }
    printf("wrote %s/report.json\n", out);
    rc = 0;
done:
    if (rc) fprintf(stderr, "simtune eval: %s\n", st_error_get());
    if (have_report) st_eval_report_free(&report);
    st_backend_close(be);
    st_embeddings_free(&data);
    st_embeddings_free(&qdata);
    return rc;
}
