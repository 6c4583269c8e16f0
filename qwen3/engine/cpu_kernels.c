/* Small CPU kernels for decoding, compiled on first use by qwen3/engine/cpu_kernels.py (gcc/clang, -O3
 * -march=native -fopenmp) and called through ctypes. They share torch's OpenMP runtime (same libgomp soname), so
 * torch.set_num_threads applies to them too.
 *
 * woq_int8_matmul: y[m, n] = scale[n] * sum_k x[m, k] * w[n, k], weight-only int8 with per-output-channel scales,
 *   x fp32 [M, K] (M <= 8: decode batches), y fp32 or bf16 [M, N]. Each weight row is converted to fp32 once and
 *   used for all M rows of x, so the kernel streams the int8 weights at memory speed.
 * decode_layer_attention: one new query per sequence against its cached keys/values (grouped-query attention: the
 *   G query heads of a KV head share one pass over its cache), with QK-norm, RoPE and the cache write before it.
 * prefill_attention: causal grouped-query attention of a prefill segment on AVX512-BF16 (FlashAttention-2 style;
 *   see its section).
 */
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

#if defined(__AVX512F__)
/* One weight row (read front to back, 64 bytes at a time) against M activation rows, with P independent partial
 * sums per activation row so the FMA latency is hidden; M and P are compile-time constants after inlining. */
static inline __attribute__((always_inline)) void woq_row(const float *x, const int8_t *w, const float *scale,
                                                          void *y, int y_bf16, int M, int P, int N, int K, int n) {
    __m512 acc[8][4];
    const int8_t *row = w + (size_t)n * K;
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) acc[m][p] = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 64) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            wv[j] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + k + 16 * j))));
#pragma GCC unroll 8
        for (int m = 0; m < M; m++)
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                acc[m][j % P] = _mm512_fmadd_ps(wv[j], _mm512_loadu_ps(x + (size_t)m * K + k + 16 * j), acc[m][j % P]);
    }
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) {
        __m512 sum = acc[m][0];
#pragma GCC unroll 4
        for (int p = 1; p < P; p++) sum = _mm512_add_ps(sum, acc[m][p]);
        store(y, y_bf16, (size_t)m * N + n, _mm512_reduce_add_ps(sum) * scale[n]);
    }
}

static void woq_rows(const float *x, const int8_t *w, const float *scale, void *y, int y_bf16, int M, int N, int K,
                     int n0, int n1) {
#define WOQ_CASE(MM, PP)                                                                                     \
    case MM:                                                                                                 \
        for (int n = n0; n < n1; n++) woq_row(x, w, scale, y, y_bf16, MM, PP, N, K, n);                      \
        break;
    switch (M) { FOR_EACH_ROW_COUNT(WOQ_CASE) }
#undef WOQ_CASE
}
#endif

static void woq_scalar(const float *x, const int8_t *w, const float *scale, void *y, int y_bf16, int M, int N,
                       int K, int n0, int n1) {
    for (int n = n0; n < n1; n++) {
        const int8_t *row = w + (size_t)n * K;
        for (int m = 0; m < M; m++) {
            const float *xm = x + (size_t)m * K;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int k = 0; k < K; k++) sum += xm[k] * (float)row[k];
            store(y, y_bf16, (size_t)m * N + n, sum * scale[n]);
        }
    }
}

int woq_int8_matmul(const float *x, const int8_t *w, const float *scale, void *y, int y_bf16, int M, int N, int K) {
    if (M < 1 || M > 8) return -1;
    const int block = 16; /* rows per scheduling unit */
    int blocks = (N + block - 1) / block;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < blocks; i++) {
        int n0 = i * block, n1 = n0 + block <= N ? n0 + block : N;
#if defined(__AVX512F__)
        if (K % 64 == 0) {
            woq_rows(x, w, scale, y, y_bf16, M, N, K, n0, n1);
            continue;
        }
#endif
        woq_scalar(x, w, scale, y, y_bf16, M, N, K, n0, n1);
    }
    return 0;
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

/* In place: x[0:n] = softmax(x[0:n]). */
static void softmax_inplace(float *x, int n) {
#if defined(__AVX512F__)
    /* Masked loads cover the tail, so every element takes the same path. */
    __m512 vpeak = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < n; j += 16) {
        __mmask16 live = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        vpeak = _mm512_max_ps(vpeak, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), live, x + j));
    }
    vpeak = _mm512_set1_ps(_mm512_reduce_max_ps(vpeak));
    __m512 vtotal = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        __mmask16 live = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 e = _mm512_maskz_mov_ps(live, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(live, x + j), vpeak)));
        _mm512_mask_storeu_ps(x + j, live, e);
        vtotal = _mm512_add_ps(vtotal, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vtotal));
    for (int j = 0; j < n; j += 16) {
        __mmask16 live = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        _mm512_mask_storeu_ps(x + j, live, _mm512_mul_ps(_mm512_maskz_loadu_ps(live, x + j), inv));
    }
#else
    float peak = -INFINITY, total = 0.0f;
    for (int j = 0; j < n; j++) peak = x[j] > peak ? x[j] : peak;
    for (int j = 0; j < n; j++) {
        x[j] = expf(x[j] - peak);
        total += x[j];
    }
    float inv = 1.0f / total;
    for (int j = 0; j < n; j++) x[j] *= inv;
#endif
}

#define MAX_HEAD_DIM 512
#define MAX_GROUP_ELEMS 8192 /* G * D */

#if defined(__AVX512F__)
static inline __m512 load16(const void *base, int bf16, size_t offset) {
    if (bf16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + offset))), 16));
    return _mm512_loadu_ps((const float *)base + offset);
}

/* One (sequence, KV head) task with head_dim DD (a compile-time constant after inlining): scores of the G queries
 * against every cached key, softmax, weighted sum of the values (two queries at a time). */
static inline __attribute__((always_inline)) void attend_task(const float *qh, const void *keys, const void *values,
                                                              int bf16, size_t base, int len, int G, int DD,
                                                              float scale, float *scores, int max_len, float *out) {
    const int C = DD / 16;
    for (int j = 0; j < len; j++) {
        __m512 k[16];
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) k[c] = load16(keys, bf16, base + (size_t)j * DD + 16 * c);
        for (int g = 0; g < G; g++) {
            __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(qh + (size_t)g * DD), k[0]);
#pragma GCC unroll 16
            for (int c = 1; c < C; c++) acc = _mm512_fmadd_ps(_mm512_loadu_ps(qh + (size_t)g * DD + 16 * c), k[c], acc);
            scores[(size_t)g * max_len + j] = _mm512_reduce_add_ps(acc) * scale;
        }
    }
    for (int g = 0; g < G; g++) softmax_inplace(scores + (size_t)g * max_len, len);
    for (int g0 = 0; g0 < G; g0 += 2) {
        int pair = G - g0 >= 2 ? 2 : 1;
        __m512 acc[2][16];
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) acc[0][c] = acc[1][c] = _mm512_setzero_ps();
        for (int j = 0; j < len; j++) {
            __m512 p0 = _mm512_set1_ps(scores[(size_t)g0 * max_len + j]);
            __m512 p1 = _mm512_set1_ps(pair == 2 ? scores[(size_t)(g0 + 1) * max_len + j] : 0.0f);
#pragma GCC unroll 16
            for (int c = 0; c < C; c++) {
                __m512 v = load16(values, bf16, base + (size_t)j * DD + 16 * c);
                acc[0][c] = _mm512_fmadd_ps(p0, v, acc[0][c]);
                acc[1][c] = _mm512_fmadd_ps(p1, v, acc[1][c]);
            }
        }
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) {
            _mm512_storeu_ps(out + (size_t)g0 * DD + 16 * c, acc[0][c]);
            if (pair == 2) _mm512_storeu_ps(out + (size_t)(g0 + 1) * DD + 16 * c, acc[1][c]);
        }
    }
}
#endif

/* Cached keys and values the next attention task will read: prefetched into L2 while this one computes (the caches
 * of all layers do not stay in the CPU caches between steps, and the hardware prefetcher ramps up too slowly on
 * blocks of a few KB). */
typedef struct {
    const char *keys, *values;
    size_t bytes;
} Prefetch;

static inline void prefetch_range(const Prefetch *next, size_t from, size_t to) {
#if defined(__AVX512F__)
    for (size_t offset = from; offset < to && offset < next->bytes; offset += 64) {
        _mm_prefetch(next->keys + offset, _MM_HINT_T1);
        _mm_prefetch(next->values + offset, _MM_HINT_T1);
    }
#else
    (void)next, (void)from, (void)to;
#endif
}

#if defined(__AVX512BF16__)
/* Lane i of the result = the sum of the 16 lanes of a[i]: four rounds of shuffles and adds for 16 sums (about 3
 * instructions a sum instead of a full horizontal reduction each). */
