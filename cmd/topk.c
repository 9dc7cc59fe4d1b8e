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
 *
 * Under `mpirun -np N` every rank reads the queries and searches its shard of the gallery (a
 * contiguous range of whole tiles of the tile size one process would use over the whole gallery,
 * --tile-rows or the default, infer/topk.h st_topk_tile_rows), rank 0 merges the per-shard lists
 * exactly (infer/topk_merge.h) and writes the one result file: identical to one process's, since
 * every shard runs the very GEMMs one process runs (docs/scaling.md).
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
#include "infer/topk_merge.h"
#include "kernels/check.h"
#include "kernels/comm.h"

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
            "Ties go to the lower gallery row. Output is written atomically.\n"
            "Under mpirun -np N each rank searches a shard of the gallery and rank 0 merges the\n"
            "lists exactly and writes the file, identical to one process's; shards are whole tiles,\n"
            "so a gallery of one tile is searched by rank 0 alone (docs/scaling.md).\n");
}

static int bad_usage(const char *msg) { return st_cli_usage_error("topk", msg); }

static int gallery_rows(void *ctx, long start, long count, float *dst) {
    return st_embeddings_reader_rows(ctx, start, count, dst);
}

/* This rank's share of the gallery: rows [first, first + shard->rows). */
typedef struct gallery_shard {
    st_embeddings_reader *reader;
    long first, rows;
} gallery_shard;

static int shard_rows(void *ctx, long start, long count, float *dst) {
    const gallery_shard *s = ctx;
    return st_embeddings_reader_rows(s->reader, s->first + start, count, dst);
}

/* Rank r of R takes the r-th of R contiguous ranges of whole tiles of tile_rows (the whole
 * gallery's tile size), so each tile (and its GEMM) is the one a single process forms. */
static gallery_shard shard_of(st_embeddings_reader *g, long tile_rows) {
    long unit = tile_rows, units = (g->n + unit - 1) / unit;
    long r = st_comm_rank(), ranks = st_comm_size();
    long first = units * r / ranks * unit, end = units * (r + 1) / ranks * unit;
    if (first > g->n) first = g->n;
    if (end > g->n) end = g->n;
    return (gallery_shard){g, first, end - first};
}

/* Every rank's (Q, k) lists gathered at rank 0 into parts (R results). */
static void gather_parts(const st_topk_result *mine, st_topk_result *parts) {
    int ranks = st_comm_size(), root = st_comm_rank() == 0;
    size_t cells = (size_t)mine->q * mine->k;
    int64_t *index = root ? ST_MALLOC(cells * ranks * sizeof *index + 1) : NULL;
    float *key = root ? ST_MALLOC(cells * ranks * sizeof *key + 1) : NULL;
    float *score = root ? ST_MALLOC(cells * ranks * sizeof *score + 1) : NULL;
    st_comm_gatherv(mine->index, cells * sizeof *index, index);
    st_comm_gatherv(mine->key, cells * sizeof *key, key);
    st_comm_gatherv(mine->score, cells * sizeof *score, score);
    if (!root) return;
    for (int r = 0; r < ranks; r++) { /* each part owns a copy: st_topk_result_free frees it */
        parts[r] = (st_topk_result){mine->q, mine->k, ST_MALLOC(cells * sizeof *index + 1),
                                    ST_MALLOC(cells * sizeof *score + 1), ST_MALLOC(cells * sizeof *key + 1)};
        memcpy(parts[r].index, index + cells * r, cells * sizeof *index);
        memcpy(parts[r].score, score + cells * r, cells * sizeof *score);
        memcpy(parts[r].key, key + cells * r, cells * sizeof *key);
    }
    free(index);
    free(key);
    free(score);
}

/* The search of every query against the whole gallery: this rank's shard, then (several ranks)
 * the exact merge at rank 0. 0 with *r valid on rank 0 (other ranks: r empty), or -1. */
static int search_on_ranks(st_backend *be, const st_topk_options *o, const st_embeddings *q,
                           st_embeddings_reader *g, st_topk_result *r) {
    memset(r, 0, sizeof *r);
    if (st_comm_size() == 1) return st_topk_search(be, o, q->vectors, (int)q->n, q->d, g->n, gallery_rows, g, r);
    st_topk_options whole = *o; /* the tile of one search over the whole gallery, for every shard */
    whole.tile_rows = st_topk_tile_rows(o, (int)q->n, q->d, g->n);
    gallery_shard s = shard_of(g, whole.tile_rows);
    st_topk_result mine;
    int own = st_topk_search(be, &whole, q->vectors, (int)q->n, q->d, s.rows, shard_rows, &s, &mine);
    double failed = own != 0; /* every rank learns it, or the others would wait at the gather */
    st_comm_allreduce_sum_f64(&failed, 1);
    if (own) return -1;
    if (failed > 0) {
        st_topk_result_free(&mine);
        return st_error_set("another rank could not search its shard of the gallery (its message says why)");
    }
    for (size_t c = 0; c < (size_t)mine.q * mine.k; c++)
        if (mine.index[c] >= 0) mine.index[c] += s.first;
    st_topk_result *parts = ST_CALLOC((size_t)st_comm_size(), sizeof *parts);
    gather_parts(&mine, parts);
    if (st_comm_rank() == 0) st_topk_merge(parts, st_comm_size(), r);
    for (int p = 0; p < st_comm_size(); p++) st_topk_result_free(&parts[p]);
    free(parts);
    st_topk_result_free(&mine);
    return 0;
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
    if (search_on_ranks(be, &o, &q, &g, &r) != 0) goto done;
    double seconds = st_now_seconds() - t0;
    if (st_comm_rank() != 0) { /* rank 0 writes the merged result */
        rc = 0;
        goto done;
    }
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
