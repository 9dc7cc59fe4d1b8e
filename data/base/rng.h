/*
 * rng.h: the one random number generator of simtune, header-only so any layer can use it.
 *
 * xoshiro256** (Blackman & Vigna) for streams, seeded through splitmix64 so that any 64-bit seed
 * (including 0) gives a well-mixed state. The whole state is four uint64 words (st_rng.s), which
 * a checkpoint saves and restores verbatim: restoring the words continues the exact sequence.
 *
 * st_rng_derive(seed, a, b) builds an independent stream from a tuple, e.g. (seed, epoch, sample
 * index): the data loader uses it so that a sample's augmentation never depends on which thread
 * processed it or when. st_rng_hash(seed, a, b) is the 64-bit hash of such a tuple that seeds it
 * (the sweep draws its trial parameters from it); st_mix64(x) hashes one word.
 *
 *   st_rng r; st_rng_seed(&r, 42);
 *   uint64_t x = st_rng_next(&r);         full 64 bits
 *   double u = st_rng_uniform(&r);        [0, 1), 53 random bits
 *   uint64_t k = st_rng_below(&r, n);     uniform in [0, n), unbiased, n >= 1
 *
 * Not cryptographic. Pure functions of their inputs; no global state; thread-safe per instance.
 */
#ifndef ST_RNG_H
#define ST_RNG_H

#include <stdint.h>

typedef struct st_rng {
    uint64_t s[4]; /* xoshiro256** state; never all zero */
} st_rng;

enum { ST_RNG_STATE_WORDS = 4 };

/* splitmix64 step: advances *x and returns a well-mixed output. Also a good 64-bit hash. */
static inline uint64_t st_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* One splitmix64 step on a copy of x: a well-mixed 64-bit hash of x (a bijection). */
static inline uint64_t st_mix64(uint64_t x) { return st_splitmix64(&x); }

static inline void st_rng_seed(st_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = st_splitmix64(&x);
    /* splitmix64 is a bijection of a counter: four consecutive outputs cannot all be zero */
}

static inline uint64_t st_rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t st_rng_next(st_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = st_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = st_rng_rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) from the top 53 bits. */
static inline double st_rng_uniform(st_rng *r) { return (double)(st_rng_next(r) >> 11) * 0x1.0p-53; }

/* Uniform integer in [0, n), n >= 1, without modulo bias (Lemire's multiply-and-reject). */
static inline uint64_t st_rng_below(st_rng *r, uint64_t n) {
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        __uint128_t m = (__uint128_t)st_rng_next(r) * n;
        if ((uint64_t)m >= threshold) return (uint64_t)(m >> 64);
    }
}

/* A hash of the tuple (seed, a, b): each component goes through the mixer so nearby tuples
 * (consecutive epochs, sample indices or trial ids) give unrelated values. */
static inline uint64_t st_rng_hash(uint64_t seed, uint64_t a, uint64_t b) {
    return st_mix64(st_mix64(st_mix64(seed) ^ a) ^ b);
}

/* An independent stream for the tuple (seed, a, b). */
static inline void st_rng_derive(st_rng *r, uint64_t seed, uint64_t a, uint64_t b) {
    st_rng_seed(r, st_rng_hash(seed, a, b));
}

#endif
