/*
 * report.c: the report writers of eval, search and demo (contract in report.h).
 *
 * The run file reproduces our numbers in trec_eval (`trec_eval -m map -m map_cut qrels.txt
 * run.trec`): trec_eval ignores the rank column, sorts by score descending and breaks ties by
 * docno in DESCENDING strcmp order, while we break ties by the LOWER gallery row. So the score
 * column is the exact float we ranked by (printed with 9 significant digits, which round-trips a
 * float), and docno = "<N-1-row zero-padded>_<row>": the fixed-width complement makes descending
 * strcmp order equal ascending row order, and the suffix keeps the row readable. Topics are
 * "q<query row>"; queries we exclude (no relevant gallery row) have no qrels line, so trec_eval
 * leaves them out of its average exactly as we do.
 *
 * Reals keep the precision each file had before it went through jansson: report.json 8
 * significant digits, topk.json 7 (scores), search 6.
 */
#include "report.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/check.h"
#include "data/base/fileio.h"
#include "html.h"
#include "data/base/json.h"

enum { EVAL_JSON_DIGITS = 8, TOPK_JSON_DIGITS = 7, SEARCH_JSON_DIGITS = 6 };

/* ---- rows of an embedding file ------------------------------------------------------------- */

/* The class name of row, NULL when it has none (label -1 or a file without /label_names). */
static const char *label_of(const st_embeddings *e, int64_t row) {
    int32_t l = e->labels[row];
    return l >= 0 && e->label_names ? e->label_names[l] : NULL;
}

static const char *row_path(const st_embeddings *e, int64_t row, char *buf, size_t size) {
    if (e->paths) return e->paths[row];
    snprintf(buf, size, "row %lld", (long long)row);
    return buf;
}

static const char *meta_of(const st_embeddings *e, int64_t row, int c) { return e->meta[(size_t)row * e->n_meta + c]; }

/* "<br>column: value" for each metadata column of row. */
static void html_metadata_of(FILE *f, const st_embeddings *e, int64_t row) {
    for (int c = 0; c < e->n_meta; c++) st_html_metadata(f, e->meta_names[c], meta_of(e, row, c));
}

/* An HTML page written atomically: the frame (infer/html.h) around what body writes. */
typedef void page_body(FILE *f, const char *page_path, const void *ctx);

static int write_page(const char *path, const char *title, const char *css, page_body *body, const void *ctx) {
    char tmp[PATH_MAX];
    FILE *f = st_atomic_open(path, tmp, sizeof tmp);
    if (!f) return -1;
    st_html_page_begin(f, title, css);
    body(f, path, ctx);
    st_html_page_end(f);
    return st_atomic_commit(f, tmp, path);
}

/* ---- report.json --------------------------------------------------------------------------- */

static json_t *metrics_json(const st_eval_report *r, const double *values) {
    json_t *m = json_object();
    for (int i = 0; i < r->n_metrics; i++) json_object_set_new(m, r->names[i], st_json_number(values[i]));
    return m;
}

/* What was evaluated and how: protocol, files, cutoffs, depth, splits, post-processing. */
static json_t *eval_setup_json(const st_eval_outputs *x) {
    const st_eval_options *o = x->options;
    const st_eval_report *r = x->report;
    json_t *j = json_pack("{s:s, s:s}", "protocol", st_protocol_name(o->protocol), "metric", st_metric_name(o->metric));
    int files = o->protocol == ST_PROTOCOL_FILES;
    json_object_set_new(j, files ? "gallery" : "embeddings", st_json_text(x->gallery_path));
    if (files) json_object_set_new(j, "queries_file", st_json_text(x->queries_path));
    json_object_set_new(j, "k", json_integer(o->k));
    if (o->protocol == ST_PROTOCOL_RANK100) {
        json_object_set_new(j, "candidates_per_query", json_integer(r->depth));
    } else {
        json_object_set_new(j, "depth", json_integer(r->depth));
        json_object_set_new(j, "map_is_full_ranking", json_boolean(r->depth >= r->gallery_size));
    }
    json_object_set_new(j, "splits", json_integer(r->splits));
    json_object_set_new(j, "query_fraction", st_json_number(o->query_fraction));
    /* jansson's integers are signed 64-bit: a seed above 2^63-1 can only be written as a real */
    json_object_set_new(j, "seed", o->seed <= INT64_MAX ? json_integer((json_int_t)o->seed) : json_real((double)o->seed));
    json_object_set_new(j, "postprocess",
                        json_pack("{s:i, s:b, s:i, s:o, s:b, s:i, s:o}", "pca", o->pca_dims, "whiten", o->whiten,
                                  "qe", o->qe, "qe_alpha", st_json_float(o->qe_alpha), "diffusion", o->diffusion,
                                  "diffusion_k", o->diffusion_options.k, "diffusion_alpha",
                                  st_json_float(o->diffusion_options.alpha)));
    return j;
}

