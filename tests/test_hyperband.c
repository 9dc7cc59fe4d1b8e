/*
 * test_hyperband.c: the Hyperband plan against the paper (Li et al. 2018, Table 1 and Algorithm 1
 * as recomputed in ../shared/docs/algorithms.md A.2-A.4) and the successive-halving selection.
 * Everything is integer arithmetic, so every comparison is exact.
 */
#include <math.h>

#include "kernels/check.h"
#include "test_util.h"
#include "train/hyperband.h"

typedef struct {
    int s;
    int n_rungs;
    int n[5], r[5];
} expected_bracket;

static void check_plan(const char *name, const st_hb_plan *plan, const expected_bracket *want, int n_brackets) {
    TEST_CHECK(plan->n_brackets == n_brackets, "%s: %d brackets, want %d", name, plan->n_brackets, n_brackets);
    for (int b = 0; b < n_brackets && b < plan->n_brackets; b++) {
        const st_hb_bracket *br = &plan->brackets[b];
        TEST_CHECK(br->s == want[b].s, "%s: bracket %d has s=%d, want %d", name, b, br->s, want[b].s);
        TEST_CHECK(br->n_rungs == want[b].n_rungs, "%s: bracket s=%d has %d rungs, want %d", name, br->s, br->n_rungs,
                   want[b].n_rungs);
        for (int i = 0; i < br->n_rungs && i < want[b].n_rungs; i++)
            TEST_CHECK(br->rungs[i].n == want[b].n[i] && br->rungs[i].r == want[b].r[i],
                       "%s: s=%d rung %d is (%d, %d), want (%d, %d)", name, br->s, i, br->rungs[i].n, br->rungs[i].r,
                       want[b].n[i], want[b].r[i]);
    }
}

static void test_paper_table(void) {
    /* Table 1 as printed: n = floor((s_max+1)/(s+1)) * eta^s */
    static const expected_bracket table1[] = {
        {4, 5, {81, 27, 9, 3, 1}, {1, 3, 9, 27, 81}},
        {3, 4, {27, 9, 3, 1}, {3, 9, 27, 81}},
        {2, 3, {9, 3, 1}, {9, 27, 81}},
        {1, 2, {6, 2}, {27, 81}},
        {0, 1, {5}, {81}},
    };
    st_hyperband_config c = {81, 1, 3, 1, ST_HB_ROUNDING_PAPER};
    st_hb_plan plan;
    TEST_CHECK(st_hyperband_plan(&c, &plan) == 0, "plan R=81 paper: %s", st_error_get());
    TEST_CHECK(plan.s_max == 4, "s_max %d, want 4", plan.s_max);
    check_plan("paper", &plan, table1, 5);
    TEST_CHECK(st_hb_total_epochs(&plan, 0) == 1701, "paper from scratch %lld, want 1701",
               st_hb_total_epochs(&plan, 0));
    TEST_CHECK(st_hb_total_epochs(&plan, 1) == 1404, "paper continued %lld, want 1404", st_hb_total_epochs(&plan, 1));
    TEST_CHECK(plan.n_trials == 81 + 27 + 9 + 6 + 5, "paper trials %d", plan.n_trials);
    st_hb_plan_free(&plan);
}

static void test_algorithm_table(void) {
    /* Algorithm 1: n = ceil((s_max+1) eta^s / (s+1)) */
    static const expected_bracket alg1[] = {
        {4, 5, {81, 27, 9, 3, 1}, {1, 3, 9, 27, 81}},
        {3, 4, {34, 11, 3, 1}, {3, 9, 27, 81}},
        {2, 3, {15, 5, 1}, {9, 27, 81}},
        {1, 2, {8, 2}, {27, 81}},
        {0, 1, {5}, {81}},
    };
    st_hyperband_config c = {81, 1, 3, 1, ST_HB_ROUNDING_ALGORITHM};
    st_hb_plan plan;
    TEST_CHECK(st_hyperband_plan(&c, &plan) == 0, "plan R=81 algorithm: %s", st_error_get());
    check_plan("algorithm", &plan, alg1, 5);
    TEST_CHECK(st_hb_total_epochs(&plan, 0) == 1902, "algorithm from scratch %lld, want 1902",
               st_hb_total_epochs(&plan, 0));
    TEST_CHECK(st_hb_total_epochs(&plan, 1) == 1581, "algorithm continued %lld, want 1581",
               st_hb_total_epochs(&plan, 1));
    TEST_CHECK(plan.n_trials == 143, "algorithm trials %d, want 143", plan.n_trials);
    st_hb_plan_free(&plan);
}

static int s_max_of(int R, int min_r, int eta) {
    st_hyperband_config c = {R, min_r, eta, 1, ST_HB_ROUNDING_ALGORITHM};
    st_hb_plan plan;
    if (st_hyperband_plan(&c, &plan) != 0) return -1;
    int s = plan.s_max;
    st_hb_plan_free(&plan);
    return s;
}

