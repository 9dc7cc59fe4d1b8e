/*
 * test_util.h: the assertions every C test uses. A failed check prints where and why and makes
 * the test exit non-zero (never "print and return 0").
 *
 *   TEST_CHECK(cond, fmt, ...)           record a failure, keep going
 *   TEST_CLOSE(name, got, ref, atol, rtol) |got-ref| <= atol + rtol*|ref| elementwise
 *   test_rel_error(a, b, n)              ||a-b|| / max(||b||, tiny), by norm
 *   return test_finish("name");          0 when every check passed, 1 otherwise
 *   test_uniform()                       deterministic xorshift64* draw in [0, 1)
 * test_skip(reason)        a missing oracle or fixture: exits 77 (ctest reports skipped), or
 *                           fails (exit 1) under SIMTUNE_REQUIRE_ORACLES=1 or SIMTUNE_REQUIRE_GPU=1
 * test_skip_no_gpu(reason)  the CUDA backend does not open (no device, no driver, compiled out):
 *                           exits 77, or fails (exit 1) under SIMTUNE_REQUIRE_GPU=1 only; a missing
 *                           device is not a missing oracle, so CI (REQUIRE_ORACLES, no GPU) skips
 * test_gpu_required()       SIMTUNE_REQUIRE_GPU=1 is set: for a test with a CUDA part that cannot
 *                           exit 77 because its CPU part counts (test_conv_layout)
 */
#ifndef ST_TEST_UTIL_H
#define ST_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define TEST_CHECK(cond, ...)                                              \
    do {                                                                   \
        test_checks++;                                                     \
        if (!(cond)) {                                                     \
            test_failures++;                                               \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);          \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

static uint64_t test_rng_state = 0x9E3779B97F4A7C15ull;

static inline double test_uniform(void) { /* xorshift64*, uniform in [0, 1) */
    test_rng_state ^= test_rng_state >> 12;
    test_rng_state ^= test_rng_state << 25;
    test_rng_state ^= test_rng_state >> 27;
    return (double)((test_rng_state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static inline double test_rel_error(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1e-30);
}

static inline int test_close_at(const char *file, int line, const char *name, const float *got,
                                const float *ref, size_t n, double atol, double rtol) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        double tol = atol + rtol * fabs((double)ref[i]);
        if (!(fabs((double)got[i] - (double)ref[i]) <= tol)) {
            if (!bad) first = i;
            bad++;
        }
    }
    test_checks++;
    if (bad) {
        test_failures++;
        fprintf(stderr, "FAIL %s:%d: %s: %zu of %zu elements off, first [%zu] got %.9g ref %.9g\n",
                file, line, name, bad, n, first, got[first], ref[first]);
    }
    return bad == 0;
}
#define TEST_CLOSE(name, got, ref, n, atol, rtol) \
    test_close_at(__FILE__, __LINE__, name, got, ref, n, atol, rtol)

static inline int test_env_is_1(const char *name) {
    const char *value = getenv(name);
    return value && strcmp(value, "1") == 0;
}

static inline int test_gpu_required(void) { return test_env_is_1("SIMTUNE_REQUIRE_GPU"); }

/* Exit 77 with the reason, or 1 when `forbidding` (an environment variable, NULL for none) is 1. */
static inline void test_skip_unless_required(const char *reason, const char *forbidding) {
    if (forbidding) {
        fprintf(stderr, "FAIL: %s, and %s=1 forbids skipping\n", reason, forbidding);
        exit(1);
    }
    fprintf(stderr, "SKIP: %s\n", reason);
    exit(77);
}

static inline void test_skip(const char *reason) {
    const char *forbidding = test_env_is_1("SIMTUNE_REQUIRE_ORACLES") ? "SIMTUNE_REQUIRE_ORACLES"
                             : test_gpu_required()                    ? "SIMTUNE_REQUIRE_GPU"
                                                                      : NULL;
    test_skip_unless_required(reason, forbidding);
}

static inline void test_skip_no_gpu(const char *reason) {
    test_skip_unless_required(reason, test_gpu_required() ? "SIMTUNE_REQUIRE_GPU" : NULL);
}

static inline int test_finish(const char *name) {
    if (test_failures) {
        fprintf(stderr, "%s: %d of %d checks failed\n", name, test_failures, test_checks);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, test_checks);
    return 0;
}

#endif
