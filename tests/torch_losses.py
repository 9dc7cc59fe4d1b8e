#!/usr/bin/env python3
"""torch_losses.py: PyTorch 1.13 oracle for the losses, optimizers and LR schedules.

Writes fixtures into the current directory (the ctest build/test directory), read by
tests/test_losses_torch.c and tests/test_optim_torch.c:
  losses_fixture.bin  triplet cases (batch hard / batch all, hard / soft margin, rows
                      duplicated within and across classes, near-duplicates at 1e-3 and 1e-6
                      relative distance, a common offset, D up to 2048) and cross-entropy cases (with and without label
                      smoothing): inputs in float32, loss and gradient from float64 autograd.
  optim_fixture.bin   20 steps of torch.optim (SGD, Nesterov, Adam, AdamW, RMSprop) in float32
                      on a random parameter vector and gradient sequence, and the learning-rate
                      sequences of StepLR, LinearLR warmup + CosineAnnealingLR, ReduceLROnPlateau.

Record format (little endian), repeated until end of file:
  char name[48] (NUL padded); int32 dtype (0 int32, 1 float32, 2 float64); int64 count; data.

Exit 77 when torch/numpy are missing, unless SIMTUNE_REQUIRE_ORACLES=1 (then exit 1).
Triplet references are the mathematical definitions of kernels/math/triplet.h evaluated in
float64 with direct differences (no expanded form), so they carry no float32 rounding.
"""
import os
import struct

import testlib

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as exc:
    testlib.missing_oracle("torch_losses.py", f"torch/numpy not importable ({exc}); use /usr/bin/python3")

DTYPES = {np.dtype(np.int32): 0, np.dtype(np.float32): 1, np.dtype(np.float64): 2}
EPS = 1e-12


class Fixture:
    def __init__(self, path):
        self.path = path
        self.chunks = []

    def add(self, name, array):
        array = np.ascontiguousarray(array)
        assert len(name) < 48 and array.dtype in DTYPES, name
        header = name.encode().ljust(48, b"\0")
        header += struct.pack("<iq", DTYPES[array.dtype], array.size)
        self.chunks.append(header + array.tobytes())

    def write(self):
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"".join(self.chunks))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def f32(x):
    """The double nearest to x that is exactly a float32, so torch's Python-double scalars
    equal the float32 values the C side receives."""
    return float(np.float32(x))


# ---- triplet ----------------------------------------------------------------------------

def first_argbest(values, mask, larger):
    """Index of the max (larger) or min over mask, ties to the lowest index; -1 if empty."""
    best = -1
    for j in np.nonzero(mask)[0]:
        if best < 0 or (values[j] > values[best] if larger else values[j] < values[best]):
            best = j
    return best


def triplet_reference(emb, labels, batch_all, soft, margin):
    x = torch.tensor(emb, dtype=torch.float64, requires_grad=True)
    diff = x[:, None, :] - x[None, :, :]
    dist = torch.sqrt((diff * diff).sum(-1).clamp_min(0) + EPS)
    n = len(labels)
    same = labels[:, None] == labels[None, :]
    not_self = ~np.eye(n, dtype=bool)
    h = (lambda z: F.softplus(z)) if soft else (lambda z: torch.relu(margin + z))
    dnp = dist.detach().numpy()
    gap = np.inf  # distance of every decision from its threshold, to reject ambiguous cases
    if not batch_all:
        terms, dps, dns = [], [], []
        for a in range(n):
            p = first_argbest(dnp[a], same[a] & not_self[a], True)
            q = first_argbest(dnp[a], ~same[a], False)
            if p < 0 or q < 0:
                continue
            others_p = dnp[a][same[a] & not_self[a]]
            others_q = dnp[a][~same[a]]
            for vals, best in ((others_p, dnp[a, p]), (others_q, dnp[a, q])):
                distinct = np.abs(vals - best)[vals != best]
                if distinct.size:
                    gap = min(gap, distinct.min() / best)
            z = dist[a, p] - dist[a, q]
            if not soft:
                gap = min(gap, abs(margin + z.item()))
            terms.append(h(z))
            dps.append(dnp[a, p])
            dns.append(dnp[a, q])
        loss = torch.stack(terms).mean()
        active = sum(1 for t in terms if t.item() > 0) / len(terms)
        mean_pos, mean_neg = np.mean(dps), np.mean(dns)
    else:
        z = dist[:, :, None] - dist[:, None, :]
        valid = torch.tensor(same & not_self)[:, :, None] & torch.tensor(~same)[:, None, :]
        terms = h(z)[valid]
        if not soft:
            gap = min(gap, (margin + z[valid]).abs().min().item())
        nonzero = terms > 0
        loss = terms[nonzero].sum() / nonzero.sum()
        active = nonzero.sum().item() / terms.numel()
        mean_pos = dnp[same & not_self].mean()
        mean_neg = dnp[~same].mean()
    loss.backward()
    stats = np.array([loss.item(), active, mean_pos, mean_neg], dtype=np.float64)
    return stats, x.grad.numpy(), gap