int st_report_eval_json(const char *path, const st_eval_outputs *x) {
    const st_eval_report *r = x->report;
    int rank100 = x->options->protocol == ST_PROTOCOL_RANK100;
    char notes[512];
    snprintf(notes, sizeof notes,
             "hit@k is trec_eval success.k and the Recall@K of metric learning; map@k is trec_eval map_cut.k "
             "(divided by all relevant items R); map@r and r-precision follow Musgrave et al. 2020; "
             "mean_rank/median_rank are the rank of the first relevant item%s",
             rank100 ? " (the positive among 100, pessimistic on ties)" : "");
    json_t *j = eval_setup_json(x);
    json_object_set_new(j, "gallery_size", json_integer(r->gallery_size));
    json_object_set_new(j, "queries", json_integer(r->queries));
    json_object_set_new(j, "excluded_queries", json_integer(r->excluded));
    json_object_set_new(j, "excluded_policy",
                        json_string("queries without a relevant gallery item are left out of every average "
                                    "(trec_eval does the same: they have no qrels line)"));
    json_object_set_new(j, "notes", json_string(notes));
    json_object_set_new(j, "metrics", metrics_json(r, r->mean));
    json_object_set_new(j, "metrics_std", metrics_json(r, r->std));
    json_t *per_split = json_array();
    for (int s = 0; s < r->splits; s++)
        json_array_append_new(per_split, metrics_json(r, r->per_split + (size_t)s * r->n_metrics));
    json_object_set_new(j, "per_split", per_split);
    if (!rank100)
        json_object_set_new(j, "trec", json_pack("{s:s, s:s, s:i}", "run", "run.trec", "qrels", "qrels.txt", "split", 0));
    int rc = st_json_write_file(path, j, JSON_INDENT(2) | ST_JSON_PRECISION(EVAL_JSON_DIGITS));
    json_decref(j);
    return rc;
}

/* ---- run.trec and qrels.txt ---------------------------------------------------------------- */

