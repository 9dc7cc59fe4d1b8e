/*
 * test_metrics.c: retrieval metrics and evaluation protocols against the worked examples of
 * docs/algorithms.md D.4 and the policies of infer/eval.h.
 *
 *   Example 1 (trec_eval semantics): map, map_cut normalised by R, P@k padded past the list.
 *   Example 2 (leave-one-out on 1-D points): R@1, R@2, R-precision, MAP@R, mAP through
 *     st_eval_run, i.e. search + self-exclusion + relevance + averaging.
 *   Example 3 (1 positive + 99 negatives): mean/median rank, top-1/top-5, MRR, and the
 *     pessimistic tie rule; the rank100 protocol on separable and on collapsed embeddings.
 *   Registry: every accepted metric name parses to its {family, k} and formats back to the
 *     canonical name, every rejected spelling is refused; per-query values by name.
 *   Policies: a query with no relevant gallery row is excluded; self-exclusion keeps an exact
 *     duplicate (a hit) and ties go to the lower row; stratified splits have fixed sizes and are
 *     reproducible from the seed.
 * The examples' values are exact rationals printed to 6 decimals in the doc, so 1e-6 is the
 * tolerance for them (our sums run in double, error < 1e-15).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "infer/embeddings_h5.h"
#include "infer/eval.h"
#include "infer/metrics.h"
#include "kernels/check.h"
#include "test_util.h"

#define EXAMPLE_TOL 1e-6

static void check_value(const char *what, double got, double want) {
    TEST_CHECK(fabs(got - want) <= EXAMPLE_TOL, "%s = %.9f, expected %.9f", what, got, want);
}

static double report_value(const st_eval_report *r, const char *name) {
    for (int m = 0; m < r->n_metrics; m++)
        if (!strcmp(r->names[m], name)) return r->mean[m];
    TEST_CHECK(0, "metric %s missing from the report", name);
    return NAN;
}

static void test_example1(void) {
    const uint8_t rel[10] = {1, 0, 1, 0, 0, 1, 0, 0, 0, 0};
    check_value("map", st_ap_at(rel, 10, 0, 4), 2.1666666666666667 / 4);
    check_value("map_cut.5", st_ap_at(rel, 10, 5, 4), (1.0 + 2.0 / 3) / 4);
    check_value("map_cut.2", st_ap_at(rel, 10, 2, 4), 0.25);
    check_value("map_cut.1000 (past the list)", st_ap_at(rel, 10, 1000, 4), 2.1666666666666667 / 4);
    check_value("P.5", st_precision_at(rel, 10, 5), 0.4);
    check_value("P.10", st_precision_at(rel, 10, 10), 0.3);
    check_value("P.20 (padded)", st_precision_at(rel, 10, 20), 0.15);
    check_value("recip_rank", st_recip_rank(rel, 10), 1.0);
    check_value("success.1", st_hit_at(rel, 10, 1), 1.0);
    check_value("AP with R = 0", st_ap_at(rel, 10, 0, 0), 0.0);
    const uint8_t none[3] = {0, 0, 0};
    check_value("recip_rank, nothing relevant", st_recip_rank(none, 3), 0.0);
    TEST_CHECK(st_first_relevant_rank(none, 3) == 0, "first relevant rank of an empty hit list");
}

/* The registry's parser: every accepted spelling gives its {family, k} and formats back to the
 * canonical name; every rejection is refused. */
