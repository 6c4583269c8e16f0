#include "common.h"

/* ---- a bf16 GEMM for decode batches of many rows: out [M, N] = x [M, K] @ W.T ----
 * At 64 rows a decode step's products are compute-bound, and oneDNN's spend ~10 us a call on top of their work at
 * these small shapes. Here the weights are packed once (pack_bf16_pairs) as [N / 16][K / 2][16][2]: per block of 16
 * output columns, the weights of each pair of consecutive k side by side, so one 64-byte load holds a k-pair of 16
 * columns and one AVX512-BF16 dot product (vdpbf16ps) adds x[m, k] w[n, k] + x[m, k + 1] w[n, k + 1] to 16 columns
 * of row m, with x[m, k:k+2] broadcast: no horizontal sums. A tile of 6 rows x 64 columns keeps 24 independent
 * accumulators in registers (enough to hide the dot product's latency on two pipes), and a thread reuses its 64
 * columns' weights for every 6-row tile (its speed against oneDNN's packed linear: docs/benchmarks.md). Sums are
 * fp32 in k order, as oneDNN's; outputs rounded to
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