TRIPLET_CASES = [
    # P, K, D, batch_all, soft, margin, duplicates, offset, near-duplicates (where, relative)
    (2, 2, 2, 0, 0, 0.2, 0, 0.0, None),
    (4, 4, 8, 0, 0, 0.2, 0, 0.0, None),
    (4, 4, 8, 0, 1, 0.0, 0, 0.0, None),
    (8, 4, 16, 0, 0, 0.5, 1, 0.0, None),
    (8, 4, 16, 0, 1, 0.0, 1, 3.0, None),
    (18, 4, 128, 0, 1, 0.0, 1, 0.0, None),
    (5, 3, 32, 0, 0, 1.0, 2, 0.0, None),
    (3, 2, 5, 1, 0, 0.3, 0, 0.0, None),
    (6, 4, 16, 1, 0, 1.0, 1, 0.0, None),
    (4, 3, 8, 1, 1, 0.0, 1, 2.0, None),
    (5, 4, 12, 1, 0, 0.5, 2, 0.0, None),
    # The regime where the expanded-form distances made the gradient depend on the GEMM kernel:
    # exact duplicates within and across classes at embedding sizes of real heads.
    (16, 4, 512, 0, 1, 0.0, 1, 0.0, None),
    (8, 4, 2048, 0, 0, 0.3, 1, 0.0, None),
    (8, 4, 512, 0, 1, 0.0, 2, 1.0, None),
    (6, 4, 2048, 1, 0, 1.0, 2, 0.0, None),
    # Near-duplicates: a row and a copy moved by 1e-3 or 1e-6 of its norm, across classes (the
    # pair is each other's hardest negative) and within a class (batch all: no mining to tie).
    (8, 4, 512, 0, 0, 0.2, 0, 0.0, ("across", 1e-3)),
    (8, 4, 2048, 0, 1, 0.0, 1, 0.0, ("across", 1e-6)),
    (6, 4, 512, 1, 1, 0.0, 0, 0.0, ("within", 1e-3)),
    (6, 4, 2048, 1, 1, 0.0, 0, 0.0, ("within", 1e-6)),
]


def add_near_duplicate(rng, labels, emb, where, rel):
    """Row b becomes row a moved by rel * ||a|| in a random direction. Across classes, the pair is
    scaled 3x away from the rest so that it is no third row's nearest negative: the only
    decisions it takes part in (a's and b's hardest negative is each other; each is the far
    hardest positive of its classmates) stay unambiguous."""
    a = np.nonzero(labels == 0)[0][0]
    b = np.nonzero(labels == 1)[0][0] if where == "across" else np.nonzero(labels == 0)[0][1]
    if where == "across":
        emb[a] *= np.float32(3.0)
    step = rng.standard_normal(emb.shape[1])
    step *= rel * np.linalg.norm(emb[a]) / np.linalg.norm(step)
    emb[b] = (emb[a] + step).astype(np.float32)


def make_triplet_case(rng, p, k, d, dups, offset, near):
    labels = np.repeat(np.arange(p, dtype=np.int32), k)
    perm = rng.permutation(p * k)
    labels = labels[perm].astype(np.int32)  # classes interleaved, not in blocks
    emb = rng.standard_normal((p * k, d)).astype(np.float32) + np.float32(offset)
    if dups >= 1:  # repeated images inside a class (PK sampling with repetition)
        for cls in range(0, p, 2):
            rows = np.nonzero(labels == cls)[0]
            emb[rows[1]] = emb[rows[0]]
    if dups >= 2:  # the same image under two labels: a zero-distance negative
        a = np.nonzero(labels == 0)[0][0]
        b = np.nonzero(labels == 1)[0][0]
        emb[b] = emb[a]
    if near is not None:
        add_near_duplicate(rng, labels, emb, *near)
    return labels, emb


