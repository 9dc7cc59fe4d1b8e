/*
 * topk.c: `simtune topk`, exact top-k search of a query embedding file against a gallery
 * embedding file (both in the embeddings_h5.h schema).
 *
 * The gallery streams from disk tile by tile (infer/topk.h), so its size is bounded by the disk,
 * not the memory; the queries are loaded whole. Output (written atomically, R.h5.tmp + rename):
 *   /indices  int64   (Q, K)  gallery rows, best first, -1 past the end of the gallery
 *   /scores   float32 (Q, K)  cosine / inner product (larger is better) or Euclidean distance
 *                             for l2 (smaller is better); empty slots -FLT_MAX / +FLT_MAX
 *   attributes: metric, k, gallery, queries
 * The search time (without file reading of the queries) is printed to stderr.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "data/base/clock.h"
#include "data/base/fileio.h"
#include "infer/embeddings_h5.h"
#include "infer/h5util.h"
#include "infer/topk.h"
#include "kernels/check.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune topk --gallery G.h5 --queries Q.h5 -k K --out R.h5 [options]\n\n"
            "Exact top-k search of every query row against every gallery row.\n\n"
            "  --gallery FILE      gallery embeddings (/embeddings (N, D)); streamed in tiles\n"
            "  --queries FILE      query embeddings (/embeddings (Q, D)), same D\n"
            "  -k, --k K           neighbours per query (default 10); K > N pads with index -1\n"
            "  --metric NAME       cosine | ip | l2 (default cosine); l2 reports the Euclidean\n"
            "                      distance (not squared), smaller is better\n"
            "  --threads T         CPU threads (default 0 = all cores)\n"
            "  --device NAME       cpu | cuda (default cpu)\n"
            "  --tile-rows T       gallery rows per tile (default 0 = from a 256 MiB budget)\n"
            "  --out FILE          result: /indices int64 (Q, K), /scores float32 (Q, K)\n"
            "  -h, --help          this text\n\n"
            "Ties go to the lower gallery row. Output is written atomically.\n");
}

static int bad_usage(const char *msg) { return st_cli_usage_error("topk", msg); }

static int gallery_rows(void *ctx, long start, long count, float *dst) {
    return st_embeddings_reader_rows(ctx, start, count, dst);
}

static int write_int64_dataset(hid_t file, const char *name, const int64_t *data, int rows,
                               int cols, const char *path) {
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(file, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d >= 0 && (rows == 0 ||
                        H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0)
                 ? 0
                 : -1;
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    if (rc) st_error_set("%s: /%s: cannot write", path, name);
    return rc;
}

static int write_result(const char *path, const st_topk_result *r, st_metric metric,
                        const char *gallery, const char *queries) {
    char tmp[4096];
    if (st_tmp_path(path, tmp, sizeof tmp) != 0) return -1;
    hid_t f = st_h5_create(tmp);
    if (f < 0) return -1;
    long long dims[2] = {r->q, r->k};
    int rc = write_int64_dataset(f, "indices", r->index, r->q, r->k, path);
    if (rc == 0) rc = st_h5_write_floats(f, "scores", r->score, 2, dims, path);
    if (rc == 0) rc = st_h5_write_string_attr(f, "metric", st_metric_name(metric), path, "/");
    if (rc == 0) rc = st_h5_write_long_attr(f, "k", r->k, path, "/");
    if (rc == 0) rc = st_h5_write_string_attr(f, "gallery", gallery, path, "/");
    if (rc == 0) rc = st_h5_write_string_attr(f, "queries", queries, path, "/");
    if (rc != 0) {
        st_h5_discard(f, tmp);
    } else {
        rc = st_h5_commit_atomic(f, tmp, path);
    }
    return rc;
}

int cmd_topk(int argc, char **argv) {
    static const struct option options[] = {
        {"gallery", required_argument, NULL, 'g'}, {"queries", required_argument, NULL, 'q'},
        {"k", required_argument, NULL, 'k'},       {"metric", required_argument, NULL, 'm'},
        {"threads", required_argument, NULL, 't'}, {"device", required_argument, NULL, 'd'},
        {"tile-rows", required_argument, NULL, 'T'}, {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *gallery = NULL, *queries = NULL, *out = NULL, *device = "cpu";
    st_topk_options o = {ST_METRIC_COSINE, 10, 0, 0, NULL};
    int threads = 0, tile_rows, c;
    optind = 1;
    opterr = 0; /* our own message below names the option */
    while ((c = getopt_long(argc, argv, ":k:h", options, NULL)) != -1) {
        switch (c) {
        case 'g': gallery = optarg; break;
        case 'q': queries = optarg; break;
        case 'o': out = optarg; break;
        case 'd': device = optarg; break;
        case 'k':
            if (st_cli_int_option("topk", "-k", optarg, 1, INT_MAX, &o.k)) return 2;
            break;
        case 't':
            if (st_cli_int_option("topk", "--threads", optarg, 0, INT_MAX, &threads)) return 2;
            break;
        case 'T':
            if (st_cli_int_option("topk", "--tile-rows", optarg, 0, INT_MAX, &tile_rows)) return 2;
            o.tile_rows = tile_rows;
            break;
        case 'm':
            if (st_metric_parse(optarg, &o.metric) != 0) return bad_usage(st_error_get());
            break;
        case 'h': usage(stdout); return 0;
        default: return st_cli_bad_option("topk", c, argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument");
    if (!gallery || !queries || !out) return bad_usage("--gallery, --queries and --out are required");

    st_embeddings q;
    if (st_embeddings_read(queries, &q) != 0) {
        fprintf(stderr, "simtune topk: %s\n", st_error_get());
        return 1;
    }
    st_embeddings_reader g;
    if (st_embeddings_reader_open(gallery, &g) != 0) {
        fprintf(stderr, "simtune topk: %s\n", st_error_get());
        st_embeddings_free(&q);
        return 1;
    }
    int rc = 1;
    st_backend *be = NULL;
    if (st_embeddings_check_dims(gallery, g.d, queries, q.d) != 0) goto done;
    if (q.n > 0x7fffffffL) {
        st_error_set("%s: /embeddings: %ld queries, at most 2^31-1 per run", queries, q.n);
        goto done;
    }
    be = st_backend_open(device, threads);
    if (!be) goto done;
    double t0 = st_now_seconds();
    st_topk_result r;
    if (st_topk_search(be, &o, q.vectors, (int)q.n, q.d, g.n, gallery_rows, &g, &r) != 0) goto done;
    double seconds = st_now_seconds() - t0;
    fprintf(stderr, "simtune topk: %ld queries x %ld gallery rows, D=%d, k=%d, %s on %s (%d threads): %.3f s\n",
            q.n, g.n, q.d, o.k, st_metric_name(o.metric), be->name, be->threads, seconds);
    rc = write_result(out, &r, o.metric, gallery, queries) == 0 ? 0 : 1;
    st_topk_result_free(&r);
done:
    if (rc) fprintf(stderr, "simtune topk: %s\n", st_error_get());
    st_backend_close(be);
    st_embeddings_reader_close(&g);
    st_embeddings_free(&q);
    return rc;
}
