/*
 * search.c: `simtune search`, rank an embedding file (the index) for one query image.
 *
 * The query is embedded exactly as the index was (its attributes layer, pooling, gem_p,
 * normalized, image_size; infer/embedder.h) with the given weights, then searched exactly (infer/topk.h).
 * The settings used are printed on stderr. When the index records the identity of the weights
 * that built it (weights_id) and the query's weights differ, a warning says so: the scores
 * would compare vectors of two models.
 *
 * Outputs:
 *   stdout   one line per rank: "rank<TAB>score<TAB>label<TAB>path", then one
 *            "<TAB>column=value" per metadata column of the index; or with --json one object
 *            {"query", "index", "weights", "query_label", "warnings": [...], "results": [{"rank",
 *            "id" (row of the index), "score", "label" (null when unknown), "relevant" (true,
 *            false or null), "path", <metadata columns>...}], "timings": {"embed_s", "search_s",
 *            "total_s"}} (a metadata column named like a fixed key is written as "meta_<name>")
 *   --html   a page with the query and its results (atomically): images referenced relative
 *            to the page (infer/html.h), or inline thumbnails with --embed-thumbnails; each
 *            result linked to its image, with rank, score, label and metadata; a green border
 *            for results with the query's label, red for others, when the query's label is known.
 * The query's label: --query-label, else the label of the index row with the query's path.
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
#include "data/clock.h"
#include "data/fileio.h"
#include "infer/embedder.h"
#include "infer/embeddings_h5.h"
#include "infer/html.h"
#include "infer/topk.h"
#include "kernels/check.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune search --index E.h5 --weights W.h5 --image FILE [-k K] [options]\n\n"
            "Embed one image the way the index was embedded and print its top-k neighbours.\n\n"
            "  --index FILE          embedding file written by `simtune embed`\n"
            "  --weights FILE        the weight file the index was embedded with (a warning\n"
            "                        when the index records other weights)\n"
            "  --image FILE          the query image\n"
            "  -k, --k K             results (default 10)\n"
            "  --metric NAME         cosine | ip | l2 (default cosine)\n"
            "  --query-label NAME    the query's class, to mark results relevant or not (default:\n"
            "                        the label of the index row with the query's path, if any)\n"
            "  --json                print one JSON object (query, results with rank, id, score,\n"
            "                        label, relevant, path and metadata, timings) instead of lines\n"
            "  --html FILE           also write an HTML page with the query and its results;\n"
            "                        images are referenced relative to the page\n"
            "  --embed-thumbnails    put the images into the page as thumbnails (data: URIs), so\n"
            "                        it can be moved or mailed without them\n"
            "  --threads T           CPU threads (default 0 = all cores)\n"
            "  --device NAME         cpu | cuda (default cpu)\n"
            "  -h, --help            this text\n");
}

static int bad_usage(const char *msg) { return st_cli_usage_error("search", msg); }

typedef struct search_view {
    const char *image, *index_path, *weights;
    const st_embeddings *index;
    const st_topk_result *r;
    const char *query_label;  /* NULL when unknown */
    const char *warning;      /* the model-mismatch warning, NULL when none */
    double embed_s, search_s, total_s;
} search_view;

static const char *label_of(const st_embeddings *e, int64_t row) {
    int32_t l = e->labels[row];
    return l >= 0 && e->label_names ? e->label_names[l] : NULL;
}

/* 1 relevant, 0 not, -1 unknown (no query label, or the result has none). */
static int relevance(const search_view *v, int64_t row) {
    const char *label = label_of(v->index, row);
    if (!v->query_label || !label) return -1;
    return strcmp(label, v->query_label) == 0;
}

static const char *meta_of(const st_embeddings *e, int64_t row, int c) { return e->meta[(size_t)row * e->n_meta + c]; }

static void print_lines(const search_view *v) {
    const st_embeddings *e = v->index;
    for (int j = 0; j < v->r->k && v->r->index[j] >= 0; j++) {
        int64_t row = v->r->index[j];
        const char *label = label_of(e, row);
        printf("%d\t%.6f\t%s\t%s", j + 1, v->r->score[j], label ? label : "", e->paths ? e->paths[row] : "");
        for (int c = 0; c < e->n_meta; c++) printf("\t%s=%s", e->meta_names[c], meta_of(e, row, c));
        putchar('\n');
    }
}

static int is_fixed_key(const char *name) {
    static const char *keys[] = {"rank", "id", "score", "label", "relevant", "path"};
    for (int i = 0; i < 6; i++)
        if (!strcmp(name, keys[i])) return 1;
    return 0;
}