def write_triplet_cases(fx, rng):
    for index, (p, k, d, batch_all, soft, margin, dups, offset, near) in enumerate(TRIPLET_CASES):
        for _attempt in range(100):
            labels, emb = make_triplet_case(rng, p, k, d, dups, offset, near)
            if index == 0:  # the worked example of docs/algorithms.md B.5
                labels = np.array([0, 0, 1, 1], dtype=np.int32)
                emb = np.array([[0, 0], [1, 0], [0, 2], [1.5, 0]], dtype=np.float32)
            stats, grad, gap = triplet_reference(emb, labels, batch_all, soft, margin)
            # Decisions (max/min choice, hinge activity) must not hinge on float32 rounding:
            # keep cases whose decisions are at least 1e-4 (relative/absolute) from a flip.
            if index == 0 or gap > 1e-4:
                break
        else:
            raise RuntimeError(f"triplet case {index}: no unambiguous sample found")
        pre = f"triplet/{index}/"
        fx.add(pre + "shape", np.array([p * k, d, batch_all, soft], dtype=np.int32))
        fx.add(pre + "margin", np.array([margin], dtype=np.float32))
        fx.add(pre + "labels", labels)
        fx.add(pre + "emb", emb)
        fx.add(pre + "stats", stats)
        fx.add(pre + "grad", grad.astype(np.float64))
    fx.add("triplet/count", np.array([len(TRIPLET_CASES)], dtype=np.int32))


# ---- cross-entropy ----------------------------------------------------------------------

XENT_CASES = [(8, 5, 0.0, 0.0), (8, 5, 0.1, 0.0), (16, 100, 0.0, 0.0), (16, 100, 0.2, 0.0),
              (4, 10, 0.1, 50.0), (1, 1000, 0.1, 0.0)]


def write_xent_cases(fx, rng):
    for index, (n, k, smoothing, offset) in enumerate(XENT_CASES):
        logits = (rng.standard_normal((n, k)) * 3 + offset).astype(np.float32)
        labels = rng.integers(0, k, n).astype(np.int32)
        z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        loss = F.cross_entropy(z, torch.tensor(labels, dtype=torch.long), label_smoothing=smoothing)
        loss.backward()
        pre = f"xent/{index}/"
        fx.add(pre + "shape", np.array([n, k], dtype=np.int32))
        fx.add(pre + "smoothing", np.array([smoothing], dtype=np.float32))
        fx.add(pre + "logits", logits)
        fx.add(pre + "labels", labels)
        fx.add(pre + "loss", np.array([loss.item()], dtype=np.float64))
        fx.add(pre + "grad", z.grad.numpy())
    fx.add("xent/count", np.array([len(XENT_CASES)], dtype=np.int32))


# ---- optimizers -------------------------------------------------------------------------

# kind codes follow st_opt_kind: 0 SGD, 1 Adam, 2 AdamW, 3 RMSprop.
# Fields: kind, lr, momentum, nesterov, beta1, beta2, eps, alpha, weight_decay.
OPTIM_CASES = [
    (0, 0.1, 0.0, 0, 0.9, 0.999, 1e-8, 0.99, 0.0),
    (0, 0.05, 0.9, 0, 0.9, 0.999, 1e-8, 0.99, 1e-2),
    (0, 0.05, 0.9, 1, 0.9, 0.999, 1e-8, 0.99, 5e-4),
    (1, 1e-3, 0.0, 0, 0.9, 0.999, 1e-8, 0.99, 0.0),
    (1, 3e-4, 0.0, 0, 0.8, 0.99, 1e-6, 0.99, 1e-2),
    (2, 1e-3, 0.0, 0, 0.9, 0.999, 1e-8, 0.99, 1e-2),
    (3, 1e-2, 0.0, 0, 0.9, 0.999, 1e-8, 0.99, 0.0),
    (3, 1e-2, 0.9, 0, 0.9, 0.999, 1e-8, 0.9, 1e-3),
]
OPTIM_STEPS = 20
OPTIM_NUMEL = 37  # not a multiple of the SIMD width: both vector and tail paths run


def make_optimizer(kind, params, lr, momentum, nesterov, beta1, beta2, eps, alpha, wd):
    if kind == 0:
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=bool(nesterov),
                               weight_decay=wd)
    if kind == 1:
        return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd)
    if kind == 2:
        return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, weight_decay=wd,
                               momentum=momentum)


def state_of(opt, param, kind):
    st = opt.state[param]
    zeros = np.zeros(OPTIM_NUMEL, dtype=np.float32)
    if kind == 0:
        m, v = st.get("momentum_buffer"), None
    elif kind in (1, 2):
        m, v = st["exp_avg"], st["exp_avg_sq"]
    else:
        m, v = st.get("momentum_buffer"), st["square_avg"]
    as_np = lambda t: zeros if t is None else t.detach().numpy().copy()
    return as_np(m), as_np(v)


