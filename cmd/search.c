/*
 * search.c: `simtune search`, rank an embedding file (the index) for one query image.
 *
 * The query is embedded exactly as the index was (its attributes layer, pooling, gem_p,
 * normalized, image_size; infer/embedder.h) with the given weights, then searched exactly (infer/topk.h).
 * The settings used are printed on stderr. When the index records the identity of the weights
 * that built it (weights_id) and the query's weights differ, a warning says so: the scores
 * would compare vectors of two models.
 *
 * Outputs (written by infer/report.h):
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
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "data/base/clock.h"
#include "infer/embedder.h"
#include "infer/embeddings_h5.h"
#include "infer/query.h"
#include "infer/report.h"
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

typedef struct search_args {
    const char *index_path, *image, *html, *query_label;
    int json, thumbnails, help;
    st_embedder_options eo;
    st_topk_options to;
} search_args;

enum { O_INDEX = 256, O_WEIGHTS, O_IMAGE, O_METRIC, O_HTML, O_THUMBS, O_JSON, O_QUERY_LABEL, O_THREADS, O_DEVICE };

static const struct option options[] = {
    {"index", required_argument, NULL, O_INDEX}, {"weights", required_argument, NULL, O_WEIGHTS},
    {"image", required_argument, NULL, O_IMAGE}, {"k", required_argument, NULL, 'k'},
    {"metric", required_argument, NULL, O_METRIC}, {"html", required_argument, NULL, O_HTML},
    {"embed-thumbnails", no_argument, NULL, O_THUMBS}, {"json", no_argument, NULL, O_JSON},
    {"query-label", required_argument, NULL, O_QUERY_LABEL},
    {"threads", required_argument, NULL, O_THREADS}, {"device", required_argument, NULL, O_DEVICE},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

/* argv into a: 0 to go on (a->help: --help was printed), or 2 after the usage error. */
static int parse_args(int argc, char **argv, search_args *a) {
    memset(a, 0, sizeof *a);
    st_embedder_defaults(&a->eo);
    a->to = (st_topk_options){ST_METRIC_COSINE, 10, 0, 0, NULL};
    int c;
    optind = 1;
    opterr = 0; /* our own message below names the option */
    while ((c = getopt_long(argc, argv, ":k:h", options, NULL)) != -1) {
        switch (c) {
        case O_INDEX: a->index_path = optarg; break;
        case O_WEIGHTS: a->eo.weights = optarg; break;
        case O_IMAGE: a->image = optarg; break;
        case O_HTML: a->html = optarg; break;
        case O_THUMBS: a->thumbnails = 1; break;
        case O_JSON: a->json = 1; break;
        case O_QUERY_LABEL: a->query_label = optarg; break;
        case O_DEVICE: a->eo.device = optarg; break;
        case 'k':
            if (st_cli_int_option("search", "-k", optarg, 1, INT_MAX, &a->to.k)) return 2;
            break;
        case O_METRIC:
            if (st_metric_parse(optarg, &a->to.metric) != 0) return bad_usage(st_error_get());
            break;
        case O_THREADS:
            if (st_cli_int_option("search", "--threads", optarg, 0, INT_MAX, &a->eo.threads)) return 2;
            break;
        case 'h': usage(stdout); a->help = 1; return 0;
        default: return st_cli_bad_option("search", c, argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument");
    if (!a->index_path || !a->eo.weights || !a->image) return bad_usage("--index, --weights and --image are required");
    if (a->thumbnails && !a->html) return bad_usage("--embed-thumbnails applies to --html");
    return 0;
}

/* The warning (into warning[size], "" when none, printed when not) when the index was embedded
 * with other weights. */
static void model_mismatch(const st_embeddings *index, const search_args *a, const char *query_id, char *warning,
                           size_t size) {
    st_query_weights_warning(index, a->index_path, a->eo.weights, query_id, warning, size);
    if (warning[0]) fprintf(stderr, "warning: %s\n", warning);
}

/* Embed the query (query: (D)) and search the index; out gets the timings. 0, or -1 with st_error_set. */
static int embed_and_search(st_embedder *em, const search_args *a, const st_embeddings *index, float *query,
                            st_topk_result *r, st_search_results *out) {
    if (st_query_check_dim(em, index, a->index_path, a->eo.weights) != 0) return -1;
    const char *paths[1] = {a->image};
    uint8_t ok = 0;
    double t1 = st_now_seconds();
    if (st_embedder_run(em, paths, 1, query, &ok) != 1)
        return st_error_set("%s: the query image could not be embedded", a->image);
    double t2 = st_now_seconds();
    if (st_query_search(st_embedder_backend(em), &a->to, query, 1, index, r) != 0) return -1;
    out->embed_s = t2 - t1;
    out->search_s = st_now_seconds() - t2;
    return 0;
}

/* Print the results (lines or JSON) and write the page: 0, or -1 with st_error_set. */
static int report(const search_args *a, const st_search_results *s) {
    if (a->json) {
        if (st_report_search_json(stdout, s) != 0) return -1;
    } else {
        st_report_search_lines(stdout, s);
    }
    return a->html ? st_report_search_html(a->html, s, a->thumbnails) : 0;
}

static int search(search_args *a) {
    double t0 = st_now_seconds();
    st_embeddings index;
    if (st_embeddings_read(a->index_path, &index) != 0) {
        fprintf(stderr, "simtune search: %s\n", st_error_get());
        return 1;
    }
    int rc = 1;
    st_embedder *em = NULL;
    float *query = ST_MALLOC((size_t)index.d * sizeof(float));
    st_topk_result r = {0};
    char warning[1024], used[512];
    a->eo.batch = 1;
    if (st_query_embedder_options(&index, a->index_path, &a->eo) != 0 || st_embedder_open(&a->eo, &em) != 0)
        goto done;
    st_embedder_describe(em, used, sizeof used);
    fprintf(stderr, "search: query embedded with %s\n", used);
    model_mismatch(&index, a, st_embedder_weights_id(em), warning, sizeof warning);
    st_search_results s = {a->image, a->index_path, a->eo.weights, &index, &r,
                           st_query_label_of(&index, a->image, a->query_label), warning[0] ? warning : NULL, 0, 0, 0};
    if (embed_and_search(em, a, &index, query, &r, &s) != 0) goto done;
    s.total_s = st_now_seconds() - t0;
    if (report(a, &s) != 0) goto done;
    rc = 0;
done:
    if (rc) fprintf(stderr, "simtune search: %s\n", st_error_get());
    st_topk_result_free(&r);
    free(query);
    st_embedder_close(em);
    st_embeddings_free(&index);
    return rc;
}

int cmd_search(int argc, char **argv) {
    search_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc || a.help) return rc;
    return search(&a);
}