static inline __m512 sum16(const __m512 *a) {
    __m512 t[8], u[4], v[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* per 128-bit block: [a0+a2, b0+b2, a1+a3, b1+b3] */
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* per block: the block sums of 4 vectors */
        __m512d x = _mm512_castps_pd(t[2 * i]), y = _mm512_castps_pd(t[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        v[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* attend_task for a bf16 cache on CPUs with AVX512-BF16: the scores of 16 keys at a time come from bf16 dot
 * products (the queries are bf16 values already, so every product is exact in fp32) and one sum16; the values are
 * widened to fp32 and weighted with the fp32 probabilities, as before. The next task's keys are prefetched. */
static inline __attribute__((always_inline)) void attend_task_bf16(const float *qh, const uint16_t *keys,
                                                                   const uint16_t *values, int len, int G, int DD,
                                                                   float scale, float *scores, int max_len,
                                                                   float *out, const Prefetch *next) {
    const int C = DD / 32; /* bf16 vectors per row */
    size_t share = ((next->bytes * 16 / (size_t)len) + 64) & ~(size_t)63; /* of the next task, per block of 16 keys */
    for (int g = 0; g < G; g++) {
        __m512bh q[8];
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            q[c] = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(qh + (size_t)g * DD + 32 * c + 16),
                                       _mm512_loadu_ps(qh + (size_t)g * DD + 32 * c));
        float *row = scores + (size_t)g * max_len;
        for (int j0 = 0; j0 < len; j0 += 16) {
            int count = len - j0 < 16 ? len - j0 : 16;
            if (g == 0) { /* the loads of the value pass and the next keys start while this block computes */
                int ahead = len - j0 - 16 < 16 ? len - j0 - 16 : 16;
                for (int i = 0; i < count; i++)
                    for (int c = 0; c < DD * 2; c += 64) _mm_prefetch((const char *)(values + (size_t)(j0 + i) * DD) + c, _MM_HINT_T0);
                for (int i = 0; i < ahead; i++)
                    for (int c = 0; c < DD * 2; c += 64) _mm_prefetch((const char *)(keys + (size_t)(j0 + 16 + i) * DD) + c, _MM_HINT_T0);
                prefetch_range(next, (size_t)(j0 / 16) * share, (size_t)(j0 / 16 + 1) * share);
            }
            __m512 acc[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                acc[i] = _mm512_setzero_ps();
                if (i < count) {
                    const uint16_t *key = keys + (size_t)(j0 + i) * DD;
#pragma GCC unroll 8
                    for (int c = 0; c < C; c++)
                        acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)_mm512_loadu_si512(key + 32 * c), q[c]);
                }
            }
            __mmask16 keep = (__mmask16)((1u << count) - 1);
            _mm512_mask_storeu_ps(row + j0, keep, _mm512_mul_ps(sum16(acc), _mm512_set1_ps(scale)));
        }
        softmax_inplace(row, len);
    }
    for (int g0 = 0; g0 < G; g0 += 2) {
        int pair = G - g0 >= 2 ? 2 : 1;
        __m512 acc[2][16];
#pragma GCC unroll 16
        for (int c = 0; c < 2 * C; c++) acc[0][c] = acc[1][c] = _mm512_setzero_ps();
        const float *p0row = scores + (size_t)g0 * max_len, *p1row = p0row + (pair == 2 ? max_len : 0);
        for (int j = 0; j < len; j++) {
            __m512 p0 = _mm512_set1_ps(p0row[j]), p1 = _mm512_set1_ps(pair == 2 ? p1row[j] : 0.0f);
            const uint16_t *value = values + (size_t)j * DD;
#pragma GCC unroll 16
            for (int c = 0; c < 2 * C; c++) {
                __m512 v = _mm512_cvtpbh_ps((__m256bh)_mm256_loadu_si256((const __m256i *)(value + 16 * c)));
                acc[0][c] = _mm512_fmadd_ps(p0, v, acc[0][c]);
                acc[1][c] = _mm512_fmadd_ps(p1, v, acc[1][c]);
            }
        }
#pragma GCC unroll 16
        for (int c = 0; c < 2 * C; c++) {
            _mm512_storeu_ps(out + (size_t)g0 * DD + 16 * c, acc[0][c]);
            if (pair == 2) _mm512_storeu_ps(out + (size_t)(g0 + 1) * DD + 16 * c, acc[1][c]);
        }
    }
}
#endif

/* Portable version of attend_task for any head_dim. */
static void attend_task_generic(const float *qh, const void *keys, const void *values, int bf16, size_t base, int len,
                                int G, int D, float scale, float *scores, int max_len, float *out) {
    float row[MAX_HEAD_DIM];
    for (int j = 0; j < len; j++) {
        load_row(keys, bf16, base + (size_t)j * D, D, row);
        for (int g = 0; g < G; g++) {
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int d = 0; d < D; d++) s += qh[(size_t)g * D + d] * row[d];
            scores[(size_t)g * max_len + j] = s * scale;
        }
    }
    for (int g = 0; g < G; g++) softmax_inplace(scores + (size_t)g * max_len, len);
    for (int i = 0; i < G * D; i++) out[i] = 0.0f;
    for (int j = 0; j < len; j++) {
        load_row(values, bf16, base + (size_t)j * D, D, row);
        for (int g = 0; g < G; g++) {
            float p = scores[(size_t)g * max_len + j];
#pragma omp simd
            for (int d = 0; d < D; d++) out[g * D + d] += p * row[d];
        }
    }
}

/* One KV head of one sequence: its G queries (fp32 [G, D], values of the model dtype) against the first len cached
 * positions of the head at keys/values + base (dtype bf16 or fp32, position stride D); out: fp32 [G, D];
 * scores: fp32 scratch [G, max_len]. */
static void attend_head(const float *qh, const void *keys, const void *values, int cache_bf16, size_t base, int len,
                        int G, int D, float scale, float *scores, int max_len, float *oh, const Prefetch *next) {
#if defined(__AVX512BF16__)
    if (cache_bf16 && (D == 64 || D == 128 || D == 256)) {
        const uint16_t *k = (const uint16_t *)keys + base, *v = (const uint16_t *)values + base;
        if (D == 64)
            attend_task_bf16(qh, k, v, len, G, 64, scale, scores, max_len, oh, next);
        else if (D == 128)
            attend_task_bf16(qh, k, v, len, G, 128, scale, scores, max_len, oh, next);
        else
            attend_task_bf16(qh, k, v, len, G, 256, scale, scores, max_len, oh, next);
        return;
    }
#endif
    prefetch_range(next, 0, next->bytes);
#if defined(__AVX512F__)
    if (D == 64) {
        attend_task(qh, keys, values, cache_bf16, base, len, G, 64, scale, scores, max_len, oh);
        return;
    }
    if (D == 128) {
        attend_task(qh, keys, values, cache_bf16, base, len, G, 128, scale, scores, max_len, oh);
        return;
    }
    if (D == 256) {
        attend_task(qh, keys, values, cache_bf16, base, len, G, 256, scale, scores, max_len, oh);
        return;
    }
#endif
    attend_task_generic(qh, keys, values, cache_bf16, base, len, G, D, scale, scores, max_len, oh);
}

/* out[r] = index of the largest x[r, :] (the first one on ties, as torch.argmax); x fp32 or bf16 [rows, cols]
 * (bf16 values are compared exactly, as their fp32 widening). NaN is treated like any other value that is not
 * greater (logits here never hold NaN). */
static inline float element(const void *x, int bf16, size_t i) {
    return bf16 ? bf16_to_f32(((const uint16_t *)x)[i]) : ((const float *)x)[i];
}

void argmax_rows(const void *x, int rows, int cols, int64_t *out, int bf16) {
#pragma omp parallel for schedule(static) if (rows > 8)
    for (int r = 0; r < rows; r++) {
        size_t row = (size_t)r * cols;
        int best = 0, c = 0;
        float best_value = element(x, bf16, row);
#if defined(__AVX512F__)
        if (cols >= 64) { /* four independent running maxima hide the compare/blend latency */
            __m512 values[4];
            __m512i where[4], index[4];
            const __m512i step = _mm512_set1_epi32(64);
            for (int u = 0; u < 4; u++) {
                index[u] = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(16 * u));
                values[u] = load16(x, bf16, row + 16 * u);
                where[u] = index[u];
            }
            for (c = 64; c + 64 <= cols; c += 64) {
                for (int u = 0; u < 4; u++) {
                    index[u] = _mm512_add_epi32(index[u], step);
                    __m512 next = load16(x, bf16, row + c + 16 * u);
                    __mmask16 greater = _mm512_cmp_ps_mask(next, values[u], _CMP_GT_OQ);
                    values[u] = _mm512_mask_blend_ps(greater, values[u], next);
                    where[u] = _mm512_mask_blend_epi32(greater, where[u], index[u]);
                }
            }
            float lane_values[64];
            int lane_index[64];
            for (int u = 0; u < 4; u++) {
                _mm512_storeu_ps(lane_values + 16 * u, values[u]);
                _mm512_storeu_si512(lane_index + 16 * u, where[u]);
            }
            best_value = lane_values[0];
            best = lane_index[0];
            for (int l = 1; l < 64; l++)
                if (lane_values[l] > best_value || (lane_values[l] == best_value && lane_index[l] < best)) {
                    best_value = lane_values[l];
                    best = lane_index[l];
                }
        }
#endif
        for (; c < cols; c++)
            if (element(x, bf16, row + c) > best_value) {
                best_value = element(x, bf16, row + c);
                best = c;
            }
        out[r] = best;
    }
}

/* ---- fused element-wise steps of a decode layer. They round to the model dtype exactly where the torch ops of
 * the reference layer do (each bf16 op computes in fp32 and rounds), so results match it closely. The loops work
 * on fp32 buffers and are written so the compiler vectorises them. ---- */

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

/* ---- sampling: one token per row of logits by the inverse CDF of its filtered distribution ----
 * What the Sampler's torch path does (qwen3/engine/sampler.py: filtered_logits, then sample_rows), one row at a
 * time in a few passes over the vocabulary: divide by the temperature; keep the top_k most likely tokens; then the
 * shortest most-likely prefix of those whose probability reaches top_p; then drop tokens below min_p times the most
 * likely; then walk the kept tokens in ascending id order until their running weight passes the uniform's share of
 * the total (searchsorted, right side). Ties in likelihood go to the lower id. torch needs a sort of the whole
 * vocabulary for top_p without top_k (13 ms for 64 x 8192 on this CPU) and a cumsum for every draw (0.2 ms); here
 * selection is by partitioning (expected linear time) and sums are in double. */
typedef struct {
    float value, weight; /* logit / temperature; exp(value - row max) */
    int id;
} Candidate;

static inline int more_likely(const Candidate *a, const Candidate *b) {
    return a->value > b->value || (a->value == b->value && a->id < b->id);
}

static inline void swap_candidates(Candidate *a, Candidate *b) {
    Candidate t = *a;
    *a = *b;
    *b = t;
}

/* Partition c[lo:hi) around a median-of-three pivot: more likely ones first; returns the pivot's final index. */
static int partition_candidates(Candidate *c, int lo, int hi) {
    int mid = lo + (hi - lo) / 2, last = hi - 1;
    if (more_likely(&c[mid], &c[lo])) swap_candidates(&c[mid], &c[lo]);
    if (more_likely(&c[last], &c[lo])) swap_candidates(&c[last], &c[lo]);
    if (more_likely(&c[mid], &c[last])) swap_candidates(&c[mid], &c[last]); /* the median is now at last */
    int store = lo;
    for (int i = lo; i < last; i++)
        if (more_likely(&c[i], &c[last])) swap_candidates(&c[i], &c[store++]);
    swap_candidates(&c[store], &c[last]);
    return store;
}

