/*
 * test_topk.c: exact top-k search against brute force, and the embedding file checks.
 *
 *   - cpu_topk_merge on quantised random scores (many exact ties), several tile widths,
 *     k from 1 to beyond N, both directions: lists equal a full sort by (score, index).
 *   - st_topk_search with tiles smaller than N and query blocks smaller than Q (merging across
 *     tiles and blocks), metrics ip / l2 / cosine, duplicate gallery rows, k > N padding,
 *     self-exclusion keeping an exact duplicate.
 *   - embedding files: round trip; NaN and inf rejected naming the file and the row; a
 *     dimension mismatch rejected by `simtune topk` (exit 1); `simtune topk` output equals
 *     the library result.
 * Vectors hold small integers so every dot product and squared distance is exact in float32:
 * the comparisons with the double-precision brute force are exact (tolerance 0) for ip and l2.
 */
#include <float.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/embeddings_h5.h"
#include "infer/h5util.h"
#include "infer/topk.h"
#include "kernels/check.h"
#include "kernels/cpu/cpu_ops.h"
#include "test_util.h"
#include "cmd/commands.h"

typedef struct {
    double score;
    int64_t index;
} ref_pair;

static int ref_larger;
static int ref_compare(const void *a, const void *b) {
    const ref_pair *x = a, *y = b;
    if (x->score != y->score)
        return (ref_larger ? x->score > y->score : x->score < y->score) ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Brute force: the k best (score, index) of n scores, padded with -1. */
static void ref_topk(const double *scores, long n, int k, int larger, int64_t skip, int64_t *out) {
    ref_pair *p = ST_MALLOC((size_t)(n ? n : 1) * sizeof *p);
    long m = 0;
    for (long j = 0; j < n; j++)
        if (j != skip) p[m++] = (ref_pair){scores[j], j};
    ref_larger = larger;
    qsort(p, (size_t)m, sizeof *p, ref_compare);
    for (int i = 0; i < k; i++) out[i] = i < m ? p[i].index : -1;
    free(p);
}

static unsigned rng_state = 12345u;
static int small_int(int levels) {
    rng_state = rng_state * 1103515245u + 12345u;
    return (int)((rng_state >> 16) % (unsigned)levels);
}

static void test_merge_vs_sort(void) {
    const int q = 7, n = 300;
    const int ks[] = {1, 3, 10, 64, 299, 300, 305};
    const int tiles[] = {1, 17, 64, 300};
    float *scores = ST_MALLOC((size_t)q * n * sizeof(float));
    double *row = ST_MALLOC((size_t)n * sizeof(double));
    for (int i = 0; i < q * n; i++) scores[i] = (float)(small_int(9) - 4) * 0.25f; /* 9 levels */
    for (int larger = 0; larger <= 1; larger++)
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
            for (size_t ti = 0; ti < sizeof tiles / sizeof tiles[0]; ti++) {
                int k = ks[ki], tile = tiles[ti];
                float *best = ST_MALLOC((size_t)q * k * sizeof(float));
                int64_t *idx = ST_MALLOC((size_t)q * k * sizeof(int64_t));
                for (int i = 0; i < q * k; i++) {
                    best[i] = larger ? -FLT_MAX : FLT_MAX;
                    idx[i] = -1;
                }
                float *tile_buf = ST_MALLOC((size_t)q * tile * sizeof(float));
                for (int g0 = 0; g0 < n; g0 += tile) {
                    int nt = n - g0 < tile ? n - g0 : tile;
                    for (int i = 0; i < q; i++)
                        memcpy(tile_buf + (size_t)i * nt, scores + (size_t)i * n + g0,
                               (size_t)nt * sizeof(float));
                    cpu_topk_merge(NULL, q, nt, g0, k, larger, tile_buf, best, idx);
                }
                int64_t *ref = ST_MALLOC((size_t)k * sizeof(int64_t));
                int bad = 0;
                for (int i = 0; i < q; i++) {
                    for (int j = 0; j < n; j++) row[j] = scores[(size_t)i * n + j];
                    ref_topk(row, n, k, larger, -1, ref);
                    for (int j = 0; j < k; j++) {
                        bad += idx[(size_t)i * k + j] != ref[j];
                        float want = ref[j] >= 0 ? (float)row[ref[j]] : (larger ? -FLT_MAX : FLT_MAX);
                        bad += best[(size_t)i * k + j] != want;
                    }
                }
                TEST_CHECK(bad == 0, "merge: larger=%d k=%d tile=%d: %d entries differ from the sort",
                           larger, k, tile, bad);
                free(ref);
                free(tile_buf);
                free(best);
                free(idx);
            }
    free(scores);
    free(row);
}

static void test_nan_scores_never_enter(void) {
    float scores[4] = {NAN, 1.0f, NAN, 0.5f};
    float best[3];
    int64_t idx[3];
    for (int i = 0; i < 3; i++) {
        best[i] = -FLT_MAX;
        idx[i] = -1;
    }
    cpu_topk_merge(NULL, 1, 4, 0, 3, 1, scores, best, idx);
    TEST_CHECK(idx[0] == 1 && idx[1] == 3 && idx[2] == -1 && best[2] == -FLT_MAX,
               "NaN scores entered the list: %lld %lld %lld", (long long)idx[0],
               (long long)idx[1], (long long)idx[2]);
}

/* Brute-force keys in double for metric m (cosine via normalised vectors). */
static double ref_score(const float *a, const float *b, int d, st_metric m) {
    double dot = 0, na = 0, nb = 0, l2 = 0;
    for (int j = 0; j < d; j++) {
        dot += (double)a[j] * b[j];
        na += (double)a[j] * a[j];
        nb += (double)b[j] * b[j];
        l2 += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    }
    if (m == ST_METRIC_IP) return dot;
    if (m == ST_METRIC_L2) return l2;
    return na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0.0;
}

static void test_search_vs_brute(st_backend *be, st_metric m, int with_self) {
    const int q = 23, d = 6;
    const long n = 97;
    float *g = ST_MALLOC((size_t)n * d * sizeof(float));
    for (long i = 0; i < n * d; i++) g[i] = (float)(small_int(5) - 2);
    memcpy(g + 10 * d, g + 40 * d, d * sizeof(float)); /* exact duplicates: rows 10 and 40, */
    memcpy(g + 77 * d, g + 40 * d, d * sizeof(float)); /* and 77 */
    float *qs = ST_MALLOC((size_t)q * d * sizeof(float));
    int64_t *self = ST_MALLOC((size_t)q * sizeof(int64_t));
    for (int i = 0; i < q; i++) { /* with_self: query i is gallery row 4i (row 40 has twins) */
        self[i] = with_self ? 4 * i : -1;
        for (int j = 0; j < d; j++)
            qs[i * d + j] = with_self ? g[self[i] * d + j] : (float)(small_int(5) - 2);
    }
    const int ks[] = {1, 5, 96, 97, 120};
    double *row = ST_MALLOC((size_t)n * sizeof(double));
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        int k = ks[ki];
        st_topk_options o = {m, k, 16, 5, with_self ? self : NULL};
        st_topk_result r;
        TEST_CHECK(st_topk_search_matrix(be, &o, qs, q, g, n, d, &r) == 0, "search failed: %s",
                   st_error_get());
        int64_t *ref = ST_MALLOC((size_t)k * sizeof(int64_t));
        int bad_index = 0, bad_score = 0, bad_pad = 0;
        for (int i = 0; i < q; i++) {
            for (long j = 0; j < n; j++) row[j] = ref_score(qs + i * d, g + j * d, d, m);
            ref_topk(row, n, k, m != ST_METRIC_L2, self[i], ref);
            for (int j = 0; j < k; j++) {
                int64_t got = r.index[(size_t)i * k + j];
                float s = r.score[(size_t)i * k + j];
                if (ref[j] < 0) {
                    bad_pad += got != -1 || s != st_metric_worst_score(m);
                    continue;
                }
                /* cosine: normalisation rounds, so near-ties may swap; require the returned row
                 * to score within 1e-6 of the reference at this rank (scores are <= 1) */
                if (got < 0) {
                    bad_index++;
                } else if (m == ST_METRIC_COSINE) {
                    bad_index += fabs(row[got] - row[ref[j]]) > 1e-6;
                    bad_score += fabs(s - row[ref[j]]) > 1e-6;
                } else {
                    bad_index += got != ref[j];
                    double want = m == ST_METRIC_L2 ? sqrt(row[ref[j]]) : row[ref[j]];
                    /* ip and the squared distance are exact integers; sqrt rounds to float */
                    bad_score += fabs(s - want) > 1e-6 * fmax(1.0, want);
                }
            }
        }
        TEST_CHECK(bad_index == 0 && bad_score == 0 && bad_pad == 0,
                   "%s self=%d k=%d: %d indices, %d scores, %d pads differ from brute force",
                   st_metric_name(m), with_self, k, bad_index, bad_score, bad_pad);
        if (with_self && m == ST_METRIC_L2) {
            /* query 10 is row 40 with twins at 10 and 77 (distance 0): both twins come first,
             * lower index first, and row 40 itself is gone */
            TEST_CHECK(k < 2 || (r.index[10 * k] == 10 && r.index[10 * k + 1] == 77),
                       "%s: twins of the self row not first: %lld %lld", st_metric_name(m),
                       (long long)r.index[10 * k], (long long)r.index[10 * k + 1]);
            for (int j = 0; j < k; j++)
                TEST_CHECK(r.index[10 * k + j] != 40, "self row 40 not excluded");
        }
        free(ref);
        st_topk_result_free(&r);
    }
    free(row);
    free(g);
    free(qs);
    free(self);
}