static void print_json(const search_view *v) {
    const st_embeddings *e = v->index;
    fputs("{\"query\": ", stdout);
    st_cli_json_string(stdout, v->image);
    fputs(", \"index\": ", stdout);
    st_cli_json_string(stdout, v->index_path);
    fputs(", \"weights\": ", stdout);
    st_cli_json_string(stdout, v->weights);
    fputs(", \"query_label\": ", stdout);
    st_cli_json_string(stdout, v->query_label);
    fputs(", \"warnings\": [", stdout);
    if (v->warning) st_cli_json_string(stdout, v->warning);
    fputs("], \"results\": [", stdout);
    for (int j = 0; j < v->r->k && v->r->index[j] >= 0; j++) {
        int64_t row = v->r->index[j];
        int rel = relevance(v, row);
        printf("%s\n  {\"rank\": %d, \"id\": %lld, \"score\": %.6g, \"label\": ", j ? "," : "", j + 1,
               (long long)row, v->r->score[j]);
        st_cli_json_string(stdout, label_of(e, row));
        printf(", \"relevant\": %s, \"path\": ", rel < 0 ? "null" : rel ? "true" : "false");
        st_cli_json_string(stdout, e->paths ? e->paths[row] : NULL);
        for (int c = 0; c < e->n_meta; c++) {
            const char *name = e->meta_names[c];
            size_t size = strlen(name) + 6;
            char *key = ST_MALLOC(size);
            snprintf(key, size, "%s%s", is_fixed_key(name) ? "meta_" : "", name);
            fputs(", ", stdout);
            st_cli_json_string(stdout, key);
            fputs(": ", stdout);
            st_cli_json_string(stdout, meta_of(e, row, c));
            free(key);
        }
        putchar('}');
    }
    printf("],\n \"timings\": {\"embed_s\": %.6f, \"search_s\": %.6f, \"total_s\": %.6f}}\n", v->embed_s, v->search_s,
           v->total_s);
}

static void html_figure(FILE *f, const char *page, const char *image, int thumbnails, const char *css_class) {
    fprintf(f, "<figure class=\"%s\"><a href=\"", css_class);
    st_html_image_url(f, image, page, 0);
    fputs("\"><img src=\"", f);
    st_html_image_url(f, image, page, thumbnails);
    fputs("\"></a><figcaption>", f);
}

static int write_html(const char *path, int thumbnails, const search_view *v) {
    const st_embeddings *e = v->index;
    char tmp[PATH_MAX];
    FILE *f = st_atomic_open(path, tmp, sizeof tmp);
    if (!f) return -1;
    fputs("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>simtune search</title>\n"
          "<style>body{font-family:sans-serif} figure{display:inline-block;vertical-align:top;margin:4px;"
          "width:160px;font-size:11px;word-break:break-all} img{width:152px;height:152px;object-fit:cover;"
          "border:4px solid #ccc} .query img{border-color:#228} .relevant img{border-color:#2a2}"
          " .irrelevant img{border-color:#d22}</style></head><body>\n<h2>query</h2>\n", f);
    html_figure(f, path, v->image, thumbnails, "query");
    st_html_text(f, v->image);
    if (v->query_label) {
        fputs("<br>label: ", f);
        st_html_text(f, v->query_label);
    }
    fputs("</figcaption></figure>\n", f);
    if (v->warning) {
        fputs("<p><strong>warning:</strong> ", f);
        st_html_text(f, v->warning);
        fputs("</p>\n", f);
    }
    fputs("<h2>results</h2>\n", f);
    if (v->query_label) fputs("<p>Green: same label as the query; red: another label; grey: unlabelled.</p>\n", f);
    for (int j = 0; j < v->r->k && v->r->index[j] >= 0; j++) {
        int64_t row = v->r->index[j];
        int rel = relevance(v, row);
        const char *p = e->paths ? e->paths[row] : "";
        html_figure(f, path, p, thumbnails, rel < 0 ? "unknown" : rel ? "relevant" : "irrelevant");
        fprintf(f, "%d. %.4f ", j + 1, v->r->score[j]);
        st_html_text(f, label_of(e, row) ? label_of(e, row) : "");
        fputs("<br>", f);
        st_html_text(f, p);
        for (int c = 0; c < e->n_meta; c++) st_html_metadata(f, e->meta_names[c], meta_of(e, row, c));
        fputs("</figcaption></figure>\n", f);
    }
    fputs("</body></html>\n", f);
    return st_atomic_commit(f, tmp, path);
}

/* Embedder options that reproduce the index: its layer (unless it is the model output),
 * pooling and GeM p, normalisation and crop size. */
static int options_from_index(const st_embeddings *index, const char *index_path, st_embedder_options *eo) {
    if (index->layer && strcmp(index->layer, "embedding") && strcmp(index->layer, "avg_pool")) eo->layer = index->layer;
    if (index->pooling && st_embed_pool_parse(index->pooling, &eo->pool) != 0)
        return st_error_set("%s: attribute pooling: %s", index_path, st_error_get());
    if (index->gem_p > 0) eo->gem_p = index->gem_p;
    if (index->normalized >= 0) eo->normalize = index->normalized;
    if (index->image_size > 0) eo->image_size = index->image_size;
    eo->set_by = "index";
    eo->batch = 1;
    return 0;
}

/* The query's label: the given one, else that of the index row with the same path. */
static const char *query_label_of(const st_embeddings *index, const char *image, const char *given) {
    if (given) return given;
    for (long i = 0; index->paths && i < index->n; i++)
        if (!strcmp(index->paths[i], image)) return label_of(index, i);
    return NULL;
}

