/*
 * rng.h - a small deterministic pseudo-random generator (xoshiro256**, seeded through
 * splitmix64; Blackman and Vigna, "Scrambled linear pseudorandom number generators",
 * 2018). The state is a value the caller owns, so runs are reproducible and nothing is
 * global. Not for cryptography.
 */
#ifndef TLM_RNG_H
#define TLM_RNG_H

#include <stdint.h>

struct tlm_rng {
    uint64_t s[4];
};

static inline uint64_t tlm_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Seeds r from one 64-bit seed. */
static inline void tlm_rng_seed(struct tlm_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = tlm_splitmix64(&seed);
}

static inline uint64_t tlm_rng_next(struct tlm_rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform double in [0, 1). */
static inline double tlm_rng_double(struct tlm_rng *r)
{
    return (double)(tlm_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < 2^-64 * n). */
static inline uint64_t tlm_rng_below(struct tlm_rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)tlm_rng_next(r) * n) >> 64);
}

#endif