/* The length of the shortest most-likely prefix of c[0:n) whose weight reaches share x the total weight (theirs
 * plus outside, the weight of less likely tokens left out of c); n when none does. c is reordered so that the
 * prefix comes first. */
static int nucleus_length(Candidate *c, int n, double share, double outside) {
    double total = outside;
    for (int i = 0; i < n; i++) total += c[i].weight;
    double need = share * total, before = 0.0; /* weight of c[0:lo), all more likely than c[lo:hi) */
    int lo = 0, hi = n;
    while (hi - lo > 16) {
        int p = partition_candidates(c, lo, hi);
        double left = 0.0;
        for (int i = lo; i < p; i++) left += c[i].weight;
        if (before + left >= need) {
            hi = p;
        } else {
            before += left + c[p].weight;
            if (before >= need) return p + 1;
            lo = p + 1;
        }
    }
    for (int i = lo + 1; i < hi; i++) /* insertion sort of the last few, most likely first */
        for (int j = i; j > lo && more_likely(&c[j], &c[j - 1]); j--) swap_candidates(&c[j], &c[j - 1]);
    for (int i = lo; i < hi; i++) {
        before += c[i].weight;
        if (before >= need) return i + 1;
    }
    return n;
}

/* Restore the order of a min-heap of k candidates (root: the least likely) below position at. */
static void heap_sift_down(Candidate *heap, int k, int at) {
    for (;;) {
        int child = 2 * at + 1;
        if (child >= k) return;
        if (child + 1 < k && more_likely(&heap[child], &heap[child + 1])) child++; /* the less likely child */
        if (!more_likely(&heap[at], &heap[child])) return;
        swap_candidates(&heap[at], &heap[child]);
        at = child;
    }
}

/* The largest of x[lo:hi) (-inf when empty). */
static float max_of(const float *x, int lo, int hi) {
    float best = -INFINITY;
    int i = lo;
#if defined(__AVX512F__)
    if (hi - lo >= 16) {
        __m512 peak = _mm512_set1_ps(-INFINITY);
        for (; i + 16 <= hi; i += 16) peak = _mm512_max_ps(peak, _mm512_loadu_ps(x + i));
        best = _mm512_reduce_max_ps(peak);
    }
#endif
    for (; i < hi; i++) best = x[i] > best ? x[i] : best;
    return best;
}

/* The k most likely of values[0:V) into c[0:k) (in no order); returns k, or fewer when fewer are finite. */
static int top_k_candidates(const float *values, int V, int k, Candidate *c) {
    /* A floor for the k-th largest value: the smallest of the maxima of k disjoint chunks (k different tokens at
     * least that large), so only tokens at or above it are candidates: a few times k of them on real logits. */
    float floor = INFINITY;
    for (int j = 0, chunk = V / k; j < k; j++) {
        float top = max_of(values, j * chunk, j + 1 == k ? V : (j + 1) * chunk);
        floor = top < floor ? top : floor;
    }
    int n = 0, i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= V; i += 16) {
        unsigned above = _mm512_cmp_ps_mask(_mm512_loadu_ps(values + i), _mm512_set1_ps(floor), _CMP_GE_OQ);
        for (; above; above &= above - 1) {
            int at = i + __builtin_ctz(above);
            if (values[at] > -INFINITY) c[n++] = (Candidate){values[at], 0.0f, at};
        }
    }
#endif
    for (; i < V; i++)
        if (values[i] >= floor && values[i] > -INFINITY) c[n++] = (Candidate){values[i], 0.0f, i};
    if (n <= k) return n;
    if (k > n / 8) { /* many to keep: quickselect (expected linear) beats k heap insertions */
        for (int lo = 0, hi = n; hi - lo > 1;) {
            int pivot = partition_candidates(c, lo, hi);
            if (pivot == k || pivot == k - 1) break;
            if (pivot > k) hi = pivot;
            else lo = pivot + 1;
        }
        return k;
    }
    /* The k most likely of them: a min-heap of size k whose root is the least likely kept. A later candidate equal
     * to the root never beats it (its id is larger), so one comparison skips most. */
    for (int at = k / 2 - 1; at >= 0; at--) heap_sift_down(c, k, at);
    for (int j = k; j < n; j++)
        if (c[j].value > c[0].value) {
            c[0] = c[j];
            heap_sift_down(c, k, 0);
        }
    return k;
}

static int by_id(const void *a, const void *b) { return ((const Candidate *)a)->id - ((const Candidate *)b)->id; }

/* values[i] = logits[row + i] / temperature (an fp32 division, as torch's); returns their maximum. */
static float scaled_values(const void *logits, int bf16, size_t row, int V, float temperature, float *values) {
    float best = -INFINITY;
    int i = 0;
#if defined(__AVX512F__)
    __m512 peak = _mm512_set1_ps(-INFINITY), t = _mm512_set1_ps(temperature);
    for (; i + 16 <= V; i += 16) {
        __m512 v = _mm512_div_ps(load16(logits, bf16, row + i), t);
        _mm512_storeu_ps(values + i, v);
        peak = _mm512_max_ps(peak, v);
    }
    best = _mm512_reduce_max_ps(peak);
#endif
    for (; i < V; i++) {
        values[i] = element(logits, bf16, row + i) / temperature;
        best = values[i] > best ? values[i] : best;
    }
    return best;
}

/* The sum of x[0:n) in double. */
static double sum_weights(const float *x, int n) {
    double total = 0.0;
    int i = 0;
#if defined(__AVX512F__)
    __m512d low = _mm512_setzero_pd(), high = _mm512_setzero_pd();
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        low = _mm512_add_pd(low, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        high = _mm512_add_pd(high, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    total = _mm512_reduce_add_pd(_mm512_add_pd(low, high));
#endif
    for (; i < n; i++) total += x[i];
    return total;
}

/* weights[i] = exp(values[i] - best), 0 where values[i] is -inf (a masked token is never drawn). */
static void exp_weights(const float *values, int V, float best, float *weights) {
    int i = 0;
#if defined(__AVX512F__)
    __m512 peak = _mm512_set1_ps(best), masked = _mm512_set1_ps(-INFINITY);
    for (; i + 16 <= V; i += 16) {
        __m512 v = _mm512_loadu_ps(values + i);
        __mmask16 live = _mm512_cmp_ps_mask(v, masked, _CMP_GT_OQ);
        _mm512_storeu_ps(weights + i, _mm512_maskz_mov_ps(live, exp16(_mm512_sub_ps(v, peak))));
    }
#endif
    for (; i < V; i++) weights[i] = values[i] > -INFINITY ? vexp(values[i] - best) : 0.0f;
}

/* The token where the running weight in id order first exceeds uniform x total (searchsorted, right side), found
 * a block of 64 at a time; tokens of weight 0 are never drawn. */
static int walk_weights(const float *weights, int V, double total, double uniform) {
    double target = uniform * total, running = 0.0;
    int i = 0;
    for (; i + 64 <= V; i += 64) {
        double block = sum_weights(weights + i, 64);
        if (running + block > target) break;
        running += block;
    }
    for (; i < V; i++) {
        if (weights[i] <= 0.0f) continue;
        running += weights[i];
        if (running > target) return i;
    }
    int last = V - 1; /* rounding left the target unreached: the last token that can be drawn */
    while (last > 0 && weights[last] <= 0.0f) last--;
    return last;
}

/* The largest weight threshold 2^(-e/8) (e = 0, 1, ...) whose tokens at or above it weigh at least need: the top_p
 * nucleus is among them, so only they need ordering. */
static float nucleus_floor(const float *weights, int V, double need) {
    int lo = 0, hi = 126 * 8; /* weights are in [2^-126, 1] */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        float floor = exp2f(-mid / 8.0f);
        double mass = 0.0;
        int i = 0;
#if defined(__AVX512F__)
        __m512 f = _mm512_set1_ps(floor), acc = _mm512_setzero_ps();
        for (; i + 16 <= V; i += 16) { /* fp32 partial sums are enough to compare with need */
            __m512 w = _mm512_loadu_ps(weights + i);
            acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(w, f, _CMP_GE_OQ), w));
        }
        mass = _mm512_reduce_add_ps(acc);
#endif
        for (; i < V; i++) mass += weights[i] >= floor ? weights[i] : 0.0f;
        if (mass >= need * (1.0 + 1e-5)) hi = mid; /* a margin over the fp32 sums: a lower floor is safe */
        else lo = mid + 1;
    }
    return exp2f(-lo / 8.0f);
}

/* Draw among candidates c[0:n) (weights set) in ascending id order; weights [V] is scratch for large n. */
static int draw_candidates(Candidate *c, int n, double uniform, float *weights, int V) {
    if (n > 256) { /* mark them in a vocabulary-sized array and walk it: no sort */
        memset(weights, 0, sizeof(float) * V);
        double total = 0.0;
        for (int i = 0; i < n; i++) {
            weights[c[i].id] = c[i].weight;
            total += c[i].weight;
        }
        return walk_weights(weights, V, total, uniform);
    }
    qsort(c, n, sizeof(Candidate), by_id);
    double total = 0.0, running = 0.0;
    for (int i = 0; i < n; i++) total += c[i].weight;
    double target = uniform * total;
    for (int i = 0; i < n; i++) {
        running += c[i].weight;
        if (running > target) return c[i].id;
    }
    return c[n - 1].id;
}

/* One row of sample_rows; values, weights [V] and candidates [V] are the thread's scratch. Returns the token. */
static int sample_row(const void *logits, int bf16, size_t row, int V, float temperature, int top_k, float top_p,
                      float min_p, double uniform, float *values, float *weights, Candidate *candidates) {
    float best = scaled_values(logits, bf16, row, V, temperature, values);
    if (!(best > -INFINITY)) return 0; /* every logit masked: nothing can be drawn (argmax would give 0 too) */
    int n = 0;
    if (top_k > 0 && top_k < V) {
        n = top_k_candidates(values, V, top_k, candidates);
        for (int i = 0; i < n; i++) candidates[i].weight = vexp(candidates[i].value - best);
        if (top_p < 1.0f) n = nucleus_length(candidates, n, top_p, 0.0);
    } else {
        exp_weights(values, V, best, weights);
        if (top_p >= 1.0f) { /* no ordering needed: min_p (the best weighs exp(0) = 1 >= min_p), then the draw */
            if (min_p > 0.0f)
                for (int i = 0; i < V; i++) weights[i] = weights[i] >= min_p ? weights[i] : 0.0f;
            return walk_weights(weights, V, sum_weights(weights, V), uniform);
        }
        float floor = nucleus_floor(weights, V, top_p * sum_weights(weights, V));
        double outside = 0.0; /* the nucleus is a share of every token's weight: the rest counts as one sum */
        for (int i = 0; i < V; i++) {
            if (weights[i] >= floor) candidates[n++] = (Candidate){values[i], weights[i], i};
            else outside += weights[i];
        }
        n = nucleus_length(candidates, n, top_p, outside);
    }
    if (min_p > 0.0f) { /* the most likely weighs exp(0) = 1 and is always kept */
        int kept = 0;
        for (int i = 0; i < n; i++)
            if (candidates[i].weight >= min_p || candidates[i].value == best) candidates[kept++] = candidates[i];
        n = kept;
    }
    return draw_candidates(candidates, n, uniform, weights, V);
}

