/*
 * bench_peak.c: the machine's arithmetic peak on the CPU threads the other benchmarks use
 * (OpenMP, the count st_backend_open set), behind `simtune bench peak` and the "% of peak"
 * that `bench train|infer` print next to images/s (bench_peak.h).
 *
 *   FP32  every thread runs a loop of fused multiply-adds on ACCUMULATORS independent vector
 *         registers (enough chains to cover the FMA latency on every FMA port), 2 FLOPs per lane:
 *         AVX-512 (16 lanes) when the CPU has it, else AVX2+FMA (8 lanes), else scalar C.
 *   BF16  the same with AVX512_BF16's vdpbf16ps (per 32-bit lane: two bf16 products added
 *         into an FP32 accumulator, 4 FLOPs), only where the CPU has avx512_bf16.
 * Each figure is the best of PEAK_REPEATS timed runs of about PEAK_SECONDS, so a busy moment on
 * a shared machine lowers one run, not the result. Values are kept finite (multipliers near 1).
 */
#include "bench_peak.h"

#include <immintrin.h>
#include <omp.h>

#include "data/base/clock.h"

/* 24 chains: over latency x FMA ports on current x86 (12 measured 6% lower on Zen, 2026-12-07) */
enum { ACCUMULATORS = 24, PEAK_REPEATS = 3 };
static const double PEAK_SECONDS = 0.15;

/* Sum of the accumulators, written where the compiler must assume it is read, so the loop stays. */
static volatile float peak_sink;

__attribute__((target("avx512f"))) static double fma_avx512(long iters) {
    __m512 acc[ACCUMULATORS];
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_set1_ps((float)i);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 24 /* the accumulators must live in registers: a loop over them stays in memory */
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < ACCUMULATORS; i++) s = _mm512_add_ps(s, acc[i]);
    peak_sink = _mm512_reduce_add_ps(s);
    return (double)iters * ACCUMULATORS * 16 * 2;
}

__attribute__((target("avx2,fma"))) static double fma_avx2(long iters) {
    __m256 acc[ACCUMULATORS];
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm256_set1_ps((float)i);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 24 /* the accumulators must live in registers: a loop over them stays in memory */
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    float lanes[8];
    __m256 s = acc[0];
    for (int i = 1; i < ACCUMULATORS; i++) s = _mm256_add_ps(s, acc[i]);
    _mm256_storeu_ps(lanes, s);
    peak_sink = lanes[0];
    return (double)iters * ACCUMULATORS * 8 * 2;
}

static double fma_scalar(long iters) {
    float acc[ACCUMULATORS];
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = (float)i;
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 24 /* the accumulators must live in registers: a loop over them stays in memory */
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = acc[i] * 0.999999f + 1e-7f;
    float s = 0;
    for (int i = 0; i < ACCUMULATORS; i++) s += acc[i];
    peak_sink = s;
    return (double)iters * ACCUMULATORS * 2;
}

__attribute__((target("avx512f,avx512bf16"))) static double dot_bf16(long iters) {
    __m512 acc[ACCUMULATORS];
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_set1_ps((float)i);
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
    for (long it = 0; it < iters; it++)
#pragma GCC unroll 24 /* the accumulators must live in registers: a loop over them stays in memory */
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < ACCUMULATORS; i++) s = _mm512_add_ps(s, acc[i]);
    peak_sink = _mm512_reduce_add_ps(s);
    return (double)iters * ACCUMULATORS * 16 * 4;
}

typedef double (*peak_loop)(long iters);

/* FLOP/s of `loop` on all OpenMP threads at once: best of PEAK_REPEATS runs. */
static double measure(peak_loop loop) {
    long iters = 1 << 16;
    for (;;) { /* calibrate on one thread until one run takes a tenth of PEAK_SECONDS */
        double t0 = st_now_seconds();
        loop(iters);
        if (st_now_seconds() - t0 > PEAK_SECONDS / 10) break;
        iters *= 2;
    }
    iters *= 10;
    double best = 0;
    for (int r = 0; r < PEAK_REPEATS; r++) {
        double flops = 0, t0 = st_now_seconds();
#pragma omp parallel reduction(+ : flops)
        flops += loop(iters);
        double rate = flops / (st_now_seconds() - t0);
        if (rate > best) best = rate;
    }
    return best;
}

st_peak st_bench_peak_measure(int with_bf16) {
    st_peak p = {0};
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        p.fp32_isa = "avx512f";
        p.fp32_flops = measure(fma_avx512);
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        p.fp32_isa = "avx2+fma";
        p.fp32_flops = measure(fma_avx2);
    } else {
        p.fp32_isa = "scalar";
        p.fp32_flops = measure(fma_scalar);
    }
    p.has_bf16 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    if (p.has_bf16 && with_bf16) p.bf16_flops = measure(dot_bf16);
    p.threads = omp_get_max_threads();
    return p;
}
