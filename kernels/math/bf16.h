/*
 * bf16.h: FP32 <-> bfloat16 conversion shared by the CUDA bf16 convolutions (kernels/cuda/conv.cu
 * rounds x, dy and the kernel with it) and checked on the CPU against the CPU backend's own
 * rounding, the AVX512_BF16 instruction VCVTNEPS2BF16 that kernels/cpu/conv.c uses
 * (tests/test_bf16_round.c), so both backends feed their convolutions the same bf16 values.
 *
 * st_bf16_from_float follows that instruction exactly (Intel SDM pseudocode): round to nearest,
 * ties to even, on the bits; denormal inputs become a zero of their sign (the instruction treats
 * them as zero; CUDA's __float2bfloat16_rn would keep bf16 denormals); infinities stay; a NaN stays
 * a NaN, quieted (mantissa bit 6 set) and truncated. A finite value of magnitude 0x1.ffp127 or more
 * rounds to infinity, as IEEE rounding does. A bf16 is the upper 16 bits of an FP32, so
 * st_bf16_to_float is exact. st_stored_load / st_stored_store read and write an operand that the
 * bf16-operand flags of backend.h say is stored as bf16 (the batch-norm kernels of both backends).
 */
#ifndef ST_MATH_BF16_H
#define ST_MATH_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "defs.h"

ST_HD uint32_t st_float_bits(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

/* The bf16 (bit pattern) nearest to x, as VCVTNEPS2BF16 computes it. */
ST_HD uint16_t st_bf16_from_float(float x) {
    const uint32_t bits = st_float_bits(x);
    const uint32_t exponent = bits & 0x7f800000u, mantissa = bits & 0x007fffffu;
    if (exponent == 0) return (uint16_t)((bits >> 16) & 0x8000u); /* zero or denormal */
    if (exponent == 0x7f800000u) /* infinity keeps its bits; NaN: truncated, quiet */
        return (uint16_t)((bits >> 16) | (mantissa ? 0x0040u : 0u));
    const uint32_t lsb = (bits >> 16) & 1u; /* ties go to the even neighbour */
    return (uint16_t)((bits + 0x7fffu + lsb) >> 16);
}

ST_HD float st_bf16_to_float(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* x rounded to bf16 and back: what a bf16 convolution reads in place of x. */
ST_HD float st_bf16_round(float x) { return st_bf16_to_float(st_bf16_from_float(x)); }

/* Element i of an operand stored as FP32, or as bf16 bit patterns in the same buffer when bf16
 * (the bf16-operand flags of backend.h's descriptors): read widened, written rounded. */
ST_HD float st_stored_load(const float *base, int bf16, size_t i) {
    return bf16 ? st_bf16_to_float(((const uint16_t *)base)[i]) : base[i];
}
ST_HD void st_stored_store(float *base, int bf16, size_t i, float v) {
    if (bf16) ((uint16_t *)base)[i] = st_bf16_from_float(v);
    else base[i] = v;
}

#endif