/* out[r] = a token drawn for row r of logits [rows, V] (fp32 or bf16) with that row's settings (top_k <= 0 or
 * >= V: none; top_p 1: none; min_p 0: none) and uniform number in [0, 1). Returns -2 when out of memory. */
int sample_rows(const void *logits, int rows, int V, int bf16, const float *temperature, const int *top_k,
                const float *top_p, const float *min_p, const double *uniform, int64_t *out) {
    int failed = 0;
#pragma omp parallel if (rows > 1)
    {
        float *values = malloc(sizeof(float) * V), *weights = malloc(sizeof(float) * V);
        Candidate *candidates = malloc(sizeof(Candidate) * V);
        int ready = values && weights && candidates;
        if (!ready) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++)
            if (ready)
                out[r] = sample_row(logits, bf16, (size_t)r * V, V, temperature[r], top_k[r], top_p[r], min_p[r],
                                    uniform[r], values, weights, candidates);
        free(values);
        free(weights);
        free(candidates);
    }
    return failed ? -2 : 0;
}

/* RMSNorm of one vector in place with fp32 weights: x = round(w * round(x * rsqrt(mean(x^2) + eps))), x rounded. */
static void norm_vector_f32(float *x, const float *weight, int dim, float eps, int bf16) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < dim; i++) sum += x[i] * x[i];
    float inv = 1.0f / sqrtf(sum / (float)dim + eps);
    for (int i = 0; i < dim; i++) x[i] *= inv;
    round_buffer(x, dim, bf16);
    for (int i = 0; i < dim; i++) x[i] *= weight[i];
    round_buffer(x, dim, bf16);
}

/* The same with weights in the model dtype. */
static void norm_vector(float *x, const void *w, int dim, float eps, int bf16) {
    float weight[MAX_HIDDEN];
    to_f32(w, 0, dim, bf16, weight);
    norm_vector_f32(x, weight, dim, eps, bf16);
}

#if defined(__AVX512F__)
/* One row of add_rms_norm for dim a multiple of 16 and model-dtype rows: two passes of whole vectors. */
static void add_rms_norm_row16(const void *h, const void *delta, const float *weight, void *h_out, void *y,
                               size_t base, int dim, float eps, int bf16) {
    float x[MAX_HIDDEN];
    __m512 total = _mm512_setzero_ps();
    for (int i = 0; i < dim; i += 16) {
        __m512 v = load16(h, bf16, base + i);
        if (delta) v = round16(_mm512_add_ps(v, load16(delta, bf16, base + i)), bf16);
        _mm512_storeu_ps(x + i, v);
        total = _mm512_fmadd_ps(v, v, total);
    }
    from_f32(x, dim, bf16, h_out, base);
    __m512 inv = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(total) / (float)dim + eps));
    for (int i = 0; i < dim; i += 16)
        _mm512_storeu_ps(x + i, round16(_mm512_mul_ps(round16(_mm512_mul_ps(_mm512_loadu_ps(x + i), inv), bf16),
                                                      _mm512_loadu_ps(weight + i)),
                                        bf16));
    from_f32(x, dim, bf16, y, base);
}
#endif

/* h_out = round(h + delta) (delta may be NULL: h_out = h); y = RMSNorm(h_out) * w. Rows of length dim. */
int add_rms_norm(const void *h, const void *delta, const void *w, void *h_out, void *y, int rows, int dim, float eps,
                 int bf16) {
    if (dim > MAX_HIDDEN) return -1;
    float weight[MAX_HIDDEN]; /* converted once, not per row */
    to_f32(w, 0, dim, bf16, weight);
#pragma omp parallel for schedule(static) if (rows > 4)
    for (int r = 0; r < rows; r++) {
        float x[MAX_HIDDEN], other[MAX_HIDDEN];
        size_t base = (size_t)r * dim;
#if defined(__AVX512F__)
        if (dim % 16 == 0) {
            add_rms_norm_row16(h, delta, weight, h_out, y, base, dim, eps, bf16);
            continue;
        }
#endif
        to_f32(h, base, dim, bf16, x);
        if (delta) {
            to_f32(delta, base, dim, bf16, other);
            for (int i = 0; i < dim; i++) x[i] += other[i];
            round_buffer(x, dim, bf16);
        }
        from_f32(x, dim, bf16, h_out, base);
        norm_vector_f32(x, weight, dim, eps, bf16);
        from_f32(x, dim, bf16, y, base);
    }
    return 0;
}

/* out = round(round(silu(gate)) * up) with gate_up = [gate | up] per row (width 2 * inter). */
int silu_mul(const void *gate_up, void *out, int rows, int inter, int bf16) {
    if (inter > 4 * MAX_HIDDEN) return -1;
#pragma omp parallel for schedule(static) if (rows * inter > 8192)
    for (int r = 0; r < rows; r++) {
        float gate[4 * MAX_HIDDEN], up[4 * MAX_HIDDEN];
        to_f32(gate_up, (size_t)r * 2 * inter, inter, bf16, gate);
        to_f32(gate_up, (size_t)r * 2 * inter + inter, inter, bf16, up);
        for (int i = 0; i < inter; i++) gate[i] = gate[i] / (1.0f + vexp(-gate[i]));
        round_buffer(gate, inter, bf16);
        for (int i = 0; i < inter; i++) gate[i] *= up[i];
        from_f32(gate, inter, bf16, out, (size_t)r * inter);
    }
    return 0;
}

#if defined(__AVX512F__)

/* norm_rope_head for head_dim a multiple of 32 up to 256, in registers (the halves of rotate_half are whole
 * vectors): the same operations and roundings, without the loops over small buffers. */
static void norm_rope_head16(const float *src, const float *w, const float *cos, const float *sin, int D, float eps,
                             int bf16, float *out) {
    int C = D / 16, half = C / 2;
    __m512 x[16], total = _mm512_setzero_ps();
    for (int c = 0; c < C; c++) {
        x[c] = _mm512_loadu_ps(src + 16 * c);
        total = _mm512_fmadd_ps(x[c], x[c], total);
    }
    __m512 inv = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(total) / (float)D + eps));
    for (int c = 0; c < C; c++)
        x[c] = round16(_mm512_mul_ps(round16(_mm512_mul_ps(x[c], inv), bf16), _mm512_loadu_ps(w + 16 * c)), bf16);
    for (int c = 0; c < C; c++) {
        __m512 rotated = c < half ? _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x[c + half]),
                                                                          _mm512_set1_epi32((int)0x80000000)))
                                  : x[c - half];
        __m512 a = round16(_mm512_mul_ps(x[c], _mm512_loadu_ps(cos + 16 * c)), bf16);
        __m512 b = round16(_mm512_mul_ps(rotated, _mm512_loadu_ps(sin + 16 * c)), bf16);
        _mm512_storeu_ps(out + 16 * c, round16(_mm512_add_ps(a, b), bf16));
    }
}
#endif

/* QK-norm and rotary embedding of one head (rotate-half layout), as the reference does it in the model dtype:
 * out = round(round(x * cos) + round(rotate_half(x) * sin)) with x = RMSNorm(head) * w (w, cos, sin in fp32). */
static void norm_rope_head(const float *src, const float *w, const float *cos, const float *sin, int D, float eps,
                           int bf16, float *out) {
#if defined(__AVX512F__)
    if (D % 32 == 0 && D <= 256) {
        norm_rope_head16(src, w, cos, sin, D, eps, bf16, out);
        return;
    }
#endif
    float x[MAX_HEAD_DIM], c[MAX_HEAD_DIM], s[MAX_HEAD_DIM];
    memcpy(x, src, sizeof(float) * D);
    norm_vector_f32(x, w, D, eps, bf16);
    int half = D / 2;
    for (int i = 0; i < half; i++) {
        c[i] = x[i] * cos[i];
        c[i + half] = x[i + half] * cos[i + half];
        s[i] = -x[i + half] * sin[i];
        s[i + half] = x[i] * sin[i + half];
    }
    round_buffer(c, D, bf16);
    round_buffer(s, D, bf16);
    for (int i = 0; i < D; i++) out[i] = c[i] + s[i];
    round_buffer(out, D, bf16);
}

typedef struct {
    int B, Hq, Hkv, D, max_len, bf16;
    float eps;
    int64_t slot_stride, head_stride;
} AttentionShape;

/* One (sequence b, KV head h) task of a layer's decode attention: QK-norm and RoPE of the head's G queries and its
 * key (cos/sin rows at the sequence's position in the tables), key and value into the cache at that position, then
 * attention over positions 0..position. qkv rows [(Hq + 2 Hkv) * D] are fp32 (values already rounded to the model
 * dtype) or the model dtype (qkv_model); out rows [Hq * D] the same (out_model). scores: the thread's fp32
 * scratch [G, max_len]. */