static void docno(char *buf, size_t size, long n_rows, int64_t row) {
    int width = snprintf(NULL, 0, "%ld", n_rows > 1 ? n_rows - 1 : 0);
    snprintf(buf, size, "%0*ld_%ld", width, n_rows - 1 - (long)row, (long)row);
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

/* The run lines and qrels lines of every evaluated query of the first split. */
static void write_trec_lines(FILE *run, FILE *qrels, const st_eval_outputs *x) {
    const st_eval_ranking *rk = &x->report->first;
    char doc[48];
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
}

int st_report_trec(const char *run_path, const char *qrels_path, const st_eval_outputs *x) {
    char tmp[PATH_MAX], tmp2[PATH_MAX];
    FILE *run = st_atomic_open(run_path, tmp, sizeof tmp);
    if (!run) return -1;
    FILE *qrels = st_atomic_open(qrels_path, tmp2, sizeof tmp2);
    if (!qrels) {
        st_atomic_abort(run, tmp);
        return -1;
    }
    write_trec_lines(run, qrels, x);
    int rc = st_atomic_commit(run, tmp, run_path);
    int rc2 = st_atomic_commit(qrels, tmp2, qrels_path);
    return rc || rc2 ? -1 : 0;
}

/* ---- topk.json ----------------------------------------------------------------------------- */

static int shown_results(const st_eval_outputs *x) {
    return x->k < x->report->first.depth ? x->k : x->report->first.depth;
}

static json_t *query_results_json(const st_eval_outputs *x, int i) {
    const st_eval_ranking *rk = &x->report->first;
    char buf[64];
    json_t *results = json_array();
    for (int j = 0; j < shown_results(x); j++) {
        size_t at = (size_t)i * rk->depth + j;
        int64_t row = rk->result_rows[at];
        if (row < 0) break;
        json_array_append_new(results, json_pack("{s:o, s:I, s:o, s:b}", "path",
                                                 st_json_text(row_path(x->gallery, row, buf, sizeof buf)), "row",
                                                 (json_int_t)row, "score", st_json_number(rk->score[at]), "hit",
                                                 rk->rel[at]));
    }
    return json_pack("{s:o, s:I, s:I, s:o}", "query",
                     st_json_text(row_path(x->queries, rk->query_rows[i], buf, sizeof buf)), "row",
                     (json_int_t)rk->query_rows[i], "relevant", (json_int_t)rk->n_relevant[i], "results", results);
}

int st_report_topk_json(const char *path, const st_eval_outputs *x) {
    const st_eval_ranking *rk = &x->report->first;
    json_t *queries = json_array();
    for (int i = 0; i < rk->q; i++)
        if (rk->n_relevant[i] > 0) json_array_append_new(queries, query_results_json(x, i));
    json_t *j = json_pack("{s:i, s:o}", "k", shown_results(x), "queries", queries);
    /* one line: a data file that grows with queries x k, not a page to read */
    int rc = st_json_write_file(path, j, ST_JSON_PRECISION(TOPK_JSON_DIGITS));
    json_decref(j);
    return rc;
}

/* ---- index.html (contact sheet) ------------------------------------------------------------ */

/* One figure of the sheet: the image linked by its path relative to the sheet (infer/html.h),
 * its row, label, score and metadata columns. */
static void sheet_figure(FILE *f, const char *page, const st_embeddings *e, int64_t row, const char *css_class,
                         const float *score) {
    char buf[64];
    const char *label = label_of(e, row);
    st_html_figure_begin(f, page, e->paths ? e->paths[row] : NULL, 0, css_class);
    st_html_text(f, row_path(e, row, buf, sizeof buf));
    fputs("<br>", f);
    st_html_text(f, label ? label : "");
    if (score) fprintf(f, " %.4f", *score);
    html_metadata_of(f, e, row);
    fputs("</figcaption></figure>", f);
}

static void sheet_row(FILE *f, const char *page, const st_eval_outputs *x, int i) {
    const st_eval_ranking *rk = &x->report->first;
    fputs("<div class=\"row\">", f);
    sheet_figure(f, page, x->queries, rk->query_rows[i], "query", NULL);
    for (int j = 0; j < shown_results(x); j++) {
        size_t at = (size_t)i * rk->depth + j;
        if (rk->result_rows[at] < 0) break;
        sheet_figure(f, page, x->gallery, rk->result_rows[at], rk->rel[at] ? "hit" : "miss", &rk->score[at]);
    }
    fputs("</div>\n", f);
}

static void sheet_body(FILE *f, const char *page, const void *ctx) {
    const st_eval_outputs *x = ctx;
    const st_eval_report *r = x->report;
    char title[128];
    snprintf(title, sizeof title, "simtune eval: %s, %s", st_protocol_name(x->options->protocol),
             st_metric_name(x->options->metric));
    fputs("<h1>", f);
    st_html_text(f, title);
    fputs("</h1>\n<p>", f);
    for (int m = 0; m < r->n_metrics; m++) {
        fputs(m ? ", " : " ", f);
        st_html_text(f, r->names[m]);
        fprintf(f, " = %.4f", r->mean[m]);
    }
    fprintf(f, "</p>\n<p>Blue: query; green: relevant; red: not relevant. First split, top %d.</p>\n",
            shown_results(x));
    for (int i = 0, rows = 0; i < r->first.q && rows < x->sheet; i++) {
        if (r->first.n_relevant[i] <= 0) continue;
        rows++;
        sheet_row(f, page, x, i);
    }
}

int st_report_contact_sheet(const char *path, const st_eval_outputs *x) {
    return write_page(path, "simtune eval",
                      "body{font-family:sans-serif} .row{display:flex;gap:6px;margin:8px 0;align-items:flex-start} "
                      "figure{margin:0;width:120px;font-size:11px;word-break:break-all} img{width:112px;height:112px;"
                      "object-fit:cover;border:4px solid #ccc} .hit img{border-color:#2a2} .miss img{border-color:#d22}"
                      " .query img{border-color:#228} .query{margin-right:16px}",
                      sheet_body, x);
}

int st_report_eval_dir(const char *dir, const st_eval_outputs *x) {
    char a[PATH_MAX], b[PATH_MAX];
    snprintf(a, sizeof a, "%s/report.json", dir);
    if (st_report_eval_json(a, x) != 0) return -1;
    if (x->options->protocol != ST_PROTOCOL_RANK100) {
        snprintf(a, sizeof a, "%s/run.trec", dir);
        snprintf(b, sizeof b, "%s/qrels.txt", dir);
        if (st_report_trec(a, b, x) != 0) return -1;
    }
    snprintf(a, sizeof a, "%s/topk.json", dir);
    if (st_report_topk_json(a, x) != 0) return -1;
    snprintf(a, sizeof a, "%s/index.html", dir);
    return st_report_contact_sheet(a, x);
}

/* ---- search -------------------------------------------------------------------------------- */

/* 1 relevant, 0 not, -1 unknown (no query label, or the result has none). */
static int relevance(const st_search_results *s, int64_t row) {
    const char *label = label_of(s->index, row);
    if (!s->query_label || !label) return -1;
    return strcmp(label, s->query_label) == 0;
}

static int n_results(const st_search_results *s) {
    int n = 0;
    while (n < s->r->k && s->r->index[n] >= 0) n++;
    return n;
}

void st_report_search_lines(FILE *f, const st_search_results *s) {
    const st_embeddings *e = s->index;
    for (int j = 0; j < n_results(s); j++) {
        int64_t row = s->r->index[j];
        const char *label = label_of(e, row);
        fprintf(f, "%d\t%.6f\t%s\t%s", j + 1, s->r->score[j], label ? label : "", e->paths ? e->paths[row] : "");
        for (int c = 0; c < e->n_meta; c++) fprintf(f, "\t%s=%s", e->meta_names[c], meta_of(e, row, c));
        fputc('\n', f);
    }
}

static int is_fixed_key(const char *name) {
    static const char *keys[] = {"rank", "id", "score", "label", "relevant", "path"};
    for (int i = 0; i < 6; i++)
        if (!strcmp(name, keys[i])) return 1;
    return 0;
}

static json_t *search_result_json(const st_search_results *s, int j) {
    const st_embeddings *e = s->index;
    int64_t row = s->r->index[j];
    int rel = relevance(s, row);
    json_t *o = json_pack("{s:i, s:I, s:o, s:o, s:o, s:o}", "rank", j + 1, "id", (json_int_t)row, "score",
                          st_json_number(s->r->score[j]), "label", st_json_text(label_of(e, row)), "relevant",
                          rel < 0 ? json_null() : json_boolean(rel), "path",
                          st_json_text(e->paths ? e->paths[row] : NULL));
    for (int c = 0; c < e->n_meta; c++) {
        const char *name = e->meta_names[c];
        size_t size = strlen(name) + 6;
        char *key = ST_MALLOC(size);
        snprintf(key, size, "%s%s", is_fixed_key(name) ? "meta_" : "", name);
        json_object_set_new(o, key, st_json_text(meta_of(e, row, c)));
        free(key);
    }
    return o;
}

int st_report_search_json(FILE *f, const st_search_results *s) {
    json_t *results = json_array(), *warnings = json_array();
    for (int j = 0; j < n_results(s); j++) json_array_append_new(results, search_result_json(s, j));
    if (s->warning) json_array_append_new(warnings, st_json_text(s->warning));
    json_t *j = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:{s:o, s:o, s:o}}", "query", st_json_text(s->image),
                          "index", st_json_text(s->index_path), "weights", st_json_text(s->weights), "query_label",
                          st_json_text(s->query_label), "warnings", warnings, "results", results, "timings",
                          "embed_s", st_json_number(s->embed_s), "search_s", st_json_number(s->search_s), "total_s",
                          st_json_number(s->total_s));
    int rc = st_json_print(f, j, JSON_INDENT(2) | ST_JSON_PRECISION(SEARCH_JSON_DIGITS));
    json_decref(j);
    return rc;
}

