/* The CPU twins of fused_kernels.py, float32: the small elementwise ops of a layer in three calls.
 *
 * At decode batch sizes each torch op here touches a few KiB and costs its dispatch, not its
 * memory traffic; a layer ran ~20 of them (residual adds, two RMSNorms of ~6 ops each, rotary
 * embedding, two cache writes, SiLU and mul). Results agree with the torch ops up to the order of a
 * float32 sum and FMA contraction. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "vector_exp.h"

/* out = rmsnorm(x + residual) * weight, with x + residual written back into residual (which then
 * holds the new residual stream); residual may be NULL (the stream starts at x). Rows contiguous. */
void add_rms_norm(const float *x, float *residual, const float *weight, float *out, int64_t rows,
                  int64_t size, float eps, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (rows >= 8)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * size;
        float *rr = residual ? residual + r * size : 0;
        const float *source = rr ? rr : xr;
        float squares = 0.0f;
        if (rr) {
#pragma omp simd
            for (int64_t i = 0; i < size; i++) rr[i] += xr[i];
        }
#pragma omp simd reduction(+ : squares)
        for (int64_t i = 0; i < size; i++) squares += source[i] * source[i];
        const float rstd = 1.0f / sqrtf(squares / (float)size + eps);
        float *o = out + r * size;
#pragma omp simd
        for (int64_t i = 0; i < size; i++) o[i] = source[i] * rstd * weight[i];
    }
}

/* silu(g) = g * sigmoid(g) on eight floats. sigmoid from e = e^-|g| (never overflows):
 * 1 / (1 + e) for g >= 0, e / (1 + e) below. Without -ffast-math the scalar expf in a
 * `omp simd` loop stays one call per element, which made this op ~4 ns an element. */
static inline __m256 silu8(__m256 g) {
    const __m256 magnitude = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), g);
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_setzero_ps(), magnitude));
    const __m256 numerator = _mm256_blendv_ps(_mm256_set1_ps(1.0f), e, _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_LT_OQ));
    return _mm256_mul_ps(g, _mm256_div_ps(numerator, _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
}

/* out[r, i] = silu(x[r, i]) * x[r, size + i]: SwiGLU on the fused gate/up projection. */
void silu_mul(const float *x, float *out, int64_t rows, int64_t size, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (rows * size >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        const float *gate = x + r * 2 * size;
        const float *up = gate + size;
        float *o = out + r * size;
        int64_t i = 0;
        for (; i + 8 <= size; i += 8)
            _mm256_storeu_ps(o + i, _mm256_mul_ps(silu8(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
        for (; i < size; i++) o[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
    }
}

/* Rotates the query and key heads of each token's q/k/v row in place (x * cos + roll(x) * signed
 * sin, rotate_half's sign folded into the sine as in rope.py), then copies its keys and values into
 * cache slot slots[t]. qkv: [tokens, row_stride] holding H query, Hkv key, Hkv value heads of D;
 * cos, sin: [tokens, D]; caches: [slots, Hkv, D] contiguous. */
void rope_and_cache(float *qkv, int64_t row_stride, const float *cos, const float *sin,
                    const int64_t *slots, float *k_cache, float *v_cache, int64_t tokens, int64_t H,
                    int64_t Hkv, int64_t D, int threads) {
    const int64_t half = D / 2;
#pragma omp parallel for schedule(static) num_threads(threads) if (tokens >= 16)
    for (int64_t t = 0; t < tokens; t++) {
        float *row = qkv + t * row_stride;
        const float *c = cos + t * D, *s = sin + t * D;
        float head[D];
        for (int64_t h = 0; h < H + Hkv; h++) {
            float *x = row + h * D;
            memcpy(head, x, sizeof(float) * D);
#pragma omp simd
            for (int64_t i = 0; i < half; i++) x[i] = head[i] * c[i] + head[i + half] * s[i];
#pragma omp simd
            for (int64_t i = half; i < D; i++) x[i] = head[i] * c[i] + head[i - half] * s[i];
        }
        memcpy(k_cache + slots[t] * Hkv * D, row + H * D, sizeof(float) * Hkv * D);
        memcpy(v_cache + slots[t] * Hkv * D, row + (H + Hkv) * D, sizeof(float) * Hkv * D);
    }
}
