/*
 * optim.h: the per-element optimizer updates of PyTorch 1.13 torch.optim (single-tensor path,
 * the default there; maximize=False, dampening=0, amsgrad=False, centered=False), shared by
 * kernels/cpu/optim.c and the CUDA optimizer kernel.
 *
 *   SGD     g += wd*p;  b = mu*b + g;  g = nesterov ? g + mu*b : b;  p -= lr*g
 *           (torch starts the buffer as a copy of g; with dampening 0 that equals mu*0 + g,
 *           so a zero-initialised m gives the same first step)
 *   Adam    g += wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
 *           p += -(lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps),  bc_i = 1 - b_i^step
 *   AdamW   p *= 1 - lr*wd (decoupled, before the moments); then Adam without the wd term
 *   RMSprop g += wd*p;  v = a*v + (1-a)*g*g;  avg = sqrt(v) + eps;
 *           momentum > 0: m = mu*m + g/avg, p -= lr*m;  else p -= lr * g/avg
 *
 * Roles of the two state slices: SGD m = momentum buffer; Adam/AdamW m = exp_avg,
 * v = exp_avg_sq; RMSprop v = square_avg, m = momentum buffer.
 * Scalars that torch computes in Python double (bias corrections, 1 - lr*wd) are computed in
 * double once per step by st_optim_coeffs_make on the host, then rounded to float as torch does
 * when it passes them to a float tensor op. Where ATen's vectorised CPU kernels use a fused
 * multiply-add (add with alpha: fmadd(b, alpha, a)) we call fmaf, and addcdiv/addcmul keep
 * ATen's evaluation order (self + value * t1 / t2, self + value * t1 * t2), so the CPU results
 * agree with torch to the last bit or two.
 *
 * Gradient norm, clipping and skipping (st_optim_status, backend.h) are decided where the
 * gradients live: optim_grad_norm reduces the squared norm into a device status and calls
 * st_optim_status_decide there; optim_step reads the verdict through st_optim_desc_effective
 * and st_optim_grad_effective, so no step waits for the host.
 */
#ifndef ST_MATH_OPTIM_H
#define ST_MATH_OPTIM_H

#include "../backend.h"
#include "defs.h"

typedef struct st_optim_coeffs {
    st_opt_kind kind;
    int nesterov;
    float lr, momentum, weight_decay, eps;
    float beta1, one_minus_beta1, beta2, one_minus_beta2;
    float alpha, one_minus_alpha;
    float adam_step_size;   /* lr / (1 - beta1^step) */
    float adam_bc2_sqrt;    /* sqrt(1 - beta2^step) */
    float adamw_decay;      /* 1 - lr * weight_decay */
} st_optim_coeffs;

/* Host side, once per step and parameter group. */
ST_HD st_optim_coeffs st_optim_coeffs_make(const st_optim_desc *d) {
    st_optim_coeffs c;
    double step = d->step > 0 ? (double)d->step : 1.0;
    c.kind = d->kind;
    c.nesterov = d->nesterov;
    c.lr = d->lr;
    c.momentum = d->momentum;
    c.weight_decay = d->weight_decay;
    c.eps = d->eps;
    c.beta1 = d->beta1;
    c.one_minus_beta1 = (float)(1.0 - (double)d->beta1);
    c.beta2 = d->beta2;
    c.one_minus_beta2 = (float)(1.0 - (double)d->beta2);
    c.alpha = d->alpha;
    c.one_minus_alpha = (float)(1.0 - (double)d->alpha);
    c.adam_step_size = (float)((double)d->lr / (1.0 - pow((double)d->beta1, step)));
    c.adam_bc2_sqrt = (float)sqrt(1.0 - pow((double)d->beta2, step));
    c.adamw_decay = (float)(1.0 - (double)d->lr * (double)d->weight_decay);
    return c;
}

/* torch.nn.utils.clip_grad_norm_ (max_norm rounded to float32, coefficient in double, applied in
 * float) and simtune's skip of a step whose norm is not finite; status->sum_squares is set. */