static void search_result_figure(FILE *f, const char *page, const st_search_results *s, int j, int thumbnails) {
    const st_embeddings *e = s->index;
    int64_t row = s->r->index[j];
    int rel = relevance(s, row);
    const char *path = e->paths ? e->paths[row] : "", *label = label_of(e, row);
    st_html_figure_begin(f, page, path, thumbnails, rel < 0 ? "unknown" : rel ? "relevant" : "irrelevant");
    fprintf(f, "%d. %.4f ", j + 1, s->r->score[j]);
    st_html_text(f, label ? label : "");
    fputs("<br>", f);
    st_html_text(f, path);
    html_metadata_of(f, e, row);
    fputs("</figcaption></figure>\n", f);
}

typedef struct search_page {
    const st_search_results *s;
    int thumbnails;
} search_page;

static void search_body(FILE *f, const char *page, const void *ctx) {
    const st_search_results *s = ((const search_page *)ctx)->s;
    int thumbnails = ((const search_page *)ctx)->thumbnails;
    fputs("<h2>query</h2>\n", f);
    st_html_figure_begin(f, page, s->image, thumbnails, "query");
    st_html_text(f, s->image);
    if (s->query_label) {
        fputs("<br>label: ", f);
        st_html_text(f, s->query_label);
    }
    fputs("</figcaption></figure>\n", f);
    if (s->warning) {
        fputs("<p><strong>warning:</strong> ", f);
        st_html_text(f, s->warning);
        fputs("</p>\n", f);
    }
    fputs("<h2>results</h2>\n", f);
    if (s->query_label) fputs("<p>Green: same label as the query; red: another label; grey: unlabelled.</p>\n", f);
    for (int j = 0; j < n_results(s); j++) search_result_figure(f, page, s, j, thumbnails);
}

