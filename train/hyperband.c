/*
 * hyperband.c: the Hyperband plan and the successive-halving top-k, integers only (no log()).
 * Contract and formulas in hyperband.h.
 */
#include "hyperband.h"

#include <math.h>
#include <stdlib.h>

#include "../kernels/check.h"

static long long ipow(int base, int exp) {
    long long p = 1;
    for (int i = 0; i < exp; i++) p *= base;
    return p;
}

static int check_config(const st_hyperband_config *c) {
    if (c->eta < 2 || c->eta > 1000)
        return st_error_set("hyperband.eta: %d is out of range: must be in [2, 1000]", c->eta);
    if (c->max_resource < 1 || c->max_resource > ST_HB_MAX_RESOURCE)
        return st_error_set("hyperband.max_resource: %d is out of range: must be in [1, %d] epochs", c->max_resource,
                            ST_HB_MAX_RESOURCE);
    if (c->min_resource < 1 || c->min_resource > c->max_resource)
        return st_error_set("hyperband.min_resource: %d is out of range: must be in [1, max_resource = %d]",
                            c->min_resource, c->max_resource);
    if (c->iterations < 1 || c->iterations > ST_HB_MAX_ITERATIONS)
        return st_error_set("hyperband.iterations: %d is out of range: must be in [1, %d]", c->iterations,
                            ST_HB_MAX_ITERATIONS);
    return 0;
}

static int bracket_size(const st_hyperband_config *c, int s_max, int s) {
    long long eta_s = ipow(c->eta, s);
    if (c->rounding == ST_HB_ROUNDING_PAPER) return (int)((s_max + 1) / (s + 1) * eta_s);
    return (int)(((s_max + 1) * eta_s + s) / (s + 1)); /* ceil in integers */
}

int st_hyperband_plan(const st_hyperband_config *c, st_hb_plan *plan) {
    if (check_config(c) != 0) return -1;
    int units = c->max_resource / c->min_resource;
    int s_max = 0;
    for (long long p = c->eta; p <= units; p *= c->eta) s_max++;

    plan->config = *c;
    plan->s_max = s_max;
    plan->n_brackets = c->iterations * (s_max + 1);
    plan->brackets = ST_CALLOC((size_t)plan->n_brackets, sizeof *plan->brackets);
    plan->n_trials = 0;
    for (int b = 0; b < plan->n_brackets; b++) {
        st_hb_bracket *br = &plan->brackets[b];
        br->iteration = b / (s_max + 1);
        br->s = s_max - b % (s_max + 1);
        br->n_rungs = br->s + 1;
        br->rungs = ST_CALLOC((size_t)br->n_rungs, sizeof *br->rungs);
        br->first_trial = plan->n_trials;
        int n = bracket_size(c, s_max, br->s);
        long long eta_s = ipow(c->eta, br->s);
        for (int i = 0; i < br->n_rungs; i++) {
            long long eta_i = ipow(c->eta, i);
            long long r = ((long long)c->max_resource * eta_i + eta_s - 1) / eta_s;
            br->rungs[i].n = (int)(n / eta_i);
            br->rungs[i].r = (int)(r < c->min_resource ? c->min_resource : r);
        }
        plan->n_trials += n;
    }
    return 0;
}

void st_hb_plan_free(st_hb_plan *plan) {
    for (int b = 0; b < plan->n_brackets; b++) free(plan->brackets[b].rungs);
    free(plan->brackets);
    plan->brackets = NULL;
    plan->n_brackets = 0;
}

long long st_hb_total_epochs(const st_hb_plan *plan, int continued) {
    long long total = 0;
    for (int b = 0; b < plan->n_brackets; b++) {
        const st_hb_bracket *br = &plan->brackets[b];
        for (int i = 0; i < br->n_rungs; i++) {
            int before = continued && i > 0 ? br->rungs[i - 1].r : 0;
            total += (long long)br->rungs[i].n * (br->rungs[i].r - before);
        }
    }
    return total;
}

int st_hb_better(double a, double b, int maximize) {
    if (isnan(a)) return 0;
    if (isnan(b)) return 1;
    return maximize ? a > b : a < b;
}

typedef struct {
    double metric;
    int trial_id;
    int index;
    int maximize;
} ranked;

static int compare_ranked(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    if (st_hb_better(a->metric, b->metric, a->maximize)) return -1;
    if (st_hb_better(b->metric, a->metric, a->maximize)) return 1;
    return (a->trial_id > b->trial_id) - (a->trial_id < b->trial_id);
}

int st_hb_select(const double *metrics, const int *trial_ids, int n, int keep, int maximize, int *out_indices) {
    if (keep > n) keep = n;
    if (keep <= 0) return 0;
    ranked *r = ST_MALLOC((size_t)n * sizeof *r);
    for (int i = 0; i < n; i++) r[i] = (ranked){metrics[i], trial_ids[i], i, maximize};
    qsort(r, (size_t)n, sizeof *r, compare_ranked);
    for (int i = 0; i < keep; i++) out_indices[i] = r[i].index;
    free(r);
    return keep;
}
