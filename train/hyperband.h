/*
 * hyperband.h: the Hyperband plan (Li et al., JMLR 2018, Algorithm 1) and the successive-halving
 * selection step, in integers only (docs: ../shared/docs/algorithms.md A.1-A.4, docs/config.md).
 *
 * Resource unit = epochs. With R = max_resource / min_resource (integer division) the plan has
 * s_max = the largest s with eta^s <= R (integer loop, never a float log), brackets
 * s = s_max .. 0, each repeated `iterations` times, and in bracket s rungs i = 0..s with
 *   n   = ceil((s_max+1) eta^s / (s+1))         rounding "algorithm" (Algorithm 1, the default)
 *   n   = floor((s_max+1) / (s+1)) * eta^s      rounding "paper" (Table 1 as printed)
 *   n_i = floor(n / eta^i)
 *   r_i = ceil(max_resource * eta^i / eta^s)  epochs, never below min_resource
 * r_i is exact when max_resource = min_resource * eta^k; otherwise it is rounded up (as Keras
 * Tuner does), and strictly increases with i because max_resource / eta^s >= min_resource >= 1.
 *
 * Callers: train/sweep.c (runner), cmd/sweep.c (--dry-run), tests/test_hyperband.c.
 */
#ifndef ST_HYPERBAND_H
#define ST_HYPERBAND_H

typedef enum { ST_HB_ROUNDING_ALGORITHM, ST_HB_ROUNDING_PAPER } st_hb_rounding;

typedef struct st_hyperband_config {
    int max_resource; /* R in epochs, >= 1 */
    int min_resource; /* epochs of the smallest rung, 1 <= min_resource <= max_resource */
    int eta;          /* >= 2 */
    int iterations;   /* how many times the whole set of brackets runs, >= 1 */
    st_hb_rounding rounding;
} st_hyperband_config;

typedef struct st_hb_rung {
    int n; /* trials evaluated in this rung */
    int r; /* epochs each of them has trained when evaluated */
} st_hb_rung;

typedef struct st_hb_bracket {
    int s;         /* bracket index s (s_max = most aggressive) */
    int iteration; /* 0-based repetition */
    int n_rungs;   /* s + 1 */
    st_hb_rung *rungs;
    int first_trial; /* id of the bracket's first trial; trials are numbered bracket by bracket */
} st_hb_bracket;

typedef struct st_hb_plan {
    st_hyperband_config config;
    int s_max;
    int n_brackets; /* iterations * (s_max + 1), in run order */
    st_hb_bracket *brackets;
    int n_trials; /* sum of the brackets' first-rung n */
} st_hb_plan;

/* Limits keep every count an exact int (a bracket's n is at most (s_max+1) * R). */
enum { ST_HB_MAX_RESOURCE = 100000, ST_HB_MAX_ITERATIONS = 1000 };

/* Build the plan. Returns -1 with st_error_set() naming the hyperband.* key when a value is out
 * of range. st_hb_plan_free releases it. */
int st_hyperband_plan(const st_hyperband_config *cfg, st_hb_plan *plan);
void st_hb_plan_free(st_hb_plan *plan);

/* Total epochs trained: continued = 1 counts sum n_i (r_i - r_{i-1}) (promoted trials resume
 * from their checkpoint), 0 counts sum n_i r_i (every rung retrained from scratch). */
long long st_hb_total_epochs(const st_hb_plan *plan, int continued);

/* Successive halving: the best `keep` of n results, best first, into out_indices (indices
 * into the arrays). Order: better metric first (maximize or minimize), NaN worst, ties by the
 * smaller trial id. keep is clamped to n. Returns the number written. */
int st_hb_select(const double *metrics, const int *trial_ids, int n, int keep, int maximize, int *out_indices);

/* 1 when metric a is strictly better than b under the goal (NaN is worse than any number). */
int st_hb_better(double a, double b, int maximize);

#endif
