/*
 * test_optim_torch.c: optimizer updates and learning-rate schedules against PyTorch 1.13
 * (fixture optim_fixture.bin from tests/torch_losses.py).
 *
 * Optimizers: for each case (SGD plain / momentum + L2 / Nesterov, Adam, Adam + L2, AdamW,
 * RMSprop, RMSprop + momentum + L2) the same 20-step gradient sequence drives cpu_optim_step
 * (the kernels/math/optim.h update) and torch.optim in float32; after EVERY step the parameters
 * and both state tensors must agree to relative error by norm <= 1e-6. Hyperparameters are
 * float32-representable on both sides and the evaluation order follows ATen's kernels, so the
 * only differences left are fused-vs-unfused roundings of single operations (<= 1 ulp, 6e-8
 * relative) that do not grow: 1e-6 allows ~16 ulp and catches any formula difference (bias
 * correction, eps placement or weight-decay placement change the result by >= 1e-4).
 * Schedules: st_lr_at / st_plateau against StepLR, LinearLR + CosineAnnealingLR and
 * ReduceLROnPlateau, relative 1e-9 (torch's recursive forms agree with the closed forms to
 * ~1e-15 in double; 1e-9 still catches any off-by-one tick, which moves the lr by >= 1e-3).
 */
#include <stdint.h>

#include "kernels/check.h"
#include "kernels/cpu/cpu_ops.h"
#include "losses_fixture.h"
#include "test_util.h"
#include "train/optim.h"

static const char *kind_name(int kind) {
    static const char *names[] = {"SGD", "Adam", "AdamW", "RMSprop"};
    return kind >= 0 && kind < 4 ? names[kind] : "?";
}

static void check_optim_case(const fixture *fx, int index, int steps, int numel) {
    const int32_t *kind = fixture_get(fx, "optim", index, "kind", 0, 2);
    const float *h = fixture_get(fx, "optim", index, "hyper", 1, 7);
    const float *param0 = fixture_get(fx, "optim", index, "param0", 1, numel);
    const float *grads = fixture_get(fx, "optim", index, "grads", 1, (int64_t)steps * numel);
    const float *ref_p = fixture_get(fx, "optim", index, "params", 1, (int64_t)steps * numel);
    const float *ref_m = fixture_get(fx, "optim", index, "m", 1, (int64_t)steps * numel);
    const float *ref_v = fixture_get(fx, "optim", index, "v", 1, (int64_t)steps * numel);
    st_optim_desc d = {.kind = (st_opt_kind)kind[0], .lr = h[0], .momentum = h[1],
                       .nesterov = kind[1], .beta1 = h[2], .beta2 = h[3], .eps = h[4],
                       .alpha = h[5], .weight_decay = h[6]};
    float *p = malloc(sizeof(float) * numel), *m = calloc(numel, sizeof(float)),
          *v = calloc(numel, sizeof(float));
    memcpy(p, param0, sizeof(float) * numel);
    double worst = 0;
    int bit_equal = 0;
    for (int t = 0; t < steps; t++) {
        d.step = t + 1;
        cpu_optim_step(NULL, &d, p, grads + (size_t)t * numel, m, v, numel, NULL);
        const size_t at = (size_t)t * numel;
        double ep = test_rel_error(p, ref_p + at, numel);
        double em = test_rel_error(m, ref_m + at, numel);
        double ev = test_rel_error(v, ref_v + at, numel);
        TEST_CHECK(ep <= 1e-6 && em <= 1e-6 && ev <= 1e-6,
                   "optim case %d (%s nesterov=%d momentum=%g wd=%g) step %d: rel error param "
                   "%.3g m %.3g v %.3g", index, kind_name(kind[0]), kind[1], h[1], h[6], t + 1,
                   ep, em, ev);
        worst = fmax(worst, fmax(ep, fmax(em, ev)));
        if (t == steps - 1) bit_equal = memcmp(p, ref_p + at, sizeof(float) * numel) == 0;
    }
    printf("optim case %d: %-7s momentum %.2f nesterov %d wd %.0e: worst rel error %.2e over %d "
           "steps, final params bit-equal: %s\n", index, kind_name(kind[0]), h[1], kind[1], h[6],
           worst, steps, bit_equal ? "yes" : "no");
    free(p);
    free(m);
    free(v);
}

