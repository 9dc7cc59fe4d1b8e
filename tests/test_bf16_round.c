/*
 * test_bf16_round.c: the shared FP32 -> bf16 rounding (kernels/math/bf16.h), which the CUDA bf16
 * convolutions use, rounds exactly as the CPU backend's bf16 convolutions do.
 *
 *   1. Rules that hold on any machine: ties to even, a carry into the exponent, overflow to
 *      infinity, denormals to a signed zero, infinities kept, NaN quieted; st_bf16_to_float is
 *      exact and st_bf16_round is idempotent.
 *   2. Where the CPU has AVX512_BF16: bit for bit the instruction kernels/cpu/conv.c rounds with
 *      (VCVTNEPS2BF16), on every upper half (2^16 sign/exponent/mantissa tops, NaNs and
 *      infinities included) times the lower halves that decide a rounding (0, 1, just below,
 *      at and above the tie, all ones) and two random ones: 524288 patterns.
 *   3. Where the CPU backend has bf16 convolutions: a 1x1 convolution with the identity kernel in
 *      a bf16 plan returns x rounded (one product x * 1 per output, exact in FP32), which must be
 *      st_bf16_round(x) for every element, ties and denormals included: the helper is what the
 *      CPU backend feeds its convolutions, not only what the instruction does.
 * Label cpu (tests/gpu_bf16.cmake); test_gpu_bf16 checks the CUDA side the same way.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/check.h"
#include "kernels/math/bf16.h"
#include "test_util.h"

static float from_bits(uint32_t bits) {
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static void expect(uint32_t in, uint16_t want, const char *rule) {
    uint16_t got = st_bf16_from_float(from_bits(in));
    TEST_CHECK(got == want, "%s: 0x%08x -> 0x%04x, want 0x%04x", rule, in, got, want);
}

static void check_rules(void) {
    expect(0x3f808000u, 0x3f80, "tie, even below");        /* 1 + 2^-8: stays 1 */
    expect(0x3f818000u, 0x3f82, "tie, odd below");         /* rounds up to even */
    expect(0x3f807fffu, 0x3f80, "just below a tie");
    expect(0x3f808001u, 0x3f81, "just above a tie");
    expect(0x3fffffffu, 0x4000, "carry into the exponent");
    expect(0x7f7fffffu, 0x7f80, "FLT_MAX overflows to infinity");
    expect(0x7f7f7fffu, 0x7f7f, "largest value that stays finite");
    expect(0x007fffffu, 0x0000, "denormal to +0");
    expect(0x80000001u, 0x8000, "negative denormal to -0");
    expect(0x00800000u, 0x0080, "smallest normal kept");
    expect(0xff800000u, 0xff80, "-infinity kept");
    expect(0x7f800001u, 0x7fc0, "signalling NaN quieted");
    expect(0xffc12345u, 0xffc1, "quiet NaN truncated");
    for (int i = 0; i < 100000; i++) {
        float x = (float)((test_uniform() - 0.5) * pow(2.0, 200 * test_uniform() - 100));
        float r = st_bf16_round(x);
        /* 8 significant bits: half an ulp is at most 2^-8 of the value */
        TEST_CHECK(fabsf(r - x) <= ldexpf(fabsf(x), -8), "|round(x) - x| > 2^-8 |x| at %a", x);
        TEST_CHECK(st_bf16_round(r) == r, "rounding %a twice changed it", x);
        TEST_CHECK(st_float_bits(st_bf16_to_float(st_bf16_from_float(r))) == st_float_bits(r),
                   "bf16 -> float not exact at %a", r);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void
hardware_round(const float *x, uint16_t *y) { /* 16 values */
    __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(x));
    _mm256_storeu_si256((__m256i *)y, (__m256i)v);
}

static void check_against_instruction(void) {
    if (!__builtin_cpu_supports("avx512bf16")) {
        printf("no AVX512_BF16 on this CPU: the instruction comparison did not run\n");
        return;
    }
    enum { LOWS = 8 };
    uint32_t low[LOWS] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff, 0, 0};
    float x[16];
    uint16_t want[16];
    long mismatches = 0, patterns = 0;
    for (uint32_t high = 0; high < 0x10000u; high += 2) { /* two upper halves per vector */
        low[6] = (uint32_t)(test_uniform() * 65536);
        low[7] = (uint32_t)(test_uniform() * 65536);
        for (int i = 0; i < 16; i++)
            x[i] = from_bits(((high + (uint32_t)(i / LOWS)) << 16) | low[i % LOWS]);
        hardware_round(x, want);
        for (int i = 0; i < 16; i++, patterns++) {
            if (st_bf16_from_float(x[i]) == want[i]) continue;
            if (mismatches++ < 10)
                TEST_CHECK(0, "0x%08x: st_bf16_from_float 0x%04x, VCVTNEPS2BF16 0x%04x",
                           st_float_bits(x[i]), st_bf16_from_float(x[i]), want[i]);
        }
    }
    TEST_CHECK(mismatches == 0, "%ld of %ld patterns differ from VCVTNEPS2BF16", mismatches,
               patterns);
    printf("VCVTNEPS2BF16: %ld patterns, %ld differ\n", patterns, mismatches);
}

/* Finite values whose rounding is interesting: random, exact ties, denormals. */
static float interesting_value(size_t i) {
    uint32_t bits = st_float_bits((float)(4 * test_uniform() - 2));
    switch (i % 4) {
    case 1: return from_bits((bits & 0xffff0000u) | 0x8000u); /* a tie */
    case 2: return from_bits((bits & 0x807fffffu));           /* a denormal (or zero) */
    default: return from_bits(bits);
    }
}

static void check_cpu_backend(void) {
    st_backend *be = st_backend_open("cpu", 2);
    ST_CHECK(be, "cpu backend: %s", st_error_get());
    if (!be->conv_bf16_supported(be)) {
        printf("no bf16 convolutions on this CPU: the backend comparison did not run\n");
        st_backend_close(be);
        return;
    }
    st_conv_desc d = {.n = 2, .h = 5, .w = 7, .c = 16, .k = 16, .r = 1, .s = 1, .stride_h = 1,
                      .stride_w = 1, .bf16 = 1};
    st_conv_desc_finish(&d);
    const size_t n = (size_t)d.n * d.h * d.w * d.c;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    float hwio[16 * 16] = {0};
    for (int c = 0; c < 16; c++) hwio[c * 16 + c] = 1.0f; /* (C, K) identity */
    for (size_t i = 0; i < n; i++) x[i] = interesting_value(i);
    st_conv_plan *p = be->conv_plan(be, &d);
    float *w = be->alloc(be, be->conv_weights_numel(be, p) * sizeof(float));
    be->conv_weights_import(be, p, hwio, w);
    be->conv_forward(be, p, x, w, NULL, y);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += y[i] != st_bf16_round(x[i]);
    TEST_CHECK(differ == 0, "cpu bf16 identity conv: %zu of %zu values differ from st_bf16_round",
               differ, n);
    printf("cpu bf16 identity conv: %zu values, %zu differ from st_bf16_round\n", n, differ);
    be->free(be, w);
    free(x);
    free(y);
    st_backend_close(be);
}

int main(void) {
    check_rules();
    check_against_instruction();
    check_cpu_backend();
    return test_finish("test_bf16_round");
}
