#include "common.h"

/* ---- fused element-wise steps of a decode layer. They round to the model dtype exactly where the torch ops of
 * the reference layer do (each bf16 op computes in fp32 and rounds), so results match it closely. The loops work
 * on fp32 buffers and are written so the compiler vectorises them. ---- */

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