static void test_registry_names(void) {
    static const struct {
        const char *name, *canonical;
        st_metric_family family;
        int k, in_validation;
    } accepted[] = {
        {"hit@1", "hit@1", ST_MF_HIT, 1, 1},
        {"hit@05", "hit@5", ST_MF_HIT, 5, 1}, /* K is read like every config integer (strtoll) */
        {"hit@+7", "hit@7", ST_MF_HIT, 7, 1},
        {"hit@1000000", "hit@1000000", ST_MF_HIT, 1000000, 1},
        {"recall@10", "recall@10", ST_MF_RECALL, 10, 1},
        {"precision@5", "precision@5", ST_MF_PRECISION, 5, 1},
        {"map@10", "map@10", ST_MF_MAP_AT, 10, 1},
        {"map@R", "map@r", ST_MF_MAP_R, 0, 1},
        {"map@r", "map@r", ST_MF_MAP_R, 0, 1},
        {"mrr", "mrr", ST_MF_MRR, 0, 1},
        {"r-precision", "r-precision", ST_MF_R_PRECISION, 0, 0},
        {"map", "map", ST_MF_MAP, 0, 0},
        {"mean_rank", "mean_rank", ST_MF_MEAN_RANK, 0, 0},
        {"median_rank", "median_rank", ST_MF_MEDIAN_RANK, 0, 0},
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        st_metric_id id = {ST_MF_MRR, -1};
        char back[32] = "";
        int rc = st_metric_id_parse(accepted[i].name, &id);
        if (rc == 0) st_metric_id_format(id, back, sizeof back);
        TEST_CHECK(rc == 0 && id.family == accepted[i].family && id.k == accepted[i].k &&
                       !strcmp(back, accepted[i].canonical),
                   "'%s': rc %d, family %d k %d, formats as '%s'", accepted[i].name, rc, (int)id.family, id.k, back);
        TEST_CHECK(st_metric_in_validation(id.family) == accepted[i].in_validation, "'%s': validation flag",
                   accepted[i].name);
    }
    static const char *const rejected[] = {
        "", "hit", "hit@", "hit@0", "hit@-1", "hit@1000001", "hit@1x", "hit@1.5", "hit@ ", "Hit@1", "HIT@1",
        "MRR", "Mrr", "MAP@R", "map@", "map@x", "map@rr", "precision@", "recall", "hits@1", "hit@R",
        "val/hit@1", "hit@99999999999999999999", "mrr@1", "r_precision", "loss",
    };
    for (size_t i = 0; i < sizeof rejected / sizeof rejected[0]; i++) {
        st_metric_id id;
        TEST_CHECK(st_metric_id_parse(rejected[i], &id) != 0, "'%s' was accepted", rejected[i]);
    }
    TEST_CHECK(!strcmp(st_metric_validation_names(), "hit@K, map@K, precision@K, recall@K, map@R, mrr"),
               "validation hint: %s", st_metric_validation_names());
}

/* The registry's per-query values agree with the metric functions on example 1 (recall@k is
 * hit@k; mean and median rank are the first relevant rank, or past the depth). */
