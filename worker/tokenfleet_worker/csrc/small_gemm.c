/* y[M,N] = x[M,K] W[N,K]^T (+ bias) in float32 for the few rows of a CPU decode step.
 *
 * At 1-32 rows a decode step's matrix products are bound by reading W once. oneDNN and MKL read it
 * at 40-65% of the bandwidth a plain reduction reaches on our AMD EPYC VMs; this kernel streams each
 * group of four weight rows once per tile of x rows, with 12 independent accumulators to cover the
 * FMA latency. Needs K % 8 == 0 and N % 4 == 0 (the caller checks); AVX2 + FMA. */
#include <immintrin.h>
#include <stdint.h>

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}

/* rows x-rows (1..3) against the four weight rows at w; writes y[m*N + j], j < 4. */
static inline void tile(const float *x, const float *w, const float *bias, float *y, int64_t rows,
                        int64_t N, int64_t K) {
    __m256 acc[3][4];
    for (int m = 0; m < 3; m++)
        for (int j = 0; j < 4; j++) acc[m][j] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k += 8) {
        __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + K + k);
        __m256 w2 = _mm256_loadu_ps(w + 2 * K + k), w3 = _mm256_loadu_ps(w + 3 * K + k);
        for (int m = 0; m < 3; m++) {
            if (m >= rows) break;
            __m256 xv = _mm256_loadu_ps(x + m * K + k);
            acc[m][0] = _mm256_fmadd_ps(w0, xv, acc[m][0]);
            acc[m][1] = _mm256_fmadd_ps(w1, xv, acc[m][1]);
            acc[m][2] = _mm256_fmadd_ps(w2, xv, acc[m][2]);
            acc[m][3] = _mm256_fmadd_ps(w3, xv, acc[m][3]);
        }
    }
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < 4; j++) y[m * N + j] = hsum(acc[m][j]) + (bias ? bias[j] : 0.0f);
}

/* Specialised copies so the row count is a constant inside the hot loop. */
static void tile3(const float *x, const float *w, const float *b, float *y, int64_t N, int64_t K) {
    tile(x, w, b, y, 3, N, K);
}
static void tile2(const float *x, const float *w, const float *b, float *y, int64_t N, int64_t K) {
    tile(x, w, b, y, 2, N, K);
}
static void tile1(const float *x, const float *w, const float *b, float *y, int64_t N, int64_t K) {
    tile(x, w, b, y, 1, N, K);
}

void small_gemm(const float *x, const float *w, const float *bias, float *y, int64_t M, int64_t N,
                int64_t K, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t n = 0; n < N; n += 4) {
        const float *wn = w + n * K;
        const float *bn = bias ? bias + n : 0;
        int64_t m = 0;
        for (; m + 3 <= M; m += 3) tile3(x + m * K, wn, bn, y + m * N + n, N, K);
        if (M - m == 2) tile2(x + m * K, wn, bn, y + m * N + n, N, K);
        if (M - m == 1) tile1(x + m * K, wn, bn, y + m * N + n, N, K);
    }
}
