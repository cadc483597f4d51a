/* Attention of one query token per sequence over its paged KV context, float32, on the CPU.
 *
 * Reads keys and values where the cache keeps them (block table -> block -> slot) instead of
 * gathering each context into a padded copy first: the gathers and the padded SDPA call were a
 * quarter of a CPU decode step. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "vector_exp.h"

/* D % 8 == 0 (the caller checks). Intrinsics rather than `omp simd`: with D known only at run time
 * the compiler's peeled, multi-width loops cost more than the arithmetic on 64-wide heads. */
static inline float dot(const float *a, const float *b, int64_t D) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= D; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    if (i < D) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_hadd_ps(h, h);
    return _mm_cvtss_f32(_mm_hadd_ps(h, h));
}

/* o[0..D) = sum over positions t < n of p[t] * v_t, where v_t sits at `offset` in t's cache slot.
 * Accumulates 32 floats at a time in registers across all positions (an accumulator in memory
 * updated per position was bound by its stores). */
static void weighted_sum(const float *p, const float *v_cache, const int64_t *table, int64_t n,
                         int64_t block_size, int64_t row, int64_t offset, int64_t D, float *o) {
    int64_t i = 0;
    for (; i + 32 <= D; i += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t start = 0; start < n; start += block_size) {
            const float *v = v_cache + table[start / block_size] * block_size * row + offset + i;
            const int64_t end = n - start < block_size ? n : start + block_size;
            for (int64_t t = start; t < end; t++, v += row) {
                const __m256 w = _mm256_broadcast_ss(p + t);
                a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8), a1);
                a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 16), a2);
                a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 24), a3);
            }
        }
        _mm256_storeu_ps(o + i, a0);
        _mm256_storeu_ps(o + i + 8, a1);
        _mm256_storeu_ps(o + i + 16, a2);
        _mm256_storeu_ps(o + i + 24, a3);
    }
    for (; i < D; i += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int64_t start = 0; start < n; start += block_size) {
            const float *v = v_cache + table[start / block_size] * block_size * row + offset + i;
            const int64_t end = n - start < block_size ? n : start + block_size;
            for (int64_t t = start; t < end; t++, v += row)
                a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + t), _mm256_loadu_ps(v), a);
        }
        _mm256_storeu_ps(o + i, a);
    }
}

/* softmax(scores[0..n)) in place */
static void softmax(float *scores, int64_t n) {
    float top = scores[0];
    for (int64_t t = 1; t < n; t++) top = scores[t] > top ? scores[t] : top;
    const __m256 shift = _mm256_set1_ps(top);
    __m256 sums = _mm256_setzero_ps();
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) {
        const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(scores + t), shift));
        _mm256_storeu_ps(scores + t, e);
        sums = _mm256_add_ps(sums, e);
    }
    float total = 0.0f;
    for (; t < n; t++) total += (scores[t] = expf(scores[t] - top));
    float lanes[8];
    _mm256_storeu_ps(lanes, sums);
    for (int i = 0; i < 8; i++) total += lanes[i];
    const float inverse = 1.0f / total;
    for (t = 0; t < n; t++) scores[t] *= inverse;
}

/* q: [B, H, D] with row stride q_stride (head stride D); caches: [blocks, block_size, Hkv, D]
 * contiguous; tables: [B, table_stride] int64; lens: [B] int64 >= 1; out: [B, H, D] contiguous;
 * D % 8 == 0. Returns 0; -1 when a task could not get its buffers; -2, before reading anything, when
 * a context length is outside [1, table_stride * block_size] (the kernel would read past its table).
 *
 * One task per sequence, reading each cache slot's heads together: a slot's Hkv * D floats are
 * contiguous, and a task per (sequence, KV head) reading a strided quarter of each slot stalled on
 * cache misses (measured 4x slower). With fewer sequences than threads a sequence's KV heads are
 * split into as many contiguous groups as keep every thread busy: batch-1 decode otherwise
 * attended on one core. Blocks are walked one by one: a 64-bit division per position cost as much
 * as the dot products. */
int paged_decode_attention(const float *q, int64_t q_stride, const float *k_cache, const float *v_cache,
                           const int64_t *tables, int64_t table_stride, const int64_t *lens, float *out,
                           int64_t B, int64_t H, int64_t Hkv, int64_t D, int64_t block_size, float scale,
                           int threads) {
    const int64_t G = H / Hkv;
    const int64_t row = Hkv * D; /* floats in one cache slot */
    for (int64_t b = 0; b < B; b++)
        if (lens[b] < 1 || lens[b] > table_stride * block_size) return -2;
    const int64_t wanted = B < threads ? threads / B : 1;
    const int64_t splits = wanted < Hkv ? wanted : Hkv;
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t task = 0; task < B * splits; task++) {
        const int64_t b = task / splits, part = task % splits;
        const int64_t kv_lo = part * Hkv / splits, kv_hi = (part + 1) * Hkv / splits;
        const int64_t h_lo = kv_lo * G, heads = (kv_hi - kv_lo) * G;
        const int64_t n = lens[b];
        const int64_t *table = tables + b * table_stride;
        const float *qb = q + b * q_stride + h_lo * D;
        float *scores = malloc(sizeof(float) * heads * n); /* [heads, n], from head h_lo on */
        if (!scores) {
            failed = 1;
            continue;
        }
        for (int64_t start = 0; start < n; start += block_size) {
            const float *k = k_cache + table[start / block_size] * block_size * row + kv_lo * D;
            const int64_t count = n - start < block_size ? n - start : block_size;
            for (int64_t t = start; t < start + count; t++, k += row)
                for (int64_t kv = 0, h = 0; kv < kv_hi - kv_lo; kv++)
                    for (int64_t g = 0; g < G; g++, h++) scores[h * n + t] = dot(qb + h * D, k + kv * D, D) * scale;
        }
        for (int64_t h = 0; h < heads; h++) softmax(scores + h * n, n);
        for (int64_t h = 0; h < heads; h++)
            weighted_sum(scores + h * n, v_cache, table, n, block_size, row, ((h_lo + h) / G) * D, D,
                         out + (b * H + h_lo + h) * D);
        free(scores);
    }
    return failed ? -1 : 0;
}