static void test_registry_values(void) {
    const uint8_t rel[10] = {0, 0, 1, 0, 0, 1, 0, 0, 0, 0}, none[3] = {0, 0, 0};
    const struct { st_metric_id id; double want; } cases[] = {
        {{ST_MF_HIT, 2}, 0.0}, {{ST_MF_HIT, 3}, 1.0}, {{ST_MF_RECALL, 2}, 0.0}, {{ST_MF_RECALL, 3}, 1.0},
        {{ST_MF_PRECISION, 5}, 0.2}, {{ST_MF_MAP_AT, 6}, (1.0 / 3 + 2.0 / 6) / 4},
        {{ST_MF_MAP_R, 0}, (1.0 / 3) / 4}, {{ST_MF_R_PRECISION, 0}, 0.25},
        {{ST_MF_MAP, 0}, (1.0 / 3 + 2.0 / 6) / 4}, {{ST_MF_MRR, 0}, 1.0 / 3},
        {{ST_MF_MEAN_RANK, 0}, 3.0}, {{ST_MF_MEDIAN_RANK, 0}, 3.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        st_metric_id_format(cases[i].id, name, sizeof name);
        check_value(name, st_metric_of_query(cases[i].id, rel, 10, 4), cases[i].want);
    }
    check_value("mean_rank, none within the depth", st_metric_of_query((st_metric_id){ST_MF_MEAN_RANK, 0}, none, 3, 1),
                4.0);
}

/* A labelled (n, d) embeddings struct over caller-owned arrays (never freed). */
static st_embeddings make(float *x, long n, int d, int32_t *labels) {
    st_embeddings e;
    memset(&e, 0, sizeof e);
    e.n = n;
    e.d = d;
    e.vectors = x;
    e.labels = labels;
    e.normalized = -1;
    return e;
}

static void test_example2(st_backend *be) {
    /* per-query rows of the doc's table, checked with the metric functions directly */
    const uint8_t hits[6][5] = {{1, 0, 1, 0, 0}, {1, 0, 1, 0, 0}, {0, 0, 0, 1, 1},
                                {0, 0, 1, 1, 0}, {0, 1, 0, 1, 0}, {1, 0, 1, 0, 0}};
    const double ap_full[6] = {0.8333333333, 0.8333333333, 0.325, 0.4166666667, 0.5, 0.8333333333};
    for (int i = 0; i < 6; i++) {
        TEST_CHECK(fabs(st_ap_at(hits[i], 5, 0, 2) - ap_full[i]) < EXAMPLE_TOL, "example 2 AP row %d", i);
    }
    check_value("MAP@R row 52", st_map_at_r(hits[4], 5, 2), 0.25);
    check_value("R-precision row 52", st_r_precision(hits[4], 5, 2), 0.5);

    /* the same through the leave-one-out protocol (l2 on 1-D points, labels A=0, B=1) */
    float x[6] = {0, 10, 25, 32, 52, 95};
    int32_t labels[6] = {0, 0, 1, 0, 1, 1};
    st_embeddings e = make(x, 6, 1, labels);
    st_eval_options o;
    st_eval_defaults(&o);
    o.protocol = ST_PROTOCOL_LOO;
    o.metric = ST_METRIC_L2;
    o.k = 2;
    st_eval_report r;
    TEST_CHECK(st_eval_run(be, &o, &e, "example2", NULL, NULL, &r) == 0, "loo: %s", st_error_get());
    check_value("R@1", report_value(&r, "hit@1"), 0.5);
    check_value("R@2", report_value(&r, "hit@2"), 0.6666666667);
    check_value("R-precision", report_value(&r, "r-precision"), 0.3333333333);
    check_value("MAP@R", report_value(&r, "map@r"), 0.2916666667);
    check_value("mAP", report_value(&r, "map"), 0.6236111111);
    TEST_CHECK(r.queries == 6 && r.excluded == 0, "queries %ld excluded %ld", r.queries, r.excluded);
    TEST_CHECK(r.first.result_rows[0] == 1 && r.first.result_rows[1] == 2,
               "query 0 neighbours %lld %lld, expected rows 1 (x=10) and 2 (x=25)",
               (long long)r.first.result_rows[0], (long long)r.first.result_rows[1]);
    st_eval_report_free(&r);
}

static void test_example3(void) {
    float negatives[99];
    double ranks[3];
    const int wanted[3] = {1, 3, 12};
    for (int qi = 0; qi < 3; qi++) { /* positive 0.5; wanted-1 negatives above it, rest below */
        for (int j = 0; j < 99; j++) negatives[j] = j < wanted[qi] - 1 ? 0.9f - 0.001f * j : 0.1f;
        ranks[qi] = st_rank_of_positive(0.5f, negatives, 99, 1);
        TEST_CHECK(ranks[qi] == wanted[qi], "rank %g, expected %d", ranks[qi], wanted[qi]);
    }
    double mean, std, mrr = 0, top1 = 0, top5 = 0;
    st_mean_std(ranks, 3, &mean, &std);
    for (int i = 0; i < 3; i++) {
        mrr += 1.0 / ranks[i] / 3;
        top1 += (ranks[i] == 1) / 3.0;
        top5 += (ranks[i] <= 5) / 3.0;
    }
    check_value("mean rank", mean, 5.3333333333);
    check_value("median rank", st_median(ranks, 3), 3);
    check_value("top-1", top1, 0.3333333333);
    check_value("top-5", top5, 0.6666666667);
    check_value("MRR", mrr, 0.4722222222);
    double even[4] = {4, 1, 3, 2};
    check_value("median of an even count", st_median(even, 4), 2.5);
    /* ties: s+ = 0.8 among 0.9, 0.8, 0.8 and lower ones -> pessimistic rank 4 */
    for (int j = 0; j < 99; j++) negatives[j] = 0.1f;
    negatives[0] = 0.9f;
    negatives[1] = 0.8f;
    negatives[2] = 0.8f;
    TEST_CHECK(st_rank_of_positive(0.8f, negatives, 99, 1) == 4, "tie rank %d, expected 4",
               st_rank_of_positive(0.8f, negatives, 99, 1));
    TEST_CHECK(st_rank_of_positive(0.8f, negatives, 99, 0) == 99, "smaller-is-better tie rank %d",
               st_rank_of_positive(0.8f, negatives, 99, 0));
}

static void test_rank100_protocol(st_backend *be) {
    enum { N = 300, D = 3 };
    static float x[N * D];
    static int32_t labels[N];
    for (int i = 0; i < N; i++) { /* class c near axis c: the positive always wins */
        labels[i] = i % 3;
        for (int j = 0; j < D; j++) x[i * D + j] = j == labels[i] ? 1.0f : 0.01f * (float)(i % 7);
    }
    st_embeddings e = make(x, N, D, labels);
    st_eval_options o;
    st_eval_defaults(&o);
    o.protocol = ST_PROTOCOL_RANK100;
    st_eval_report r;
    TEST_CHECK(st_eval_run(be, &o, &e, "rank100", NULL, NULL, &r) == 0, "rank100: %s", st_error_get());
    check_value("separable mean rank", report_value(&r, "mean_rank"), 1.0);
    check_value("separable hit@1", report_value(&r, "hit@1"), 1.0);
    TEST_CHECK(r.queries == N, "rank100 queries %ld", r.queries);
    st_eval_report_free(&r);
    for (int i = 0; i < N * D; i++) x[i] = 1.0f; /* collapsed: every score ties */
    TEST_CHECK(st_eval_run(be, &o, &e, "rank100", NULL, NULL, &r) == 0, "rank100: %s", st_error_get());
    check_value("collapsed median rank (pessimistic)", report_value(&r, "median_rank"), 100.0);
    check_value("collapsed hit@1", report_value(&r, "hit@1"), 0.0);
    st_eval_report_free(&r);
}

static void test_no_relevant_policy(st_backend *be) {
    float g[4] = {0, 1, 10, 11}, q[3] = {0.1f, 10.2f, 5};
    int32_t gl[4] = {0, 0, 1, 1}, ql[3] = {0, 1, 2};
    char *gnames[2] = {"cat", "dog"}, *qnames[3] = {"cat", "dog", "emu"}; /* no emu in the gallery */
    st_embeddings ge = make(g, 4, 1, gl), qe = make(q, 3, 1, ql);
    ge.label_names = gnames;
    ge.n_label_names = 2;
    qe.label_names = qnames;
    qe.n_label_names = 3;
    st_eval_options o;
    st_eval_defaults(&o);
    o.protocol = ST_PROTOCOL_FILES;
    o.metric = ST_METRIC_L2;
    st_eval_report r;
    TEST_CHECK(st_eval_run(be, &o, &ge, "g", &qe, "q", &r) == 0, "files: %s", st_error_get());
    TEST_CHECK(r.queries == 2 && r.excluded == 1, "queries %ld excluded %ld, expected 2 and 1",
               r.queries, r.excluded);
    check_value("hit@1 over the 2 evaluated queries", report_value(&r, "hit@1"), 1.0);
    check_value("map over the 2 evaluated queries", report_value(&r, "map"), 1.0);
    TEST_CHECK(r.first.n_relevant[2] == 0, "the emu query has R = %ld", r.first.n_relevant[2]);
    st_eval_report_free(&r);
}

static void test_self_exclusion_duplicate(st_backend *be) {
    /* rows: 0 A x=0, 1 B x=1, 2 B x=2, 3 A x=0 (exact duplicate of row 0) */
    float x[4] = {0, 1, 2, 0};
    int32_t labels[4] = {0, 1, 1, 0};
    st_embeddings e = make(x, 4, 1, labels);
    st_eval_options o;
    st_eval_defaults(&o);
    o.protocol = ST_PROTOCOL_LOO;
    o.metric = ST_METRIC_L2;
    st_eval_report r;
    TEST_CHECK(st_eval_run(be, &o, &e, "dup", NULL, NULL, &r) == 0, "loo: %s", st_error_get());
    /* query 0 -> row 3 (duplicate, hit); query 3 -> row 0 (hit); query 1 -> rows 0 and 2 tie at
     * distance 1, the lower row 0 (A, miss) first; query 2 -> row 1 (hit) */
    check_value("hit@1 with a duplicate and a tie", report_value(&r, "hit@1"), 0.75);
    TEST_CHECK(r.first.result_rows[0 * r.first.depth] == 3, "query 0 first result %lld",
               (long long)r.first.result_rows[0]);
    TEST_CHECK(r.first.result_rows[1 * r.first.depth] == 0, "query 1 tie broken to row %lld",
               (long long)r.first.result_rows[r.first.depth]);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < r.first.depth; j++)
            TEST_CHECK(r.first.result_rows[i * r.first.depth + j] != i, "query %d retrieved itself", i);
    st_eval_report_free(&r);
}

