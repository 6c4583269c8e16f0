#include "common.h"

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