static void attention_task(const AttentionShape *a, int task, const void *qkv, int qkv_model, const float *qw,
                           const float *kw, const void *cos, const void *sin, void *keys, void *values,
                           const int64_t *positions, void *out, int out_model, float *scores) {
    int Hq = a->Hq, Hkv = a->Hkv, D = a->D, G = Hq / Hkv, bf16 = a->bf16, b = task / Hkv, h = task % Hkv;
    int qkv_bf16 = qkv_model && bf16, out_bf16 = out_model && bf16;
    size_t row = (size_t)b * (Hq + 2 * Hkv) * D, position = (size_t)positions[b];
    float c[MAX_HEAD_DIM], s[MAX_HEAD_DIM], head[MAX_HEAD_DIM], q[MAX_GROUP_ELEMS], o[MAX_GROUP_ELEMS];
    to_f32(cos, position * D, D, bf16, c);
    to_f32(sin, position * D, D, bf16, s);
    for (int g = 0; g < G; g++) {
        to_f32(qkv, row + (size_t)(h * G + g) * D, D, qkv_bf16, head);
        norm_rope_head(head, qw, c, s, D, a->eps, bf16, q + (size_t)g * D);
    }
    size_t at = (size_t)b * a->slot_stride + (size_t)h * a->head_stride;
    to_f32(qkv, row + (size_t)(Hq + h) * D, D, qkv_bf16, head);
    norm_rope_head(head, kw, c, s, D, a->eps, bf16, head);
    from_f32(head, D, bf16, keys, at + position * D);
    to_f32(qkv, row + (size_t)(Hq + Hkv + h) * D, D, qkv_bf16, head);
    from_f32(head, D, bf16, values, at + position * D);
    Prefetch next = {NULL, NULL, 0}; /* task + 1: the next one of this thread under a static schedule */
    if (task + 1 < a->B * Hkv) {
        size_t element = bf16 ? 2 : 4, nb = (size_t)(task + 1) / Hkv, nh = (size_t)(task + 1) % Hkv;
        size_t start = (nb * a->slot_stride + nh * a->head_stride) * element;
        next = (Prefetch){(const char *)keys + start, (const char *)values + start,
                          (size_t)positions[nb] * D * element};
    }
    attend_head(q, keys, values, bf16, at, (int)position + 1, G, D, 1.0f / sqrtf((float)D), scores, a->max_len, o,
                &next);
    size_t first = (size_t)b * Hq * D + (size_t)h * G * D;
    if (out_bf16) {
        from_f32(o, G * D, 1, out, first);
    } else {
        round_buffer(o, G * D, bf16);
        memcpy((float *)out + first, o, sizeof(float) * G * D);
    }
}

/* Attention of one decode step for a layer: qkv [B, (Hq + 2 Hkv) * D] from the fused projection is QK-normed and
 * rotated (cos/sin: tables [positions, D] of the model dtype, read at positions[b]); k and v go into the cache at
 * (slot b, position positions[b]); each query attends to positions 0..positions[b] (max_len > every position). out:
 * [B, Hq * D]. One parallel loop over (sequence, KV head) tasks; each thread has its own scores buffer, so memory
 * does not grow with the batch. */
static int layer_attention(const AttentionShape *a, const void *qkv, int qkv_model, const void *q_norm,
                           const void *k_norm, const void *cos, const void *sin, void *keys, void *values,
                           const int64_t *positions, void *out, int out_model) {
    int B = a->B, Hq = a->Hq, Hkv = a->Hkv, D = a->D, failed = 0;
    if (D > MAX_HEAD_DIM || (Hq / Hkv) * D > MAX_GROUP_ELEMS || D % 2) return -1;
    float qw[MAX_HEAD_DIM], kw[MAX_HEAD_DIM]; /* converted once, not per head */
    to_f32(q_norm, 0, D, a->bf16, qw);
    to_f32(k_norm, 0, D, a->bf16, kw);
#pragma omp parallel if (B * Hkv > 1)
    {
        float *scores = malloc(sizeof(float) * (size_t)(Hq / Hkv) * a->max_len);
        if (!scores) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int task = 0; task < B * Hkv; task++)
            if (scores)
                attention_task(a, task, qkv, qkv_model, qw, kw, cos, sin, keys, values, positions, out, out_model,
                               scores);
        free(scores);
    }
    return failed ? -2 : 0;
}

/* decode_layer_attention: layer_attention on buffers of the model dtype (the per-layer path). */
int decode_layer_attention(const void *qkv, const void *q_norm, const void *k_norm, const void *cos, const void *sin,
                           void *keys, void *values, const int64_t *positions, void *out, int B,
                           int Hq, int Hkv, int D, float eps, int64_t slot_stride, int64_t head_stride, int max_len,
                           int bf16) {
    AttentionShape shape = {B, Hq, Hkv, D, max_len, bf16, eps, slot_stride, head_stride};
    return layer_attention(&shape, qkv, 1, q_norm, k_norm, cos, sin, keys, values, positions, out, 1);
}

/* ---- the whole decode step of a dense model ---- */

enum { WEIGHT_F32 = 0, WEIGHT_BF16 = 1, WEIGHT_INT8 = 2 };

typedef struct {
    const void *weight;      /* [n, k] row-major: fp32, bf16 or int8 */
    const float *scale;      /* int8: per-row scales */
    int kind, n, k;
    const uint16_t *packed;  /* bf16 weights in pair_packed's layout (gemm_rows), or NULL */
} Linear;

typedef struct {
    Linear qkv, o, gate_up, down;
    const void *input_norm, *post_norm, *q_norm, *k_norm; /* model dtype */
    void *keys, *values;                                  /* this layer's cache */
} Layer;

#if defined(__AVX512F__)
/* One weight row of floats (bf16 or fp32) against M rows of x; bf16 rows use the AVX512-BF16 dot product where the
 * CPU has it (x given as bf16 pairs in xb), else they are widened to fp32. */
static inline __attribute__((always_inline)) void float_row(const float *x, const uint16_t *xb, const void *w, int kind,
                                                            int M, int P, int K, size_t n, float *out, int N) {
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) acc[m][p] = _mm512_setzero_ps();
    if (kind == WEIGHT_BF16) {
        const uint16_t *row = (const uint16_t *)w + n * K;
        for (int k = 0; k < K; k += 64) {
#if defined(__AVX512BF16__)
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                __m512bh wv = (__m512bh)_mm512_loadu_si512(row + k + 32 * j);
#pragma GCC unroll 8
                for (int m = 0; m < M; m++)
                    acc[m][j % P] = _mm512_dpbf16_ps(acc[m][j % P], wv,
                                                      (__m512bh)_mm512_loadu_si512(xb + (size_t)m * K + k + 32 * j));
            }
#else
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m512 wv = load16(row, 1, k + 16 * j);
#pragma GCC unroll 8
                for (int m = 0; m < M; m++)
                    acc[m][j % P] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + (size_t)m * K + k + 16 * j), acc[m][j % P]);
            }
#endif
        }
    } else {
        const float *row = (const float *)w + n * K;
        for (int k = 0; k < K; k += 64) {
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m512 wv = _mm512_loadu_ps(row + k + 16 * j);
#pragma GCC unroll 8
                for (int m = 0; m < M; m++)
                    acc[m][j % P] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + (size_t)m * K + k + 16 * j), acc[m][j % P]);
            }
        }
    }
#pragma GCC unroll 8
    for (int m = 0; m < M; m++) {
        __m512 sum = acc[m][0];
#pragma GCC unroll 4
        for (int p = 1; p < P; p++) sum = _mm512_add_ps(sum, acc[m][p]);
        out[(size_t)m * N + n] = _mm512_reduce_add_ps(sum);
    }
}

static void float_rows(const float *x, const uint16_t *xb, const Linear *lin, int M, int n0, int n1, float *out) {
#define FLOAT_CASE(MM, PP)                                                                                   \
    case MM:                                                                                                 \
        for (int n = n0; n < n1; n++) float_row(x, xb, lin->weight, lin->kind, MM, PP, lin->k, n, out, lin->n); \
        break;
    switch (M) { FOR_EACH_ROW_COUNT(FLOAT_CASE) }
#undef FLOAT_CASE
}
#endif

/* ---- a bf16 GEMM for decode batches of many rows: out [M, N] = x [M, K] @ W.T ----
 * At 64 rows a decode step's products are compute-bound, and oneDNN's spend ~10 us a call on top of their work at
 * these small shapes. Here the weights are packed once (pack_bf16_pairs) as [N / 16][K / 2][16][2]: per block of 16
 * output columns, the weights of each pair of consecutive k side by side, so one 64-byte load holds a k-pair of 16
 * columns and one AVX512-BF16 dot product (vdpbf16ps) adds x[m, k] w[n, k] + x[m, k + 1] w[n, k + 1] to 16 columns
 * of row m, with x[m, k:k+2] broadcast: no horizontal sums. A tile of 6 rows x 64 columns keeps 24 independent
 * accumulators in registers (enough to hide the dot product's latency on two pipes), and a thread reuses its 64
 * columns' weights for every 6-row tile. Measured at 64 rows on the debug-5m shapes (2-core Zen 5): 940-1000
 * GFLOP/s, against 440-930 for oneDNN's packed linear. Sums are fp32 in k order, as oneDNN's; outputs rounded to
 * the model dtype like a torch linear's. */
#define GEMM_TILE_ROWS 6
#define GEMM_TILE_BLOCKS 4 /* blocks of 16 columns */

int pack_bf16_pairs(const uint16_t *w, uint16_t *packed, int N, int K) {
    if (N % 16 || K % 2) return -1;
#pragma omp parallel for schedule(static)
    for (int nb = 0; nb < N / 16; nb++)
        for (int k2 = 0; k2 < K / 2; k2++)
            for (int c = 0; c < 16; c++) {
                uint16_t *pair = packed + (((size_t)nb * (K / 2) + k2) * 16 + c) * 2;
                const uint16_t *row = w + (size_t)(nb * 16 + c) * K + 2 * k2;
                pair[0] = row[0];
                pair[1] = row[1];
            }
    return 0;
}

#if defined(__AVX512BF16__)
int gemm_available(void) { return 1; }

enum { STORE_F32 = 0, STORE_ROUNDED = 1, STORE_BF16 = 2 }; /* fp32 sums; fp32 rounded to bf16; bf16 */

/* Where a row block of output starts in a buffer of the store's element type. */
static inline void *out_at(void *out, size_t index, int store) {
    return store == STORE_BF16 ? (void *)((uint16_t *)out + index) : (void *)((float *)out + index);
}