int st_report_search_html(const char *path, const st_search_results *s, int thumbnails) {
    search_page ctx = {s, thumbnails};
    return write_page(path, "simtune search",
                      "body{font-family:sans-serif} figure{display:inline-block;vertical-align:top;margin:4px;"
                      "width:160px;font-size:11px;word-break:break-all} img{width:152px;height:152px;"
                      "object-fit:cover;border:4px solid #ccc} .query img{border-color:#228} .relevant img"
                      "{border-color:#2a2} .irrelevant img{border-color:#d22}",
                      search_body, &ctx);
}

/* ---- comparison page ----------------------------------------------------------------------- */

static void comparison_table(FILE *f, const st_comparison_page *p) {
    fputs("<table><tr><th>model</th>", f);
    for (int m = 0; m < p->n_metrics; m++) {
        fputs("<th>", f);
        st_html_text(f, p->headers[m]);
        fputs("</th>", f);
    }
    fputs("</tr>\n", f);
    for (int i = 0; i < p->n_models; i++) {
        fputs("<tr><th>", f);
        st_html_text(f, p->model_names[i]);
        fputs("</th>", f);
        for (int m = 0; m < p->n_metrics; m++) {
            double std, mean = st_eval_report_metric(p->reports[i], p->metrics[m], &std);
            fprintf(f, "<td>%.3f &plusmn; %.3f</td>", mean, std);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void comparison_body(FILE *f, const char *page, const void *ctx) {
    const st_comparison_page *p = ctx;
    (void)page;
    fputs("<h1>", f);
    st_html_text(f, p->title);
    fputs("</h1>\n<p>", f);
    st_html_text(f, p->intro);
    fputs("</p>\n", f);
    comparison_table(f, p);
    fputs("<h2>Look at</h2><ul>\n", f);
    for (int i = 0; i < p->n_links; i++) {
        fputs("<li><a href=\"", f);
        st_html_text(f, p->links[i].href);
        fputs("\">", f);
        st_html_text(f, p->links[i].text);
        fputs("</a></li>\n", f);
    }
    fputs("</ul>\n", f);
}

int st_report_comparison_html(const char *path, const st_comparison_page *p) {
    return write_page(path, p->title,
                      "body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}"
                      "td,th{border:1px solid #999;padding:.3em .8em;text-align:right}",
                      comparison_body, p);
}
