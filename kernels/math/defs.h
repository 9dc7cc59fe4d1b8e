/*
 * defs.h: what every shared math header needs to compile under gcc (C11), g++ and nvcc.
 *
 * Rules for the kernels/math headers: per-element or per-row formulas only, as ST_HD functions;
 * valid C11 and C++17 at once (no VLAs, no _Generic, no implicit void* conversions);
 * scalar <math.h> functions only (sqrtf, expf, logf, fmaxf...); no I/O, no allocation,
 * no globals. The CPU ops (kernels/cpu) and the CUDA kernels (kernels/cuda) both call these,
 * so CPU and GPU cannot disagree on a formula, and the CPU tests exercise the GPU's math.
 */
#ifndef ST_MATH_DEFS_H
#define ST_MATH_DEFS_H

#include <math.h>

#if defined(__CUDACC__)
#define ST_HD static inline __host__ __device__
#define ST_RESTRICT __restrict__
#else
#define ST_HD static inline
#define ST_RESTRICT restrict
#endif

#define ST_PI_F 3.14159265358979323846f

#endif
