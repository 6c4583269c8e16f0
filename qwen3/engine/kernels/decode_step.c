#include "common.h"

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
