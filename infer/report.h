/*
 * report.h: the report writers of `simtune eval`, `search` and `demo` (and of the sweep, which
 * can reuse them): JSON through libjansson (data/base/json.h), TREC run and qrels files, HTML pages
 * through infer/html.h (every string escaped, images referenced relative to the page). The
 * commands only parse options and call the library; what the files hold is docs/formats.md.
 *
 * Every file is written atomically (data/base/fileio.h); each writer returns 0, or -1 with
 * st_error_set naming the file. Nothing here takes ownership of what it is given.
 *
 * Evaluation (an st_eval_report of infer/eval.h and the files it was computed from):
 *   st_report_eval_dir      every file below into DIR (rank100: no run.trec / qrels.txt, its
 *                           100 candidates are not a ranking of the gallery)
 *   st_report_eval_json     report.json: protocol, options, sizes, metrics (mean over splits),
 *                           metrics_std, per_split; a NaN metric is null
 *   st_report_trec          run.trec ("topic Q0 docno rank score simtune") and qrels.txt
 *                           ("topic 0 docno 1") of the first split, which reproduce map and
 *                           map_cut in trec_eval (see report.c for the docno and score rules)
 *   st_report_topk_json     topk.json: per query of the first split its path, row, number of
 *                           relevant rows and top-k results (path, row, score, hit)
 *   st_report_contact_sheet index.html: the first `sheet` queries of the first split with their
 *                           top-k images, hits framed green, misses red
 * Search (one query image against an index, infer/topk.h):
 *   st_report_search_lines  "rank<TAB>score<TAB>label<TAB>path" then "<TAB>column=value" per
 *                           metadata column, one line per result
 *   st_report_search_json   one object: query, index, weights, query_label, warnings, results
 *                           (rank, id, score, label, relevant, path, metadata columns; a column
 *                           named like a fixed key becomes "meta_<name>"), timings
 *   st_report_search_html   the query and its results, relevant green, irrelevant red
 * Comparison (the demo's report.html): a table of chosen metrics (mean +- std) of several
 * evaluated models and a list of links to the other outputs.
 */
#ifndef ST_REPORT_H
#define ST_REPORT_H

#include <stdio.h>

#include "embeddings_h5.h"
#include "eval.h"
#include "topk.h"

typedef struct st_eval_outputs {
    const st_eval_options *options;
    const st_eval_report *report;
    const st_embeddings *gallery, *queries; /* queries == gallery except for protocol files */
    const char *gallery_path, *queries_path;
    int k;     /* results per query in topk.json and index.html (capped at the ranking depth) */
    int sheet; /* queries shown in index.html */
} st_eval_outputs;

int st_report_eval_dir(const char *dir, const st_eval_outputs *x);
int st_report_eval_json(const char *path, const st_eval_outputs *x);
int st_report_trec(const char *run_path, const char *qrels_path, const st_eval_outputs *x);
int st_report_topk_json(const char *path, const st_eval_outputs *x);
int st_report_contact_sheet(const char *path, const st_eval_outputs *x);

typedef struct st_search_results {
    const char *image, *index_path, *weights;
    const st_embeddings *index;
    const st_topk_result *r; /* one query's results, r->k of them (-1 rows end the list) */
    const char *query_label; /* NULL when unknown */
    const char *warning;     /* the model-mismatch warning, NULL when none */
    double embed_s, search_s, total_s;
} st_search_results;

void st_report_search_lines(FILE *f, const st_search_results *s);
int st_report_search_json(FILE *f, const st_search_results *s);
int st_report_search_html(const char *path, const st_search_results *s, int thumbnails);

typedef struct st_report_link {
    const char *href, *text; /* href relative to the page */
} st_report_link;

typedef struct st_comparison_page {
    const char *title, *intro;                /* plain text */
    const char *const *model_names;           /* (n_models) */
    const st_eval_report *const *reports;     /* (n_models) */
    int n_models;
    const char *const *metrics, *const *headers; /* (n_metrics) report names and column titles */
    int n_metrics;
    const st_report_link *links;              /* (n_links) */
    int n_links;
} st_comparison_page;

int st_report_comparison_html(const char *path, const st_comparison_page *page);

#endif