static void check_lr_trail(const char *what, const double *got, const double *ref, int n) {
    for (int t = 0; t < n; t++)
        TEST_CHECK(fabs(got[t] - ref[t]) <= 1e-9 * fabs(ref[t]),
                   "%s tick %d: lr %.12g, torch %.12g", what, t, got[t], ref[t]);
}

static void check_schedules(const fixture *fx) {
    double got[64];
    {
        const double *cfg = fixture_get(fx, "sched", -1, "step/config", 2, 3);
        const double *ref = fixture_get(fx, "sched", -1, "step/lr", 2, 12);
        st_lr_schedule s = st_lr_schedule_default(ST_LR_STEP, cfg[0]);
        s.step_size = (int)cfg[1];
        s.gamma = cfg[2];
        TEST_CHECK(st_lr_schedule_validate(&s, "step") == 0, "%s", st_error_get());
        for (int t = 0; t < 12; t++) got[t] = st_lr_at(&s, t);
        check_lr_trail("StepLR", got, ref, 12);
    }
    {
        const double *cfg = fixture_get(fx, "sched", -1, "cosine/config", 2, 4);
        st_lr_schedule s = st_lr_schedule_default(ST_LR_COSINE, cfg[0]);
        s.warmup = (int)cfg[1];
        s.total = (int)cfg[2];
        s.min_lr = cfg[3];
        const double *ref = fixture_get(fx, "sched", -1, "cosine/lr", 2, s.total + 1);
        TEST_CHECK(st_lr_schedule_validate(&s, "cosine") == 0, "%s", st_error_get());
        for (int t = 0; t <= s.total; t++) got[t] = st_lr_at(&s, t);
        check_lr_trail("warmup + CosineAnnealingLR", got, ref, s.total + 1);
        TEST_CHECK(st_lr_at(&s, s.total + 5) == s.min_lr, "cosine past total stays at min_lr");
    }
    const char *modes[2] = {"plateau_min", "plateau_max"};
    for (int mode = 0; mode < 2; mode++) {
        char key[64];
        snprintf(key, sizeof key, "%s/config", modes[mode]);
        const double *cfg = fixture_get(fx, "sched", -1, key, 2, 6);
        snprintf(key, sizeof key, "%s/metrics", modes[mode]);
        const double *metrics = fixture_get(fx, "sched", -1, key, 2, 30);
        snprintf(key, sizeof key, "%s/lr", modes[mode]);
        const double *ref = fixture_get(fx, "sched", -1, key, 2, 30);
        st_lr_schedule s = st_lr_schedule_default(ST_LR_PLATEAU, cfg[0]);
        s.mode_max = mode;
        s.patience = (int)cfg[1];
        s.factor = cfg[2];
        s.min_lr = cfg[3];
        s.threshold = cfg[4];
        s.cooldown = (int)cfg[5];
        TEST_CHECK(st_lr_schedule_validate(&s, "plateau") == 0, "%s", st_error_get());
        st_plateau p;
        st_plateau_init(&p, &s);
        for (int t = 0; t < 30; t++) {
            got[t] = p.lr;
            st_plateau_update(&p, &s, metrics[t]);
        }
        check_lr_trail(modes[mode], got, ref, 30);
        int reductions = 0;
        for (int t = 1; t < 30; t++) reductions += ref[t] < ref[t - 1];
        TEST_CHECK(reductions >= 2, "%s: the fixture should exercise >= 2 reductions, has %d",
                   modes[mode], reductions);
    }
}

int main(void) {
    fixture *fx = fixture_load("optim_fixture.bin");
    if (!fx) test_skip("optim_fixture.bin missing (the torch_losses_fixture test writes it)");
    const int cases = *(const int32_t *)fixture_get(fx, "optim", -1, "count", 0, 1);
    const int32_t *shape = fixture_get(fx, "optim", -1, "shape", 0, 2);
    TEST_CHECK(cases >= 8, "fixture holds %d optimizer cases, expected >= 8", cases);
    for (int i = 0; i < cases; i++) check_optim_case(fx, i, shape[0], shape[1]);
    check_schedules(fx);
    fixture_free(fx);
    return test_finish("test_optim_torch");
}
