#include "common.h"

/* Picking tokens: the row-wise argmax of greedy rows and the filtered draws of sampled rows. */

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

/* ---- sampling: one token per row of logits by the inverse CDF of its filtered distribution ----
 * What the Sampler's torch path does (qwen3/engine/sampler.py: filtered_logits, then sample_rows), one row at a
 * time in a few passes over the vocabulary: divide by the temperature; keep the top_k most likely tokens; then the
 * shortest most-likely prefix of those whose probability reaches top_p; then drop tokens below min_p times the most
 * likely; then walk the kept tokens in ascending id order until their running weight passes the uniform's share of
 * the total (searchsorted, right side). Ties in likelihood go to the lower id. torch needs a sort of the whole
 * vocabulary for top_p without top_k and a cumsum for every draw (timings: docs/benchmarks.md); here
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

/* The length of the shortest most-likely prefix of c[0:n) whose weight reaches need (top_p x the weight of every
 * token the row keeps so far, in c or left out of it as less likely); n when none does. c is reordered so that the
 * prefix comes first. */
static int nucleus_length(Candidate *c, int n, double need) {
    double before = 0.0; /* weight of c[0:lo), all more likely than c[lo:hi) */
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
        double total = 0.0;
        for (int i = 0; i < n; i++) {
            candidates[i].weight = vexp(candidates[i].value - best);
            total += candidates[i].weight;
        }
        if (top_p < 1.0f) n = nucleus_length(candidates, n, top_p * total);
    } else {
        exp_weights(values, V, best, weights);
        if (top_p >= 1.0f) { /* no ordering needed: min_p (the best weighs exp(0) = 1 >= min_p), then the draw */
            if (min_p > 0.0f)
                for (int i = 0; i < V; i++) weights[i] = weights[i] >= min_p ? weights[i] : 0.0f;
            return walk_weights(weights, V, sum_weights(weights, V), uniform);
        }
        double need = top_p * sum_weights(weights, V); /* a share of every token's weight */
        float floor = nucleus_floor(weights, V, need);
        for (int i = 0; i < V; i++)
            if (weights[i] >= floor) candidates[n++] = (Candidate){values[i], weights[i], i};
        n = nucleus_length(candidates, n, need);
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
