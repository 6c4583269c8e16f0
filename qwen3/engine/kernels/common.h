/* Shared by every kernel file: includes, bf16 <-> fp32, loads of either dtype, exp, limits. */
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* The row counts (1..8) the small-batch matmuls are compiled for, each with its number P of independent
 * accumulators per row: four hide the FMA latency for up to 4 rows, beyond that registers run short. CASE(M, P)
 * expands to one `case M:` of a switch. */
#define FOR_EACH_ROW_COUNT(CASE) CASE(1, 4) CASE(2, 4) CASE(3, 4) CASE(4, 4) CASE(5, 2) CASE(6, 2) CASE(7, 2) CASE(8, 2)
#define MAX_MATVEC_ROWS 8

static inline float bf16_to_f32(uint16_t v) {
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) { /* round to nearest even, as torch does */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static inline void store(void *y, int y_bf16, size_t index, float value) {
    if (y_bf16)
        ((uint16_t *)y)[index] = f32_to_bf16(value);
    else
        ((float *)y)[index] = value;
}


static inline void load_row(const void *base, int bf16, size_t offset, int D, float *dst) {
    if (bf16) {
        const uint16_t *src = (const uint16_t *)base + offset;
#pragma omp simd
        for (int d = 0; d < D; d++) dst[d] = bf16_to_f32(src[d]);
    } else {
        memcpy(dst, (const float *)base + offset, sizeof(float) * D);
    }
}

#if defined(__AVX512F__)
/* 2^t on 16 lanes: scalef(2^f, round(t)) with 2^f, |f| <= 1/2, from its degree-6 Taylor series (relative error
 * below 2e-7); t is clamped below at -126, so the result is never 0 (callers mask what must be 0). */
static inline __m512 exp2_16(__m512 t) {
    t = _mm512_max_ps(t, _mm512_set1_ps(-126.0f));
    __m512 whole = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(t, whole);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0.000154035304f), f, _mm512_set1_ps(0.00133335581f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.00961812911f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.0555041087f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.240226507f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.693147180f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, whole);
}

/* exp(v) on 16 lanes, v <= 0 (results below 2^-126 are 2^-126). */
static inline __m512 exp16(__m512 v) { return exp2_16(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f))); }
#endif

#define MAX_HEAD_DIM 512
#define MAX_GROUP_ELEMS 8192 /* G * D */

#if defined(__AVX512F__)
static inline __m512 load16(const void *base, int bf16, size_t offset) {
    if (bf16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + offset))), 16));
    return _mm512_loadu_ps((const float *)base + offset);
}
#endif

#define MAX_HIDDEN 8192

#if defined(__AVX512F__)
/* The upper halves of the bf16 roundings of 16 floats (round to nearest even, NaN kept quiet: f32_to_bf16 on every
 * lane; the compiler does not vectorise the scalar version because of its NaN branch). */
static inline __m512i bf16_bits16(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
    return _mm512_srli_epi32(rounded, 16);
}

/* v rounded to bf16 (and widened back) when bf16, else v. */
static inline __m512 round16(__m512 v, int bf16) {
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(bf16_bits16(v), 16)) : v;
}
#endif

static void to_f32(const void *src, size_t offset, int n, int bf16, float *dst) {
    if (bf16) {
        const uint16_t *p = (const uint16_t *)src + offset;
        int i = 0;
#if defined(__AVX512F__)
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, load16(p, 1, i));
#endif
        for (; i < n; i++) dst[i] = bf16_to_f32(p[i]);
    } else {
        memcpy(dst, (const float *)src + offset, sizeof(float) * n);
    }
}

static void from_f32(const float *src, int n, int bf16, void *dst, size_t offset) {
    if (bf16) {
        uint16_t *p = (uint16_t *)dst + offset;
        int i = 0;
#if defined(__AVX512F__)
        for (; i + 16 <= n; i += 16)
            _mm256_storeu_si256((__m256i *)(p + i), _mm512_cvtepi32_epi16(bf16_bits16(_mm512_loadu_ps(src + i))));
#endif
        for (; i < n; i++) p[i] = f32_to_bf16(src[i]);
    } else {
        memcpy((float *)dst + offset, src, sizeof(float) * n);
    }
}

static void round_buffer(float *x, int n, int bf16) {
    if (!bf16) return;
    int i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, _mm512_castsi512_ps(_mm512_slli_epi32(bf16_bits16(_mm512_loadu_ps(x + i)), 16)));
#endif
    for (; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

/* exp for the vectoriser: 2^(x log2 e) = 2^round * 2^frac, 2^frac from its degree-6 Taylor series (|frac| <= 1/2,
 * relative error below 2e-7); the result is clamped to [2^-126, 2^127]. */
static inline float vexp(float x) {
    float t = x * 1.44269504088896341f;
    t = t < -126.0f ? -126.0f : (t > 127.0f ? 127.0f : t);
    float whole = __builtin_rintf(t), f = t - whole;
    float p = 0.000154035304f;
    p = p * f + 0.00133335581f;
    p = p * f + 0.00961812911f;
    p = p * f + 0.0555041087f;
    p = p * f + 0.240226507f;
    p = p * f + 0.693147180f;
    p = p * f + 1.0f;
    int32_t bits = ((int32_t)whole + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}