static void test_split_protocol(st_backend *be) {
    enum { N = 53, D = 4 };
    static float x[N * D];
    static int32_t labels[N];
    for (int i = 0; i < N; i++) {
        labels[i] = i < 50 ? i % 5 : -1; /* 5 classes of 10, 3 unlabelled distractors */
        for (int j = 0; j < D; j++) x[i * D + j] = (float)((i * 7 + j * 3) % 11) + (j == labels[i % 5]) * 4.0f;
    }
    st_embeddings e = make(x, N, D, labels);
    st_eval_options o;
    st_eval_defaults(&o);
    o.splits = 3;
    o.seed = 7;
    st_eval_report a, b;
    TEST_CHECK(st_eval_run(be, &o, &e, "split", NULL, NULL, &a) == 0, "split: %s", st_error_get());
    TEST_CHECK(st_eval_run(be, &o, &e, "split", NULL, NULL, &b) == 0, "split: %s", st_error_get());
    TEST_CHECK(a.queries == 10 && a.gallery_size == 43 && a.excluded == 0,
               "20%% of 5 classes of 10: queries %ld gallery %ld", a.queries, a.gallery_size);
    TEST_CHECK(!memcmp(a.per_split, b.per_split, (size_t)a.splits * a.n_metrics * sizeof(double)),
               "the same seed gave different splits");
    double mean = 0;
    for (int s = 0; s < 3; s++) mean += a.per_split[(size_t)s * a.n_metrics] / 3;
    TEST_CHECK(fabs(mean - a.mean[0]) < 1e-12, "mean over splits %g vs %g", mean, a.mean[0]);
    for (int i = 0; i < a.first.q; i++) /* unlabelled rows never become queries */
        TEST_CHECK(a.first.query_rows[i] < 50, "unlabelled row %lld became a query",
                   (long long)a.first.query_rows[i]);
    st_eval_report_free(&a);
    st_eval_report_free(&b);
}

int main(void) {
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "%s", st_error_get());
    test_example1();
    test_registry_names();
    test_registry_values();
    test_example2(be);
    test_example3();
    test_rank100_protocol(be);
    test_no_relevant_policy(be);
    test_self_exclusion_duplicate(be);
    test_split_protocol(be);
    st_backend_close(be);
    return test_finish("test_metrics");
}
