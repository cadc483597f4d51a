/* y[M,N] = x[M,K] W[N,K]^T (+ bias) in float32 for the few rows of a CPU decode step.
 *
 * At 1-32 rows a decode step's matrix products are bound by reading W once. oneDNN and MKL read it
 * at 40-65% of the bandwidth a plain reduction reaches on our AMD EPYC VMs; this kernel streams each
 * group of four weight rows once per tile of x rows, with enough independent accumulators to cover
 * the FMA latency, and prefetches the next group while it works on this one (the hardware
 * prefetcher sees four short streams per tile, not one long one). Needs K % 8 == 0 and N % 4 == 0
 * (the caller checks).
 *
 * Two builds of the same tiling live in this one library and `small_gemm` picks at run time, so a
 * library built on one machine still runs on another: AVX2 + FMA (8 lanes, tiles of up to 3 x rows:
 * 12 accumulators of the 16 registers) and AVX-512 (16 lanes, up to 6 rows: 24 of 32). On an
 * AVX-512 Xeon with weights streamed from memory the wider build read 21-23 GB/s at 1-4 rows
 * against 14-18 for the AVX2 one and 12-19 for oneDNN, whose lead from cache-resident timings
 * (where its 16-wide GEMM won from 3-4 rows on) does not survive weights that come from DRAM. */
#include <immintrin.h>
#include <stdint.h>

#define WEIGHT_ROWS 4
#define AVX2_ROWS 3
#define AVX512_ROWS 6

/* One tile: `rows` x rows against the WEIGHT_ROWS weight rows at w, writing y[m*N + j], j < 4;
 * `next`, when set, is the next tile's weight rows, fetched into cache along the way. */
typedef void (*tile_fn)(const float *x, const float *w, const float *bias, float *y, int64_t N,
                        int64_t K, const float *next);

/* A macro: GCC 12 at -O3 emitted none of these prefetches from an inline helper function. */
#define PREFETCH_ROWS(next, K, k)                                                                  \
    do {                                                                                           \
        if (next) {                                                                                \
            _mm_prefetch((const char *)((next) + (k)), _MM_HINT_T0);                               \
            _mm_prefetch((const char *)((next) + (K) + (k)), _MM_HINT_T0);                         \
            _mm_prefetch((const char *)((next) + 2 * (K) + (k)), _MM_HINT_T0);                     \
            _mm_prefetch((const char *)((next) + 3 * (K) + (k)), _MM_HINT_T0);                     \
        }                                                                                          \
    } while (0)

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) void tile256(const float *x, const float *w,
                                                          const float *bias, float *y, const int rows,
                                                          int64_t N, int64_t K, const float *next) {
    __m256 acc[AVX2_ROWS][WEIGHT_ROWS];
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < WEIGHT_ROWS; j++) acc[m][j] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k += 8) {
        PREFETCH_ROWS(next, K, k);
        __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + K + k);
        __m256 w2 = _mm256_loadu_ps(w + 2 * K + k), w3 = _mm256_loadu_ps(w + 3 * K + k);
        for (int m = 0; m < rows; m++) {
            __m256 xv = _mm256_loadu_ps(x + m * K + k);
            acc[m][0] = _mm256_fmadd_ps(w0, xv, acc[m][0]);
            acc[m][1] = _mm256_fmadd_ps(w1, xv, acc[m][1]);
            acc[m][2] = _mm256_fmadd_ps(w2, xv, acc[m][2]);
            acc[m][3] = _mm256_fmadd_ps(w3, xv, acc[m][3]);
        }
    }
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < WEIGHT_ROWS; j++) y[m * N + j] = hsum256(acc[m][j]) + (bias ? bias[j] : 0.0f);
}

/* The AVX-512 tile: 16 lanes a step and a masked half step when K % 16 == 8. */
#define AVX512_STEP(load, k)                                                                       \
    do {                                                                                           \
        __m512 w0 = load(w + (k)), w1 = load(w + K + (k));                                        \
        __m512 w2 = load(w + 2 * K + (k)), w3 = load(w + 3 * K + (k));                            \
        for (int m = 0; m < rows; m++) {                                                           \
            __m512 xv = load(x + m * K + (k));                                                     \
            acc[m][0] = _mm512_fmadd_ps(w0, xv, acc[m][0]);                                        \
            acc[m][1] = _mm512_fmadd_ps(w1, xv, acc[m][1]);                                        \
            acc[m][2] = _mm512_fmadd_ps(w2, xv, acc[m][2]);                                        \
            acc[m][3] = _mm512_fmadd_ps(w3, xv, acc[m][3]);                                        \
        }                                                                                          \
    } while (0)