static inline __attribute__((always_inline)) void gemm_tile(const uint16_t *xb, int K, const uint16_t *w,
                                                            size_t block_stride, int MR, int NR, void *out, int N,
                                                            int store, const char *prefetch, int prefetch_lines) {
    __m512 acc[GEMM_TILE_ROWS][GEMM_TILE_BLOCKS];
#pragma GCC unroll 6
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) acc[m][j] = _mm512_setzero_ps();
    const uint32_t *pairs = (const uint32_t *)xb; /* x[m, 2 k2 : 2 k2 + 2] as one 32-bit lane */
    for (int k2 = 0; k2 < K / 2; k2++) {
        if (k2 < prefetch_lines) _mm_prefetch(prefetch + (size_t)k2 * 64, _MM_HINT_T1);
        __m512bh wv[GEMM_TILE_BLOCKS];
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) wv[j] = (__m512bh)_mm512_loadu_si512(w + j * block_stride + (size_t)k2 * 32);
#pragma GCC unroll 6
        for (int m = 0; m < MR; m++) {
            __m512bh xv = (__m512bh)_mm512_set1_epi32((int)pairs[(size_t)m * (K / 2) + k2]);
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], xv, wv[j]);
        }
    }
#pragma GCC unroll 6
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) {
            size_t at = (size_t)m * N + 16 * j;
            if (store == STORE_BF16)
                _mm256_storeu_si256((__m256i *)((uint16_t *)out + at), _mm512_cvtepi32_epi16(bf16_bits16(acc[m][j])));
            else
                _mm512_storeu_ps((float *)out + at, round16(acc[m][j], store == STORE_ROUNDED));
        }
}

/* Every (rows, blocks) shape of a tile, as compile-time constants: CASE(MR, NR). */
#define FOR_EACH_GEMM_TILE(CASE)                                                                              \
    CASE(1, 1) CASE(1, 2) CASE(1, 3) CASE(1, 4) CASE(2, 1) CASE(2, 2) CASE(2, 3) CASE(2, 4) CASE(3, 1) CASE(3, 2) \
    CASE(3, 3) CASE(3, 4) CASE(4, 1) CASE(4, 2) CASE(4, 3) CASE(4, 4) CASE(5, 1) CASE(5, 2) CASE(5, 3) CASE(5, 4) \
    CASE(6, 1) CASE(6, 2) CASE(6, 3) CASE(6, 4)

/* xb bf16 [M, K]; packed from pack_bf16_pairs; out [M, N] as store says. Threads split the 64-column groups. */
static void gemm_rows(const uint16_t *xb, const uint16_t *packed, int M, int N, int K, void *out, int store) {
    int blocks = N / 16, groups = (blocks + GEMM_TILE_BLOCKS - 1) / GEMM_TILE_BLOCKS;
    size_t block_stride = (size_t)K * 16;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < groups; g++) {
        int first = g * GEMM_TILE_BLOCKS;
        int NR = blocks - first < GEMM_TILE_BLOCKS ? blocks - first : GEMM_TILE_BLOCKS;
        const uint16_t *w = packed + first * block_stride;
        /* While this group computes, its row tiles fetch the next group's weights into L2, a slice each, one line
         * per k step: those come from memory, and the next group's first tile would otherwise wait on them. */
        int next_blocks = blocks - first - NR < GEMM_TILE_BLOCKS ? blocks - first - NR : GEMM_TILE_BLOCKS;
        int tiles = (M + GEMM_TILE_ROWS - 1) / GEMM_TILE_ROWS;
        int next_lines = next_blocks * (int)(block_stride * 2 / 64), slice = (next_lines + tiles - 1) / tiles;
        const char *next = (const char *)(w + NR * block_stride);
        for (int m0 = 0; m0 < M; m0 += GEMM_TILE_ROWS) {
            int MR = M - m0 < GEMM_TILE_ROWS ? M - m0 : GEMM_TILE_ROWS;
            int done = m0 / GEMM_TILE_ROWS * slice, lines = next_lines - done < slice ? next_lines - done : slice;
            const char *prefetch = next + (size_t)done * 64;
            const uint16_t *x = xb + (size_t)m0 * K;
            size_t o = (size_t)m0 * N + first * 16;
#define GEMM_CASE(R, C)                                                                                        \
    case R * 8 + C:                                                                                           \
        gemm_tile(x, K, w, block_stride, R, C, out_at(out, o, store), N, store, prefetch, lines);             \
        break;
            switch (MR * 8 + NR) { FOR_EACH_GEMM_TILE(GEMM_CASE) }
#undef GEMM_CASE
        }
    }
}

/* gemm_rows on its own (tests and benchmarks): x bf16 [M, K], out fp32 [M, N]. */
int gemm_bf16(const uint16_t *xb, const uint16_t *packed, void *out, int M, int N, int K, int store) {
    if (N % 16 || K % 2 || M < 1 || store < STORE_F32 || store > STORE_BF16) return -1;
    gemm_rows(xb, packed, M, N, K, out, store);
    return 0;
}
#else
int gemm_available(void) { return 0; }
int gemm_bf16(const uint16_t *xb, const uint16_t *packed, void *out, int M, int N, int K, int store) {
    (void)xb, (void)packed, (void)out, (void)M, (void)N, (void)K, (void)store;
    return -1;
}
#endif

/* ---- causal grouped-query attention of a prefill segment: bf16 queries and cache, fp32 sums, bf16 out ----
 * Queries at positions start..start+T-1 of a slot attend to its cached positions 0..start+T-1, query i to keys
 * 0..start+i (start > 0: a later chunk of a chunked prefill). FlashAttention-2's scheme on AVX512-BF16 dot products.
 * A task is one KV head and a block of query positions; its rows are those positions' G query heads (up to 64 rows:
 * 4 vectors of 16 lanes), so each key and value is read once per group. Per block of 64 keys:
 * - scores^T [keys, rows] = K Q^T. The key rows, read straight from the cache, are the broadcast operand (a pair of
 *   head dims, 32 bits, per dot product); the queries, packed once per task in pairs of dims [D/2][rows][2], are
 *   the vector operand. So the cache is never repacked, and one key's scores for 16 rows fill a vector: the online
 *   softmax's running max and sum are lane-wise, without horizontal reductions.
 * - P = exp(scale (scores - running max)), causally masked, rounded to bf16 (as FlashAttention-2 rounds P to the
 *   input dtype for its second product) and packed in key pairs [keys/2][rows][2]. The running sum adds the rounded
 *   values, so the weights applied sum exactly to what divides them at the end.
 * - out^T [D, rows] += V^T P^T. Each key pair's values, interleaved ([keys/2][D][2], two permutes per 32 dims), are
 *   the broadcast operand, P the vector one; the accumulators are rescaled by exp(old max - new max) as they load.
 * Key blocks past a query block's last position are never read. Both products run on tiles of up to 6 broadcast
 * rows x 4 vectors (24 accumulators), as gemm_tile's. Threads take (KV head, query block) tasks, the longest first;
 * each has a fixed scratch (about 90 KB at head_dim 128), whatever T and the cached length. */
#if defined(__AVX512BF16__)
#define PREFILL_ROWS 64 /* query rows (positions x heads of a group) of a task: 4 vectors of 16 lanes */
#define PREFILL_KEYS 64 /* keys per block */

/* c[m][v] = (alpha[v] c[m][v] or 0) + sum over k2 of x[m, k2] . w[k2][v]: x holds bf16 pairs (32 bits) at
 * x + m x_m + k2 x_k, broadcast; w holds NV vectors of 16 pairs per k2; c rows are PREFILL_ROWS floats apart. */
static inline __attribute__((always_inline)) void pair_tile(const uint32_t *x, size_t x_m, size_t x_k,
                                                            const uint16_t *w, int K2, int MR, int NV, float *c,
                                                            const __m512 *alpha) {
    __m512 acc[GEMM_TILE_ROWS][GEMM_TILE_BLOCKS];
#pragma GCC unroll 6
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[m][v] = alpha ? _mm512_mul_ps(_mm512_loadu_ps(c + m * PREFILL_ROWS + 16 * v), alpha[v])
                              : _mm512_setzero_ps();
    for (int k2 = 0; k2 < K2; k2++) {
        __m512bh wv[GEMM_TILE_BLOCKS];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) wv[v] = (__m512bh)_mm512_loadu_si512(w + ((size_t)k2 * NV + v) * 32);
#pragma GCC unroll 6
        for (int m = 0; m < MR; m++) {
            __m512bh xv = (__m512bh)_mm512_set1_epi32((int)x[m * x_m + k2 * x_k]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[m][v] = _mm512_dpbf16_ps(acc[m][v], xv, wv[v]);
        }
    }
#pragma GCC unroll 6
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(c + m * PREFILL_ROWS + 16 * v, acc[m][v]);
}

/* pair_tile over M broadcast rows, 6 at a time. */
static void pair_product(const uint32_t *x, size_t x_m, size_t x_k, const uint16_t *w, int K2, int M, int NV,
                         float *c, const __m512 *alpha) {
    for (int m0 = 0; m0 < M; m0 += GEMM_TILE_ROWS) {
        int MR = M - m0 < GEMM_TILE_ROWS ? M - m0 : GEMM_TILE_ROWS;
        const uint32_t *xm = x + m0 * x_m;
        float *cm = c + (size_t)m0 * PREFILL_ROWS;
#define PAIR_CASE(R, V)                                                                                        \
    case R * 8 + V:                                                                                            \
        pair_tile(xm, x_m, x_k, w, K2, R, V, cm, alpha);                                                       \
        break;
        switch (MR * 8 + NV) { FOR_EACH_GEMM_TILE(PAIR_CASE) }
#undef PAIR_CASE
    }
}

/* Per row (lane) of a task: running max of the raw scores, running sum of the rounded weights, the factor that
 * rescales what was accumulated before the current block, and the last key position the row may see. */
typedef struct {
    __m512 max[4], sum[4], alpha[4];
    __m512i last[4];
} RowState;

/* The online softmax of one block: scores^T [nk][PREFILL_ROWS] of keys j0..j0+nk-1 -> P as bf16 key pairs p
 * [(nk + 1) / 2][NV][16][2] (a missing second key of a pair is 0). masked: some key of the block is past some row's
 * last position. scale_log2e: the attention scale times log2(e) (exp(x) = 2^(x log2 e)). */