static void test_s_max(void) {
    /* float log gets these wrong: log(243)/log(3) = 4.999..., log(1000)/log(10) = 2.999... */
    TEST_CHECK(s_max_of(243, 1, 3) == 5, "R=243 eta=3: s_max %d, want 5", s_max_of(243, 1, 3));
    TEST_CHECK(s_max_of(1000, 1, 10) == 3, "R=1000 eta=10: s_max %d, want 3", s_max_of(1000, 1, 10));
    TEST_CHECK(s_max_of(80, 1, 3) == 3, "R=80 eta=3: s_max %d, want 3", s_max_of(80, 1, 3));
    TEST_CHECK(s_max_of(1, 1, 3) == 0, "R=1: s_max %d, want 0", s_max_of(1, 1, 3));
    /* min_resource scaling: R/min = 27 units */
    TEST_CHECK(s_max_of(81, 3, 3) == 3, "R=81 min=3: s_max %d, want 3", s_max_of(81, 3, 3));
}

static void test_rounding_of_epochs(void) {
    /* R = 100 is not a power of 3: r_i = ceil(100 * 3^(i-s)), as Keras Tuner: 2, 4, 12, 34, 100 */
    st_hyperband_config c = {100, 1, 3, 1, ST_HB_ROUNDING_ALGORITHM};
    st_hb_plan plan;
    TEST_CHECK(st_hyperband_plan(&c, &plan) == 0, "plan R=100: %s", st_error_get());
    static const int want[5] = {2, 4, 12, 34, 100};
    for (int i = 0; i < 5; i++)
        TEST_CHECK(plan.brackets[0].rungs[i].r == want[i], "R=100 s=4 rung %d: %d epochs, want %d", i,
                   plan.brackets[0].rungs[i].r, want[i]);
    st_hb_plan_free(&plan);
    /* min_resource = 3, R = 81: rungs of the first bracket are 3, 9, 27, 81 */
    c = (st_hyperband_config){81, 3, 3, 2, ST_HB_ROUNDING_ALGORITHM};
    TEST_CHECK(st_hyperband_plan(&c, &plan) == 0, "plan R=81 min 3: %s", st_error_get());
    TEST_CHECK(plan.n_brackets == 8, "2 iterations of 4 brackets: %d", plan.n_brackets);
    TEST_CHECK(plan.brackets[0].rungs[0].r == 3 && plan.brackets[0].rungs[3].r == 81, "min_resource 3: %d .. %d",
               plan.brackets[0].rungs[0].r, plan.brackets[0].rungs[3].r);
    TEST_CHECK(plan.brackets[4].iteration == 1 && plan.brackets[4].s == 3, "second iteration restarts at s_max");
    TEST_CHECK(plan.brackets[4].first_trial == plan.n_trials / 2, "trial ids continue across iterations");
    st_hb_plan_free(&plan);
}

static void test_bad_config(void) {
    st_hb_plan plan;
    st_hyperband_config bad[] = {{81, 1, 1, 1, ST_HB_ROUNDING_ALGORITHM},
                                 {0, 1, 3, 1, ST_HB_ROUNDING_ALGORITHM},
                                 {81, 82, 3, 1, ST_HB_ROUNDING_ALGORITHM},
                                 {81, 1, 3, 0, ST_HB_ROUNDING_ALGORITHM}};
    const char *keys[] = {"hyperband.eta", "hyperband.max_resource", "hyperband.min_resource", "hyperband.iterations"};
    for (int i = 0; i < 4; i++) {
        TEST_CHECK(st_hyperband_plan(&bad[i], &plan) == -1, "bad config %d accepted", i);
        TEST_CHECK(strstr(st_error_get(), keys[i]) != NULL, "message '%s' does not name %s", st_error_get(), keys[i]);
    }
}

static void test_select(void) {
    /* maximize; NaN worst; the tie 0.5 / 0.5 goes to the smaller trial id (3 before 9) */
    double m[6] = {0.5, NAN, 0.9, 0.5, 0.1, 0.7};
    int ids[6] = {9, 1, 4, 3, 5, 6};
    int out[6];
    int n = st_hb_select(m, ids, 6, 4, 1, out);
    int want_max[4] = {2, 5, 3, 0};
    TEST_CHECK(n == 4, "kept %d, want 4", n);
    for (int i = 0; i < 4; i++)
        TEST_CHECK(out[i] == want_max[i], "maximize rank %d: index %d, want %d", i, out[i], want_max[i]);
    /* minimize: 0.1, then the 0.5 tie by id, then 0.7; NaN still last */
    n = st_hb_select(m, ids, 6, 6, 0, out);
    int want_min[6] = {4, 3, 0, 5, 2, 1};
    for (int i = 0; i < 6; i++)
        TEST_CHECK(out[i] == want_min[i], "minimize rank %d: index %d, want %d", i, out[i], want_min[i]);
    TEST_CHECK(st_hb_select(m, ids, 6, 0, 1, out) == 0, "keep 0 selects nothing");
    TEST_CHECK(st_hb_select(m, ids, 2, 5, 1, out) == 2, "keep is clamped to n");
}

int main(void) {
    test_paper_table();
    test_algorithm_table();
    test_s_max();
    test_rounding_of_epochs();
    test_bad_config();
    test_select();
    return test_finish("test_hyperband");
}