int cmd_search(int argc, char **argv) {
    enum { O_INDEX = 256, O_WEIGHTS, O_IMAGE, O_METRIC, O_HTML, O_THUMBS, O_JSON, O_QUERY_LABEL, O_THREADS,
           O_DEVICE };
    static const struct option options[] = {
        {"index", required_argument, NULL, O_INDEX}, {"weights", required_argument, NULL, O_WEIGHTS},
        {"image", required_argument, NULL, O_IMAGE}, {"k", required_argument, NULL, 'k'},
        {"metric", required_argument, NULL, O_METRIC}, {"html", required_argument, NULL, O_HTML},
        {"embed-thumbnails", no_argument, NULL, O_THUMBS}, {"json", no_argument, NULL, O_JSON},
        {"query-label", required_argument, NULL, O_QUERY_LABEL},
        {"threads", required_argument, NULL, O_THREADS}, {"device", required_argument, NULL, O_DEVICE},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *index_path = NULL, *image = NULL, *html = NULL, *query_label = NULL;
    int json = 0, thumbnails = 0;
    st_embedder_options eo;
    st_embedder_defaults(&eo);
    st_topk_options to = {ST_METRIC_COSINE, 10, 0, 0, NULL};
    int c;
    optind = 1;
    opterr = 0; /* our own message below names the option */
    while ((c = getopt_long(argc, argv, ":k:h", options, NULL)) != -1) {
        switch (c) {
        case O_INDEX: index_path = optarg; break;
        case O_WEIGHTS: eo.weights = optarg; break;
        case O_IMAGE: image = optarg; break;
        case O_HTML: html = optarg; break;
        case O_THUMBS: thumbnails = 1; break;
        case O_JSON: json = 1; break;
        case O_QUERY_LABEL: query_label = optarg; break;
        case O_DEVICE: eo.device = optarg; break;
        case 'k':
            if (st_cli_int_option("search", "-k", optarg, 1, INT_MAX, &to.k)) return 2;
            break;
        case O_METRIC:
            if (st_metric_parse(optarg, &to.metric) != 0) return bad_usage(st_error_get());
            break;
        case O_THREADS:
            if (st_cli_int_option("search", "--threads", optarg, 0, INT_MAX, &eo.threads)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: return st_cli_bad_option("search", c, argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument");
    if (!index_path || !eo.weights || !image) return bad_usage("--index, --weights and --image are required");
    if (thumbnails && !html) return bad_usage("--embed-thumbnails applies to --html");

    double t0 = st_now_seconds();
    st_embeddings index;
    if (st_embeddings_read(index_path, &index) != 0) {
        fprintf(stderr, "simtune search: %s\n", st_error_get());
        return 1;
    }
    int rc = 1;
    st_embedder *em = NULL;
    float *query = NULL;
    uint8_t ok = 0;
    st_topk_result r = {0};
    char warning[1024] = "", used[512];
    if (options_from_index(&index, index_path, &eo) != 0 || st_embedder_open(&eo, &em) != 0) goto done;
    st_embedder_describe(em, used, sizeof used);
    fprintf(stderr, "search: query embedded with %s\n", used);
    const char *id = st_embedder_weights_id(em);
    if (index.weights_id && strcmp(index.weights_id, id))
        snprintf(warning, sizeof warning, "%s was embedded with other weights (%s, weights_id %s) than the query "
                 "(%s, weights_id %s): the scores compare two models",
                 index_path, index.model ? index.model : "?", index.weights_id, eo.weights, id);
    if (warning[0]) fprintf(stderr, "warning: %s\n", warning);
    if (st_embedder_dim(em) != index.d) {
        st_error_set("%s: /embeddings has D=%d but %s embeds to D=%d (layer %s, pooling %s); HINT: "
                     "use the weights the index was embedded with",
                     index_path, index.d, eo.weights, st_embedder_dim(em), st_embedder_layer(em),
                     st_embed_pool_name(st_embedder_settings_of(em)->pool));
        goto done;
    }
    query = ST_MALLOC((size_t)index.d * sizeof(float));
    const char *paths[1] = {image};
    double t1 = st_now_seconds();
    if (st_embedder_run(em, paths, 1, query, &ok) != 1) {
        st_error_set("%s: the query image could not be embedded", image);
        goto done;
    }
    double t2 = st_now_seconds();
    if (st_topk_search_matrix(st_embedder_backend(em), &to, query, 1, index.vectors, index.n, index.d, &r) != 0)
        goto done;
    search_view v = {image, index_path, eo.weights, &index, &r, query_label_of(&index, image, query_label),
                     warning[0] ? warning : NULL, t2 - t1, st_now_seconds() - t2, 0};
    v.total_s = st_now_seconds() - t0;
    if (json) print_json(&v);
    else print_lines(&v);
    if (html && write_html(html, thumbnails, &v) != 0) goto done;
    rc = 0;
done:
    if (rc) fprintf(stderr, "simtune search: %s\n", st_error_get());
    st_topk_result_free(&r);
    free(query);
    st_embedder_close(em);
    st_embeddings_free(&index);
    return rc;
}