static void softmax_block(const float *scores, int nk, int j0, int NV, int masked, float scale_log2e, RowState *s,
                          uint32_t *p) {
    const __m512 c = _mm512_set1_ps(scale_log2e);
    uint16_t order[32]; /* [a0..a15, b0..b15] -> a0, b0, a1, b1, ... */
    for (int i = 0; i < 16; i++) order[2 * i] = (uint16_t)i, order[2 * i + 1] = (uint16_t)(16 + i);
    const __m512i pairs = _mm512_loadu_si512(order), high_half = _mm512_set1_epi32((int)0xffff0000);
    for (int v = 0; v < NV; v++) {
        __m512 peak = s->max[v];
        for (int j = 0; j < nk; j++) {
            __mmask16 live = masked ? _mm512_cmple_epi32_mask(_mm512_set1_epi32(j0 + j), s->last[v]) : 0xffff;
            peak = _mm512_mask_max_ps(peak, live, peak, _mm512_loadu_ps(scores + j * PREFILL_ROWS + 16 * v));
        }
        s->alpha[v] = exp2_16(_mm512_mul_ps(_mm512_sub_ps(s->max[v], peak), c));
        s->max[v] = peak;
        const __m512 shift = _mm512_mul_ps(peak, c);
        __m512 sum = _mm512_mul_ps(s->sum[v], s->alpha[v]);
        for (int j = 0; j < nk; j += 2) {
            __m512 e[2];
#pragma GCC unroll 2
            for (int half = 0; half < 2; half++) {
                __mmask16 live = j + half >= nk ? 0
                                 : masked ? _mm512_cmple_epi32_mask(_mm512_set1_epi32(j0 + j + half), s->last[v])
                                          : 0xffff;
                __m512 t = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(live, scores + (j + half) * PREFILL_ROWS + 16 * v),
                                           c, shift);
                e[half] = _mm512_maskz_mov_ps(live, exp2_16(t));
            }
            __m512i pair = _mm512_permutexvar_epi16(pairs, (__m512i)_mm512_cvtne2ps_pbh(e[1], e[0]));
            sum = _mm512_add_ps(sum, _mm512_castsi512_ps(_mm512_slli_epi32(pair, 16)));
            sum = _mm512_add_ps(sum, _mm512_castsi512_ps(_mm512_and_si512(pair, high_half)));
            _mm512_storeu_si512(p + ((size_t)(j / 2) * NV + v) * 16, pair);
        }
        s->sum[v] = sum;
    }
}

/* Values of keys 0..nk-1 (rows D apart) in key pairs: vi[j/2][d] = (value[j][d], value[j + 1][d]), 0 past nk. */
static void interleave_values(const uint16_t *values, int nk, int D, uint16_t *vi) {
    uint16_t lo[32], hi[32]; /* lanes of (a, b) for permutex2var: a[i], b[i] alternating */
    for (int i = 0; i < 16; i++) {
        lo[2 * i] = (uint16_t)i, lo[2 * i + 1] = (uint16_t)(32 + i);
        hi[2 * i] = (uint16_t)(16 + i), hi[2 * i + 1] = (uint16_t)(48 + i);
    }
    const __m512i low = _mm512_loadu_si512(lo), high = _mm512_loadu_si512(hi);
    for (int j = 0; j < nk; j += 2) {
        const uint16_t *first = values + (size_t)j * D, *second = first + D;
        uint16_t *dst = vi + (size_t)j * D;
        for (int d = 0; d < D; d += 32) {
            __m512i a = _mm512_loadu_si512(first + d);
            __m512i b = j + 1 < nk ? _mm512_loadu_si512(second + d) : _mm512_setzero_si512();
            _mm512_storeu_si512(dst + 2 * d, _mm512_permutex2var_epi16(a, low, b));
            _mm512_storeu_si512(dst + 2 * d + 32, _mm512_permutex2var_epi16(a, high, b));
        }
    }
}

typedef struct {
    const uint16_t *q, *keys, *values; /* keys/values: the slot's cache of the layer, head h at h * cache_head */
    uint16_t *out;
    int64_t q_head, q_token, out_head, out_token, cache_head; /* element strides; positions are D apart */
    int Hq, Hkv, T, D, start, block;                          /* block: query positions per task */
    float scale;
} PrefillShape;

typedef struct {
    uint32_t *q, *p;     /* queries [D/2][rows], P [PREFILL_KEYS/2][rows] as bf16 pairs */
    float *scores, *out; /* scores^T [PREFILL_KEYS][rows], out^T [D][rows] */
    uint16_t *values;    /* [PREFILL_KEYS/2][D][2] */
} PrefillScratch;

/* In place: the 16 x 16 matrix of 32-bit elements whose rows are r[0..15] becomes its transpose (within 128-bit
 * lanes: pairs, then quads; then the lanes across vectors). */
