#include "common.h"

/* woq_int8_matmul: y[m, n] = scale[n] * sum_k x[m, k] * w[n, k], weight-only int8 with per-output-channel scales,
 * x fp32 [M, K] (M <= 8: decode batches), y fp32 or bf16 [M, N]. Each weight row is converted to fp32 once and used
 * for all M rows of x, so the kernel streams the int8 weights at memory speed. */

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