/* Write an embeddings file without the writer's finiteness check. */
static void write_raw(const char *path, const float *x, long n, int d) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = st_h5_create(tmp);
    ST_CHECK(f >= 0, "%s", st_error_get());
    long long dims[2] = {n, d};
    ST_CHECK(st_h5_write_floats(f, "embeddings", x, 2, dims, path) == 0, "%s", st_error_get());
    ST_CHECK(st_h5_commit_atomic(f, tmp, path) == 0, "%s", st_error_get());
}

static void test_files(st_backend *be) {
    const long n = 50;
    const int d = 4;
    float *x = ST_MALLOC((size_t)n * d * sizeof(float));
    int32_t labels[50];
    char *paths[50], *names[3] = {"cat", "dog", "bird"};
    char buf[50][16];
    for (long i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) x[i * d + j] = (float)(small_int(7) - 3);
        labels[i] = (int32_t)(i % 4) - 1;
        snprintf(buf[i], sizeof buf[i], "img/%ld.png", i);
        paths[i] = buf[i];
    }
    st_embeddings e = {n, d, x, labels, names, 3, paths, "resnet50", "avg_pool", "gem", 1, 224, 0, NULL, NULL, NULL, 0};
    TEST_CHECK(st_embeddings_write("topk_gallery.h5", &e) == 0, "write: %s", st_error_get());
    st_embeddings back;
    TEST_CHECK(st_embeddings_read("topk_gallery.h5", &back) == 0, "read: %s", st_error_get());
    TEST_CHECK(back.n == n && back.d == d && !memcmp(back.vectors, x, (size_t)n * d * sizeof(float)) &&
                   !memcmp(back.labels, labels, sizeof labels) && back.n_label_names == 3 &&
                   !strcmp(back.label_names[2], "bird") && !strcmp(back.paths[7], "img/7.png") &&
                   !strcmp(back.model, "resnet50") && !strcmp(back.pooling, "gem") &&
                   back.normalized == 1 && back.image_size == 224,
               "embedding file round trip differs");
    st_embeddings_free(&back);

    /* NaN at row 3 and +inf at row 17 are each rejected, naming the file and the row */
    for (int which = 0; which < 2; which++) {
        long bad_row = which ? 17 : 3;
        float saved = x[bad_row * d + 2];
        x[bad_row * d + 2] = which ? INFINITY : NAN;
        write_raw("topk_bad.h5", x, n, d);
        x[bad_row * d + 2] = saved;
        st_embeddings bad;
        char want[64];
        snprintf(want, sizeof want, "row %ld", bad_row);
        TEST_CHECK(st_embeddings_read("topk_bad.h5", &bad) == -1 &&
                       strstr(st_error_get(), "topk_bad.h5") && strstr(st_error_get(), want),
                   "non-finite row %ld not rejected properly: %s", bad_row, st_error_get());
    }
    float saved = x[5];
    x[5] = NAN;
    TEST_CHECK(st_embeddings_write("topk_nan_out.h5", &e) == -1 && strstr(st_error_get(), "row 1"),
               "writer accepted NaN: %s", st_error_get());
    x[5] = saved;

    /* queries with D = 3 against the D = 4 gallery: simtune topk fails with exit 1 */
    write_raw("topk_q3.h5", x, 10, 3);
    char *argv_bad[] = {"topk", "--gallery", "topk_gallery.h5", "--queries", "topk_q3.h5", "--out",
                        "topk_bad_out.h5", NULL};
    TEST_CHECK(cmd_topk(7, argv_bad) == 1, "dimension mismatch not rejected");
    TEST_CHECK(strstr(st_error_get(), "dimension") != NULL, "message: %s", st_error_get());

    /* simtune topk output equals the library result (tiles of 7 rows, k > N) */
    write_raw("topk_q.h5", x + 5 * d, 12, d);
    char *argv_ok[] = {"topk", "--gallery", "topk_gallery.h5", "--queries", "topk_q.h5", "-k", "55",
                       "--metric", "l2", "--tile-rows", "7", "--threads", "2", "--out",
                       "topk_out.h5", NULL};
    TEST_CHECK(cmd_topk(15, argv_ok) == 0, "simtune topk failed: %s", st_error_get());
    st_topk_options o = {ST_METRIC_L2, 55, 0, 0, NULL};
    st_topk_result r;
    st_topk_search_matrix(be, &o, x + 5 * d, 12, x, n, d, &r);
    hid_t f = st_h5_open_read("topk_out.h5");
    TEST_CHECK(f >= 0, "cannot open topk_out.h5: %s", st_error_get());
    if (f >= 0) {
        int64_t idx[12 * 55];
        float scores[12 * 55];
        hid_t ds = H5Dopen2(f, "indices", H5P_DEFAULT);
        H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, idx);
        H5Dclose(ds);
        TEST_CHECK(st_h5_read_floats(f, "scores", scores, 12 * 55, "topk_out.h5", "/") == 0,
                   "scores unreadable");
        H5Fclose(f);
        int differ = 0;
        for (int i = 0; i < 12 * 55; i++) differ += idx[i] != r.index[i] || scores[i] != r.score[i];
        TEST_CHECK(differ == 0, "simtune topk output differs from st_topk_search in %d of %d entries",
                   differ, 12 * 55);
        TEST_CHECK(idx[54] == -1 && scores[54] == FLT_MAX, "k > N not padded: %lld %g",
                   (long long)idx[54], scores[54]);
    }
    st_topk_result_free(&r);
    free(x);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "%s", st_error_get());
    test_merge_vs_sort();
    test_nan_scores_never_enter();
    for (int self = 0; self <= 1; self++) {
        test_search_vs_brute(be, ST_METRIC_IP, self);
        test_search_vs_brute(be, ST_METRIC_L2, self);
        test_search_vs_brute(be, ST_METRIC_COSINE, self);
    }
    test_files(be);
    st_backend_close(be);
    return test_finish("test_topk");
}