def write_optim_cases(fx, rng):
    for index, case in enumerate(OPTIM_CASES):
        kind = case[0]
        hyper = [f32(v) for v in case[1:]]
        hyper[2] = int(case[3])
        param0 = rng.standard_normal(OPTIM_NUMEL).astype(np.float32)
        grads = rng.standard_normal((OPTIM_STEPS, OPTIM_NUMEL)).astype(np.float32)
        param = torch.nn.Parameter(torch.tensor(param0))
        opt = make_optimizer(kind, [param], *hyper)
        trail, ms, vs = [], [], []
        for step in range(OPTIM_STEPS):
            param.grad = torch.tensor(grads[step])
            opt.step()
            trail.append(param.detach().numpy().copy())
            m, v = state_of(opt, param, kind)
            ms.append(m)
            vs.append(v)
        pre = f"optim/{index}/"
        fx.add(pre + "kind", np.array([kind, int(case[3])], dtype=np.int32))
        fx.add(pre + "hyper", np.array([case[1], case[2], case[4], case[5], case[6], case[7],
                                        case[8]], dtype=np.float32))
        fx.add(pre + "param0", param0)
        fx.add(pre + "grads", grads)
        fx.add(pre + "params", np.stack(trail))
        fx.add(pre + "m", np.stack(ms))
        fx.add(pre + "v", np.stack(vs))
    fx.add("optim/count", np.array([len(OPTIM_CASES)], dtype=np.int32))
    fx.add("optim/shape", np.array([OPTIM_STEPS, OPTIM_NUMEL], dtype=np.int32))


# ---- schedules --------------------------------------------------------------------------

def lr_trail(scheduler_factory, base_lr, ticks, metrics=None):
    """Learning rate in force at ticks 0..ticks-1 (scheduler.step() after each tick)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base_lr)
    sched = scheduler_factory(opt)
    out = []
    for t in range(ticks):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[t])
    return np.array(out, dtype=np.float64)


def write_schedules(fx, rng):
    sched = torch.optim.lr_scheduler
    base = 0.1
    fx.add("sched/step/config", np.array([base, 3, 0.5], dtype=np.float64))
    fx.add("sched/step/lr", lr_trail(lambda o: sched.StepLR(o, step_size=3, gamma=0.5), base, 12))
    # Cosine with linear warmup (train/optim.h): W warmup ticks of LinearLR with start factor
    # 1/(W+1), then CosineAnnealingLR over the remaining T - W ticks down to eta_min.
    warmup, total, eta_min = 4, 20, 1e-3
    warm = lr_trail(lambda o: sched.LinearLR(o, start_factor=1.0 / (warmup + 1), end_factor=1.0,
                                              total_iters=warmup), base, warmup)
    cos = lr_trail(lambda o: sched.CosineAnnealingLR(o, T_max=total - warmup, eta_min=eta_min),
                   base, total - warmup + 1)
    fx.add("sched/cosine/config", np.array([base, warmup, total, eta_min], dtype=np.float64))
    fx.add("sched/cosine/lr", np.concatenate([warm, cos]))
    for mode in ("min", "max"):
        metrics = np.round(rng.standard_normal(30).cumsum() * (1 if mode == "max" else -1), 3)
        metrics[10:16] = metrics[9]  # a plateau of exactly equal values
        fx.add(f"sched/plateau_{mode}/config",
               np.array([base, 2, 0.5, 2e-2, 1e-4, 1], dtype=np.float64))
        fx.add(f"sched/plateau_{mode}/metrics", metrics.astype(np.float64))
        fx.add(f"sched/plateau_{mode}/lr", lr_trail(
            lambda o: sched.ReduceLROnPlateau(o, mode=mode, factor=0.5, patience=2,
                                              threshold=1e-4, cooldown=1, min_lr=2e-2),
            base, len(metrics), metrics))


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(20240607)
    losses = Fixture("losses_fixture.bin")
    write_triplet_cases(losses, rng)
    write_xent_cases(losses, rng)
    losses.write()
    optim = Fixture("optim_fixture.bin")
    write_optim_cases(optim, rng)
    write_schedules(optim, rng)
    optim.write()
    print("torch_losses.py: wrote losses_fixture.bin and optim_fixture.bin")


if __name__ == "__main__":
    main()