#define LOAD_HALF(p) _mm512_maskz_loadu_ps((__mmask16)0x00FF, (p))

static inline __attribute__((always_inline, target("avx512f"))) void tile512(
    const float *x, const float *w, const float *bias, float *y, const int rows, int64_t N, int64_t K,
    const float *next) {
    __m512 acc[AVX512_ROWS][WEIGHT_ROWS];
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < WEIGHT_ROWS; j++) acc[m][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        PREFETCH_ROWS(next, K, k);
        AVX512_STEP(_mm512_loadu_ps, k);
    }
    if (k < K) AVX512_STEP(LOAD_HALF, k);
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < WEIGHT_ROWS; j++)
            y[m * N + j] = _mm512_reduce_add_ps(acc[m][j]) + (bias ? bias[j] : 0.0f);
}

/* Copies with the row count a constant inside the hot loop. */
#define AVX2_TILE(r)                                                                               \
    static void avx2_tile##r(const float *x, const float *w, const float *b, float *y, int64_t N,  \
                             int64_t K, const float *next) {                                       \
        tile256(x, w, b, y, r, N, K, next);                                                        \
    }
#define AVX512_TILE(r)                                                                             \
    __attribute__((target("avx512f"))) static void avx512_tile##r(                                 \
        const float *x, const float *w, const float *b, float *y, int64_t N, int64_t K,            \
        const float *next) {                                                                       \
        tile512(x, w, b, y, r, N, K, next);                                                        \
    }
AVX2_TILE(1) AVX2_TILE(2) AVX2_TILE(3)
AVX512_TILE(1) AVX512_TILE(2) AVX512_TILE(3) AVX512_TILE(4) AVX512_TILE(5) AVX512_TILE(6)
static const tile_fn AVX2_TILES[AVX2_ROWS + 1] = {0, avx2_tile1, avx2_tile2, avx2_tile3};
static const tile_fn AVX512_TILES[AVX512_ROWS + 1] = {
    0, avx512_tile1, avx512_tile2, avx512_tile3, avx512_tile4, avx512_tile5, avx512_tile6};

static void tiled_gemm(const tile_fn *tiles, int64_t tile_rows, const float *x, const float *w,
                       const float *bias, float *y, int64_t M, int64_t N, int64_t K, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t n = 0; n < N; n += WEIGHT_ROWS) {
        const float *wn = w + n * K;
        const float *next = n + WEIGHT_ROWS < N ? wn + WEIGHT_ROWS * K : 0;
        const float *bn = bias ? bias + n : 0;
        for (int64_t m = 0; m < M; m += tile_rows) {
            int64_t rows = M - m < tile_rows ? M - m : tile_rows;
            // Only the first pass over these weight rows reads memory; later ones hit L1.
            tiles[rows](x + m * K, wn, bn, y + m * N + n, N, K, m == 0 ? next : 0);
        }
    }
}

void small_gemm_avx2(const float *x, const float *w, const float *bias, float *y, int64_t M, int64_t N,
                     int64_t K, int threads) {
    tiled_gemm(AVX2_TILES, AVX2_ROWS, x, w, bias, y, M, N, K, threads);
}

/* Only on a CPU with AVX-512F (`has_avx512`). */
void small_gemm_avx512(const float *x, const float *w, const float *bias, float *y, int64_t M,
                       int64_t N, int64_t K, int threads) {
    tiled_gemm(AVX512_TILES, AVX512_ROWS, x, w, bias, y, M, N, K, threads);
}

int has_avx512(void) { return __builtin_cpu_supports("avx512f"); }

void small_gemm(const float *x, const float *w, const float *bias, float *y, int64_t M, int64_t N,
                int64_t K, int threads) {
    (has_avx512() ? small_gemm_avx512 : small_gemm_avx2)(x, w, bias, y, M, N, K, threads);
}
