#include "common.h"

/* Decode attention: one new query per sequence against its cached keys and values. */

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

#if defined(__AVX512F__)
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