static inline void transpose16(__m512i *r) {
    __m512i t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
#pragma GCC unroll 4
    for (int g = 0; g < 16; g += 4) { /* r[g + e], lane L: element 4 L + e of rows g..g+3 */
        r[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
        r[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
        r[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
        r[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
#pragma GCC unroll 4
    for (int e = 0; e < 4; e++) {
        __m512i low01 = _mm512_shuffle_i32x4(r[e], r[4 + e], _MM_SHUFFLE(1, 0, 1, 0));
        __m512i low23 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], _MM_SHUFFLE(1, 0, 1, 0));
        __m512i high01 = _mm512_shuffle_i32x4(r[e], r[4 + e], _MM_SHUFFLE(3, 2, 3, 2));
        __m512i high23 = _mm512_shuffle_i32x4(r[8 + e], r[12 + e], _MM_SHUFFLE(3, 2, 3, 2));
        t[e] = _mm512_shuffle_i32x4(low01, low23, _MM_SHUFFLE(2, 0, 2, 0));
        t[4 + e] = _mm512_shuffle_i32x4(low01, low23, _MM_SHUFFLE(3, 1, 3, 1));
        t[8 + e] = _mm512_shuffle_i32x4(high01, high23, _MM_SHUFFLE(2, 0, 2, 0));
        t[12 + e] = _mm512_shuffle_i32x4(high01, high23, _MM_SHUFFLE(3, 1, 3, 1));
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* Queries of positions i0..i0+n-1 of KV head h's group as the products' vector operand: row r = (position r / G,
 * head r % G), [D/2][NV * 16] pairs, rows past G n zero. 16 rows x 16 pairs at a time, transposed in registers. */
static void pack_queries(const PrefillShape *a, int h, int i0, int rows, int NV, uint32_t *packed) {
    int G = a->Hq / a->Hkv, width = NV * 16;
    for (int r0 = 0; r0 < width; r0 += 16)
        for (int k0 = 0; k0 < a->D / 2; k0 += 16) {
            __m512i block[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                int r = r0 + i;
                block[i] = r < rows ? _mm512_loadu_si512((const uint32_t *)(a->q + (h * G + r % G) * a->q_head +
                                                                             (i0 + r / G) * a->q_token) + k0)
                                    : _mm512_setzero_si512();
            }
            transpose16(block);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) _mm512_storeu_si512(packed + (size_t)(k0 + i) * width + r0, block[i]);
        }
}

/* out^T [D][PREFILL_ROWS] / sum per row, rounded to bf16, into the output rows of positions i0.. (row r = position
 * r / G, head r % G): 16 rows x 16 dims at a time, transposed in registers. */
static void store_rows(const PrefillShape *a, int h, int i0, int rows, const RowState *state, const float *out_t) {
    int G = a->Hq / a->Hkv;
    for (int r0 = 0; r0 < rows; r0 += 16) {
        __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), state->sum[r0 / 16]);
        for (int d0 = 0; d0 < a->D; d0 += 16) {
            __m512i block[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                block[i] = _mm512_castps_si512(_mm512_mul_ps(_mm512_loadu_ps(out_t + (d0 + i) * PREFILL_ROWS + r0), inv));
            transpose16(block);
            for (int i = 0; i < 16 && r0 + i < rows; i++) {
                int r = r0 + i;
                uint16_t *dst = a->out + (h * G + r % G) * a->out_head + (i0 + r / G) * a->out_token + d0;
                _mm256_storeu_si256((__m256i *)dst, _mm512_cvtepi32_epi16(bf16_bits16(_mm512_castsi512_ps(block[i]))));
            }
        }
    }
}

static void prefill_task(const PrefillShape *a, int h, int i0, const PrefillScratch *s) {
    int G = a->Hq / a->Hkv, D = a->D, n = a->T - i0 < a->block ? a->T - i0 : a->block;
    int rows = n * G, NV = (rows + 15) / 16, first = a->start + i0, end = first + n; /* keys 0..end-1 */
    pack_queries(a, h, i0, rows, NV, s->q);
    RowState state;
    for (int v = 0; v < NV; v++) {
        int last[16];
        for (int lane = 0; lane < 16; lane++) { /* padding rows see what the last row sees */
            int r = 16 * v + lane < rows ? 16 * v + lane : rows - 1;
            last[lane] = first + r / G;
        }
        state.last[v] = _mm512_loadu_si512(last);
        state.max[v] = _mm512_set1_ps(-INFINITY);
        state.sum[v] = _mm512_setzero_ps();
    }
    const uint16_t *keys = a->keys + h * a->cache_head, *values = a->values + h * a->cache_head;
    const float scale_log2e = a->scale * 1.44269504088896341f;
    for (int j0 = 0; j0 < end; j0 += PREFILL_KEYS) {
        int nk = end - j0 < PREFILL_KEYS ? end - j0 : PREFILL_KEYS, pairs = (nk + 1) / 2;
        pair_product((const uint32_t *)(keys + (size_t)j0 * D), D / 2, 1, (const uint16_t *)s->q, D / 2, nk, NV,
                     s->scores, NULL);
        softmax_block(s->scores, nk, j0, NV, j0 + nk - 1 > first, scale_log2e, &state, s->p);
        interleave_values(values + (size_t)j0 * D, nk, D, s->values);
        pair_product((const uint32_t *)s->values, 1, D, (const uint16_t *)s->p, pairs, D, NV, s->out,
                     j0 ? state.alpha : NULL);
    }
    store_rows(a, h, i0, rows, &state, s->out);
}

/* q [Hq][T][D] and out [Hq][T][D] with the given strides (bf16, dims contiguous); keys/values: the slot's cache of
 * one layer, [Hkv][max_len][D] with head stride cache_head, holding positions 0..start+T-1. Returns 0, -1 for a
 * shape it does not take (G > 64, head_dim not a multiple of 32 or above MAX_HEAD_DIM), -2 without memory. */
int prefill_attention(const uint16_t *q, int64_t q_head, int64_t q_token, const uint16_t *keys,
                      const uint16_t *values, int64_t cache_head, uint16_t *out, int64_t out_head, int64_t out_token,
                      int Hq, int Hkv, int T, int D, int start, float scale) {
    if (Hkv < 1 || Hq % Hkv || Hq / Hkv > PREFILL_ROWS || D % 32 || D > MAX_HEAD_DIM || T < 1 || start < 0)
        return -1;
    int block = PREFILL_ROWS / (Hq / Hkv), blocks = (T + block - 1) / block, tasks = blocks * Hkv, failed = 0;
    PrefillShape shape = {q, keys, values, out, q_head, q_token, out_head, out_token, cache_head,
                          Hq, Hkv, T, D, start, block, scale};
    size_t q_bytes = (size_t)D * PREFILL_ROWS * 2, p_bytes = (size_t)PREFILL_KEYS * PREFILL_ROWS * 2;
    size_t scores_bytes = (size_t)PREFILL_KEYS * PREFILL_ROWS * 4, out_bytes = (size_t)D * PREFILL_ROWS * 4;
    size_t values_bytes = (size_t)PREFILL_KEYS * D * 2;
#pragma omp parallel if (tasks > 1)
    {
        char *memory = aligned_alloc(64, q_bytes + p_bytes + scores_bytes + out_bytes + values_bytes);
        if (!memory) {
#pragma omp atomic write
            failed = 1;
        }
        PrefillScratch scratch = {(uint32_t *)memory, (uint32_t *)(memory + q_bytes),
                                  (float *)(memory + q_bytes + p_bytes),
                                  (float *)(memory + q_bytes + p_bytes + scores_bytes),
                                  (uint16_t *)(memory + q_bytes + p_bytes + scores_bytes + out_bytes)};
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < tasks; task++) /* the longest (last) query blocks first */
            if (memory) prefill_task(&shape, task % Hkv, (blocks - 1 - task / Hkv) * block, &scratch);
        free(memory);
    }
    return failed ? -2 : 0;
}
#else
int prefill_attention(const uint16_t *q, int64_t q_head, int64_t q_token, const uint16_t *keys,
                      const uint16_t *values, int64_t cache_head, uint16_t *out, int64_t out_head, int64_t out_token,
                      int Hq, int Hkv, int T, int D, int start, float scale) {
    (void)q, (void)q_head, (void)q_token, (void)keys, (void)values, (void)cache_head, (void)out, (void)out_head;
    (void)out_token, (void)Hq, (void)Hkv, (void)T, (void)D, (void)start, (void)scale;
    return -1;
}
#endif

/* Whether linear_rows takes the GEMM: pair-packed weights and bf16 inputs, and more than one row (for one row the
 * matrix-vector product reads the weights once, as fast). */
static inline int runs_gemm(const Linear *lin, const uint16_t *xb, int M) {
#if defined(__AVX512BF16__)
    return xb && lin->packed && M > 1;
#else
    (void)lin, (void)xb, (void)M;
    return 0;
#endif
}

/* out [M, n] = x [M, k] @ W.T (fp32 buffers), rounded to the model dtype like a torch linear's output. */
static void linear_rows(const float *x, uint16_t *xb, const Linear *lin, int M, float *out, int bf16) {
    int N = lin->n, K = lin->k;
    if (xb) from_f32(x, M * K, 1, xb, 0);
#if defined(__AVX512BF16__)
    if (runs_gemm(lin, xb, M)) {
        gemm_rows(xb, lin->packed, M, N, K, out, bf16 ? STORE_ROUNDED : STORE_F32);
        return;
    }
#endif
    if (lin->kind == WEIGHT_INT8) {
        woq_int8_matmul(x, (const int8_t *)lin->weight, lin->scale, out, 0, M, N, K);
    } else {
        const int block = 16;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < (N + block - 1) / block; i++) {
            int n0 = i * block, n1 = n0 + block <= N ? n0 + block : N;
#if defined(__AVX512F__)
            if (K % 64 == 0) {
                float_rows(x, xb, lin, M, n0, n1, out);
                continue;
            }
#endif
            for (int n = n0; n < n1; n++)
                for (int m = 0; m < M; m++) {
                    float sum = 0.0f;
                    for (int k = 0; k < K; k++)
                        sum += x[(size_t)m * K + k] * (lin->kind == WEIGHT_BF16
                                                            ? bf16_to_f32(((const uint16_t *)lin->weight)[(size_t)n * K + k])
                                                            : ((const float *)lin->weight)[(size_t)n * K + k]);
                    out[(size_t)m * N + n] = sum;
                }
        }
    }
    round_buffer(out, M * N, bf16);
}

/* logits [M, n] in the model dtype, as the LM head module gives them (bf16: half the bytes to write and to read
 * back for sampling). */
static int lm_head_rows(const float *x, uint16_t *xb, const Linear *lin, int M, void *logits, int bf16) {
    if (!bf16) {
        linear_rows(x, xb, lin, M, logits, 0);
        return 0;
    }
#if defined(__AVX512BF16__)
    if (runs_gemm(lin, xb, M)) {
        from_f32(x, M * lin->k, 1, xb, 0);
        gemm_rows(xb, lin->packed, M, lin->n, lin->k, logits, STORE_BF16);
        return 0;
    }
#endif
    float *wide = malloc(sizeof(float) * (size_t)M * lin->n);
    if (!wide) return -2;
    linear_rows(x, xb, lin, M, wide, 1);
    from_f32(wide, M * lin->n, 1, logits, 0);
    free(wide);
    return 0;
}

/* h = round(h + delta) (delta may be NULL); x = RMSNorm(h) * w, per row. */
static void add_norm_rows(float *h, const float *delta, const void *w, float *x, int B, int H, float eps, int bf16) {
#pragma omp parallel for schedule(static) if (B > MAX_MATVEC_ROWS)
    for (int b = 0; b < B; b++) {
        float *hb = h + (size_t)b * H;
        if (delta) {
            for (int i = 0; i < H; i++) hb[i] += delta[(size_t)b * H + i];
            round_buffer(hb, H, bf16);
        }
        memcpy(x + (size_t)b * H, hb, sizeof(float) * H);
        norm_vector(x + (size_t)b * H, w, H, eps, bf16);
    }
}

/* Whether every projection has bf16 pair-packed weights and the CPU can run gemm_rows on them. */
static int all_packed(const Layer *layers, int num_layers, const Linear *lm_head) {
#if defined(__AVX512BF16__)
    if (!lm_head->packed) return 0;
    for (int l = 0; l < num_layers; l++) {
        const Layer *layer = layers + l;
        if (!layer->qkv.packed || !layer->o.packed || !layer->gate_up.packed || !layer->down.packed) return 0;
    }
    return 1;
#else
    (void)layers, (void)num_layers, (void)lm_head;
    return 0;
#endif
}

/* One decode step of a dense model: embeddings [B, H] in, logits [B, V] out in the model dtype (what the LM head
 * module would give). Every layer: add + RMSNorm, q/k/v projection, QK-norm + RoPE + cache write +
 * attention, o projection, add + RMSNorm, gate/up projection, SiLU x up, down projection. */
int decode_step(const Layer *layers, int num_layers, const void *final_norm, const Linear *lm_head,
                const void *embeddings, const void *cos, const void *sin, const int64_t *positions, void *logits,
                int B, int H, int Hq, int Hkv, int D, int inter, int max_len, int64_t slot_stride,
                int64_t head_stride, float eps, int bf16) {
    if (B < 1 || H > MAX_HIDDEN) return -1;
    if (B > MAX_MATVEC_ROWS && !(bf16 && all_packed(layers, num_layers, lm_head))) return -1;
    AttentionShape shape = {B, Hq, Hkv, D, max_len, bf16, eps, slot_stride, head_stride};
    size_t qkv_width = (size_t)(Hq + 2 * Hkv) * D, widest = qkv_width > (size_t)2 * inter ? qkv_width : 2 * inter;
    size_t sizes[] = {(size_t)B * H, (size_t)B * H, (size_t)B * H, B * widest, (size_t)B * Hq * D, (size_t)B * inter};
    size_t total = 0;
    for (int i = 0; i < 6; i++) total += sizes[i];
    float *memory = malloc(sizeof(float) * total + sizeof(uint16_t) * B * (widest > (size_t)H ? widest : H) + 64);
    if (!memory) return -2;
    float *h = memory, *x = h + sizes[0], *delta = x + sizes[1], *wide = delta + sizes[2];
    float *attn = wide + sizes[3], *act = attn + sizes[4];
    uint16_t *xb = NULL;
#if defined(__AVX512BF16__)
    if (bf16) xb = (uint16_t *)(act + sizes[5]);
#endif
    to_f32(embeddings, 0, B * H, bf16, h);
    int status = 0;
    for (int l = 0; l < num_layers && status == 0; l++) {
        const Layer *layer = layers + l;
        add_norm_rows(h, l ? delta : NULL, layer->input_norm, x, B, H, eps, bf16);
        linear_rows(x, xb, &layer->qkv, B, wide, bf16);
        status = layer_attention(&shape, wide, 0, layer->q_norm, layer->k_norm, cos, sin, layer->keys, layer->values,
                                 positions, attn, 0);
        linear_rows(attn, xb, &layer->o, B, delta, bf16);
        add_norm_rows(h, delta, layer->post_norm, x, B, H, eps, bf16);
        linear_rows(x, xb, &layer->gate_up, B, wide, bf16);
#pragma omp parallel for schedule(static) if (B > MAX_MATVEC_ROWS)
        for (int b = 0; b < B; b++) { /* SiLU(gate) x up, rounding after each op like the torch path */
            float *gate = wide + (size_t)b * 2 * inter, *up = gate + inter, *a = act + (size_t)b * inter;
            for (int i = 0; i < inter; i++) a[i] = gate[i] / (1.0f + vexp(-gate[i]));
            round_buffer(a, inter, bf16);
            for (int i = 0; i < inter; i++) a[i] *= up[i];
            round_buffer(a, inter, bf16);
        }
        linear_rows(act, xb, &layer->down, B, delta, bf16);
    }
    if (status == 0) {
        add_norm_rows(h, delta, final_norm, x, B, H, eps, bf16);
        status = lm_head_rows(x, xb, lm_head, B, logits, bf16);
    }
    free(memory);
    return status;
}
