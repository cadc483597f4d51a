/* Attention of one query token per sequence over its paged KV context, float32, on the CPU.
 *
 * Reads keys and values where the cache keeps them (block table -> block -> slot) instead of
 * gathering each context into a padded copy first: the gathers and the padded SDPA call were a
 * quarter of a CPU decode step. One task per (sequence, KV head): its query heads share the keys. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static inline float dot(const float *restrict a, const float *restrict b, int64_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* softmax(scores[0..n)) in place */
static void softmax(float *scores, int64_t n) {
    float top = scores[0];
    for (int64_t t = 1; t < n; t++) top = scores[t] > top ? scores[t] : top;
    float total = 0.0f;
    for (int64_t t = 0; t < n; t++) total += (scores[t] = expf(scores[t] - top));
    const float inverse = 1.0f / total;
    for (int64_t t = 0; t < n; t++) scores[t] *= inverse;
}

/* q: [B, H, D] with row stride q_stride (head stride D); caches: [blocks, block_size, Hkv, D]
 * contiguous; tables: [B, table_stride] int64; lens: [B] int64 >= 1; out: [B, H, D] contiguous.
 * Returns 0, or -1 when a task could not get its score buffer. */
int paged_decode_attention(const float *q, int64_t q_stride, const float *k_cache, const float *v_cache,
                           const int64_t *tables, int64_t table_stride, const int64_t *lens, float *out,
                           int64_t B, int64_t H, int64_t Hkv, int64_t D, int64_t block_size, float scale,
                           int threads) {
    const int64_t G = H / Hkv;
    int failed = 0;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t kv = 0; kv < Hkv; kv++) {
            const int64_t n = lens[b];
            const int64_t *table = tables + b * table_stride;
            float *scores = malloc(sizeof(float) * G * n);
            if (!scores) {
                failed = 1;
                continue;
            }
            const float *qh = q + b * q_stride + kv * G * D;
            for (int64_t t = 0; t < n; t++) {
                const float *k = k_cache + ((table[t / block_size] * block_size + t % block_size) * Hkv + kv) * D;
                for (int64_t g = 0; g < G; g++) scores[g * n + t] = dot(qh + g * D, k, D) * scale;
            }
            for (int64_t g = 0; g < G; g++) {
                float *p = scores + g * n;
                float *o = out + (b * H + kv * G + g) * D;
                softmax(p, n);
                for (int64_t i = 0; i < D; i++) o[i] = 0.0f;
                for (int64_t t = 0; t < n; t++) {
                    const float *v = v_cache + ((table[t / block_size] * block_size + t % block_size) * Hkv + kv) * D;
                    const float w = p[t];
#pragma omp simd
                    for (int64_t i = 0; i < D; i++) o[i] += w * v[i];
                }
            }
            free(scores);
        }
    }
    return failed ? -1 : 0;
}