ST_HD void st_optim_status_decide(st_optim_status *s, float clip_norm) {
    s->norm = sqrt(s->sum_squares);
    s->clip = 0;
    s->clip_coef = 1.0f;
    s->skip = !isfinite(s->norm);
    if (s->skip) {
        s->skipped++;
        return;
    }
    if (clip_norm > 0.0f) {
        double coef = (double)clip_norm / (s->norm + 1e-6);
        if (coef < 1.0) {
            s->clip = 1;
            s->clip_coef = (float)coef;
        }
    }
}

/* The desc a step runs with: Adam's bias-correction step excludes the steps skipped on the
 * device that the host's count (d->step) does not know of yet. status may be NULL. */
ST_HD st_optim_desc st_optim_desc_effective(const st_optim_desc *d, const st_optim_status *s) {
    st_optim_desc e = *d;
    if (s) e.step -= (long)s->skipped;
    return e;
}

/* One gradient element as the update sees it: clipped when the status says so (the same float
 * product as scaling the gradient in place). status may be NULL. */
ST_HD float st_optim_grad_effective(float g, const st_optim_status *s) {
    return s && s->clip ? g * s->clip_coef : g;
}

ST_HD void st_sgd_update(const st_optim_coeffs *c, float *p, float g, float *buf) {
    if (c->weight_decay != 0.0f) g = fmaf(*p, c->weight_decay, g);
    if (c->momentum != 0.0f) {
        float b = *buf * c->momentum + g;
        *buf = b;
        g = c->nesterov ? fmaf(b, c->momentum, g) : b;
    }
    *p = fmaf(g, -c->lr, *p);
}

/* The shared moment update and step of Adam and AdamW (g already holds any L2 term). */
ST_HD void st_adam_moments_step(const st_optim_coeffs *c, float *p, float g, float *m, float *v) {
    float m_new = fmaf(g, c->one_minus_beta1, *m * c->beta1);
    float v_new = *v * c->beta2 + c->one_minus_beta2 * g * g;
    *m = m_new;
    *v = v_new;
    float denom = sqrtf(v_new) / c->adam_bc2_sqrt + c->eps;
    *p = *p + (-c->adam_step_size) * m_new / denom;
}

ST_HD void st_adam_update(const st_optim_coeffs *c, float *p, float g, float *m, float *v) {
    if (c->weight_decay != 0.0f) g = fmaf(*p, c->weight_decay, g);
    st_adam_moments_step(c, p, g, m, v);
}

ST_HD void st_adamw_update(const st_optim_coeffs *c, float *p, float g, float *m, float *v) {
    *p = *p * c->adamw_decay;
    st_adam_moments_step(c, p, g, m, v);
}

ST_HD void st_rmsprop_update(const st_optim_coeffs *c, float *p, float g, float *buf,
                             float *square_avg) {
    if (c->weight_decay != 0.0f) g = fmaf(*p, c->weight_decay, g);
    float sq = *square_avg * c->alpha + c->one_minus_alpha * g * g;
    *square_avg = sq;
    float avg = sqrtf(sq) + c->eps;
    if (c->momentum > 0.0f) {
        float b = *buf * c->momentum + g / avg;
        *buf = b;
        *p = fmaf(b, -c->lr, *p);
    } else {
        *p = *p + (-c->lr) * g / avg;
    }
}

/* One element of any optimizer; m and v point at this element's state (unused ones may be
 * NULL: SGD without momentum uses neither, RMSprop without momentum only v). */
ST_HD void st_optim_update(const st_optim_coeffs *c, float *p, float g, float *m, float *v) {
    switch (c->kind) {
    case ST_OPT_SGD: st_sgd_update(c, p, g, m); break;
    case ST_OPT_ADAM: st_adam_update(c, p, g, m, v); break;
    case ST_OPT_ADAMW: st_adamw_update(c, p, g, m, v); break;
    case ST_OPT_RMSPROP: st_rmsprop_update(c, p, g, m, v); break;
    }
}

#endif
