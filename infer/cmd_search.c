/*
 * cmd_search.c: `simtune search`, rank an embedding file (the index) for one query image.
 *
 * The query is embedded exactly as the index was (its attributes layer, pooling, normalized,
 * image_size; infer/embedder.h) with the given weights, then searched exactly (infer/topk.h).
 * Results go to stdout, one line per rank: "rank score label path"; --html writes a page with
 * the query and its results (atomically).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kernels/check.h"
#include "cli.h"
#include "../train/commands.h"
#include "embedder.h"
#include "embeddings_h5.h"
#include "topk.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune search --index E.h5 --weights W.h5 --image FILE [-k K] [options]\n\n"
            "Embed one image the way the index was embedded and print its top-k neighbours.\n\n"
            "  --index FILE      embedding file written by `simtune embed`\n"
            "  --weights FILE    the weight file the index was embedded with\n"
            "  --image FILE      the query image\n"
            "  -k, --k K         results (default 10)\n"
            "  --metric NAME     cosine | ip | l2 (default cosine)\n"
            "  --html FILE       also write an HTML page with the query and its results\n"
            "  --threads T       CPU threads (default 0 = all cores)\n"
            "  --device NAME     cpu | cuda (default cpu)\n"
            "  -h, --help        this text\n");
}

static int bad_usage(const char *msg) { return st_cli_usage_error("search", msg); }

static void html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

static void html_figure(FILE *f, const char *path, const char *caption) {
    char resolved[PATH_MAX];
    const char *src = path[0] != '/' && realpath(path, resolved) ? resolved : path;
    fputs("<figure><img src=\"", f);
    if (src[0] == '/') fputs("file://", f);
    html_text(f, src);
    fputs("\"><figcaption>", f);
    html_text(f, caption);
    fputs("</figcaption></figure>\n", f);
}

static const char *label_of(const st_embeddings *e, int64_t row) {
    int32_t l = e->labels[row];
    return l >= 0 && e->label_names ? e->label_names[l] : "";
}

static int write_html(const char *path, const char *image, const st_embeddings *index,
                      const st_topk_result *r) {
    char tmp[PATH_MAX], caption[PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return st_error_set("%s: cannot write: %s", tmp, strerror(errno));
    fputs("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>simtune search</title>\n"
          "<style>body{font-family:sans-serif} figure{display:inline-block;margin:4px;width:160px;"
          "font-size:11px;word-break:break-all} img{width:152px;height:152px;object-fit:cover;"
          "border:3px solid #ccc}</style></head><body>\n<h2>query</h2>\n", f);
    html_figure(f, image, image);
    fputs("<h2>results</h2>\n", f);
    for (int j = 0; j < r->k; j++) {
        int64_t row = r->index[j];
        if (row < 0) break;
        const char *p = index->paths ? index->paths[row] : "";
        snprintf(caption, sizeof caption, "%d. %.4f %s %s", j + 1, r->score[j], label_of(index, row), p);
        html_figure(f, p, caption);
    }
    fputs("</body></html>\n", f);
    int ok = fflush(f) == 0 && !ferror(f) && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return st_error_set("%s: write failed: %s", path, strerror(errno));
    }
    return 0;
}

int cmd_search(int argc, char **argv) {
    enum { O_INDEX = 256, O_WEIGHTS, O_IMAGE, O_METRIC, O_HTML, O_THREADS, O_DEVICE };
    static const struct option options[] = {
        {"index", required_argument, NULL, O_INDEX}, {"weights", required_argument, NULL, O_WEIGHTS},
        {"image", required_argument, NULL, O_IMAGE}, {"k", required_argument, NULL, 'k'},
        {"metric", required_argument, NULL, O_METRIC}, {"html", required_argument, NULL, O_HTML},
        {"threads", required_argument, NULL, O_THREADS}, {"device", required_argument, NULL, O_DEVICE},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *index_path = NULL, *image = NULL, *html = NULL;
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
        case O_DEVICE: eo.device = optarg; break;
        case 'k':
            if (st_cli_parse_int(optarg, 1, &to.k)) return bad_usage("-k must be a positive integer");
            break;
        case O_METRIC:
            if (st_metric_parse(optarg, &to.metric) != 0) return bad_usage(st_error_get());
            break;
        case O_THREADS:
            if (st_cli_parse_int(optarg, 0, &eo.threads)) return bad_usage("--threads must be >= 0");
            break;
        case 'h': usage(stdout); return 0;
        default: return st_cli_bad_option("search", c, argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument");
    if (!index_path || !eo.weights || !image) return bad_usage("--index, --weights and --image are required");

    st_embeddings index;
    if (st_embeddings_read(index_path, &index) != 0) {
        fprintf(stderr, "simtune search: %s\n", st_error_get());
        return 1;
    }
    /* embed the query as the index was: its layer (unless it is the model output), pooling,
     * normalisation and crop size */
    if (index.layer && strcmp(index.layer, "embedding") && strcmp(index.layer, "avg_pool")) eo.layer = index.layer;
    if (index.pooling && st_embed_pool_parse(index.pooling, &eo.pool) != 0) {
        fprintf(stderr, "simtune search: %s: attribute pooling: %s\n", index_path, st_error_get());
        st_embeddings_free(&index);
        return 1;
    }
    if (index.normalized >= 0) eo.normalize = index.normalized;
    if (index.image_size > 0) eo.image_size = index.image_size;
    eo.batch = 1;

    int rc = 1;
    st_embedder *em = NULL;
    float *query = NULL;
    uint8_t ok = 0;
    st_topk_result r = {0};
    if (st_embedder_open(&eo, &em) != 0) goto done;
    if (st_embedder_dim(em) != index.d) {
        st_error_set("%s: /embeddings has D=%d but %s embeds to D=%d (layer %s, pooling %s); HINT: "
                     "use the weights the index was embedded with",
                     index_path, index.d, eo.weights, st_embedder_dim(em), st_embedder_layer(em),
                     st_embed_pool_name(eo.pool));
        goto done;
    }
    query = ST_MALLOC((size_t)index.d * sizeof(float));
    const char *paths[1] = {image};
    if (st_embedder_run(em, paths, 1, query, &ok) != 1) {
        st_error_set("%s: the query image could not be embedded", image);
        goto done;
    }
    if (st_topk_search_matrix(st_embedder_backend(em), &to, query, 1, index.vectors, index.n, index.d, &r) != 0)
        goto done;
    for (int j = 0; j < r.k && r.index[j] >= 0; j++)
        printf("%d\t%.6f\t%s\t%s\n", j + 1, r.score[j], label_of(&index, r.index[j]),
               index.paths ? index.paths[r.index[j]] : "");
    if (html && write_html(html, image, &index, &r) != 0) goto done;
    rc = 0;
done:
    if (rc) fprintf(stderr, "simtune search: %s\n", st_error_get());
    st_topk_result_free(&r);
    free(query);
    st_embedder_close(em);
    st_embeddings_free(&index);
    return rc;
}
