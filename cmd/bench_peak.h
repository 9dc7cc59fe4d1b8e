/*
 * bench_peak.h: the CPU's measured arithmetic peak (cmd/bench_peak.c), for `simtune bench peak`
 * and the "% of peak" of `bench train|infer` (cmd/bench.c). Runs on the OpenMP threads already
 * set (st_backend_open("cpu", threads) sets them).
 */
#ifndef ST_BENCH_PEAK_H
#define ST_BENCH_PEAK_H

typedef struct st_peak {
    double fp32_flops;    /* FP32 FMA throughput, FLOP/s (an FMA is 2 FLOPs) */
    const char *fp32_isa; /* the instructions measured: avx512f, avx2+fma or scalar */
    int has_bf16;         /* the CPU has AVX512_BF16 */
    double bf16_flops;    /* bf16 dot-product throughput, FLOP/s; 0 unless measured */
    int threads;
} st_peak;

/* with_bf16: also measure bf16 where the CPU has it (about half a second each). */
st_peak st_bench_peak_measure(int with_bf16);

#endif
