/* y[M,N] = x[M,K] W[N,K]^T (+ bias) in float32 for the few rows of a CPU decode step.
 *
 * At 1-32 rows a decode step's matrix products are bound by reading W once, and at 32-64 by the
 * FMAs. W comes in panels: [N/16][K][16], sixteen output columns side by side for each k
 * (`pack_panels` in cpu_kernels.py). A tile keeps R x rows by up to four panels (64 columns) of
 * accumulators: per k it loads the panels' 16 floats each, broadcasts each row's x[m,k], and does
 * R x panels FMAs, with no horizontal sums at the end. Each panel is one long sequential stream
 * for the hardware prefetcher, and the tile prefetches each stream PREFETCH_K steps ahead too.
 * Against the earlier kernel on dense rows (dot products of four weight rows, reduced at the end)
 * this read 6-17% faster at 1-48 rows on weights streamed from memory, and it beats oneDNN's
 * packed GEMM by 20% or more at 32-48 rows there (AVX-512 Xeon, 100M Llama, Nov 2026).
 *
 * Two builds of the same tiling live in this one library and `small_gemm` picks at run time, so a
 * library built on one machine still runs on another: AVX2 + FMA (a panel is two 8-lane registers;
 * tiles of 3 rows by 2 panels: 12 accumulators of the 16 registers) and AVX-512 (6 rows by 4
 * panels: 24 of 32). Needs N % 16 == 0 (the caller checks). */
#include <immintrin.h>
#include <stdint.h>

#define PANEL 16
#define PREFETCH_K 16 /* 1 KiB ahead in each panel's stream */
#define AVX2_ROWS 3
#define AVX2_PANELS 2
#define AVX512_ROWS 6
#define AVX512_PANELS 4

/* One tile: `rows` x rows (row stride K) against the panels at wp (panel stride K * PANEL),
 * writing y[m * N + column]; the bias, when given, is this tile's slice. */
typedef void (*tile_fn)(const float *x, const float *wp, const float *bias, float *y, int64_t N,
                        int64_t K);

static inline __attribute__((always_inline)) void tile256(const float *x, const float *wp,
                                                          const float *bias, float *y, const int rows,
                                                          const int panels, int64_t N, int64_t K) {
    __m256 acc[AVX2_ROWS][2 * AVX2_PANELS];
    const int lanes = 2 * panels;
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < lanes; j++) acc[m][j] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m256 w[2 * AVX2_PANELS];
        for (int p = 0; p < panels; p++) {
            const float *at = wp + p * K * PANEL + k * PANEL;
            _mm_prefetch((const char *)(at + PREFETCH_K * PANEL), _MM_HINT_T0);
            w[2 * p] = _mm256_loadu_ps(at);
            w[2 * p + 1] = _mm256_loadu_ps(at + 8);
        }
        for (int m = 0; m < rows; m++) {
            const __m256 xv = _mm256_broadcast_ss(x + m * K + k);
            for (int j = 0; j < lanes; j++) acc[m][j] = _mm256_fmadd_ps(xv, w[j], acc[m][j]);
        }
    }
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < lanes; j++) {
            __m256 out = bias ? _mm256_add_ps(acc[m][j], _mm256_loadu_ps(bias + 8 * j)) : acc[m][j];
            _mm256_storeu_ps(y + m * N + 8 * j, out);
        }
}

static inline __attribute__((always_inline, target("avx512f"))) void tile512(
    const float *x, const float *wp, const float *bias, float *y, const int rows, const int panels,
    int64_t N, int64_t K) {
    __m512 acc[AVX512_ROWS][AVX512_PANELS];
    for (int m = 0; m < rows; m++)
        for (int p = 0; p < panels; p++) acc[m][p] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 w[AVX512_PANELS];
        for (int p = 0; p < panels; p++) {
            const float *at = wp + p * K * PANEL + k * PANEL;
            _mm_prefetch((const char *)(at + PREFETCH_K * PANEL), _MM_HINT_T0);
            w[p] = _mm512_loadu_ps(at);
        }
        for (int m = 0; m < rows; m++) {
            const __m512 xv = _mm512_set1_ps(x[m * K + k]);
            for (int p = 0; p < panels; p++) acc[m][p] = _mm512_fmadd_ps(xv, w[p], acc[m][p]);
        }
    }
    for (int m = 0; m < rows; m++)
        for (int p = 0; p < panels; p++) {
            __m512 out = bias ? _mm512_add_ps(acc[m][p], _mm512_loadu_ps(bias + PANEL * p)) : acc[m][p];
            _mm512_storeu_ps(y + m * N + PANEL * p, out);
        }
}

/* Copies with the row and panel counts constant inside the hot loop. */
#define AVX2_TILE(r, p)                                                                            \
    static void avx2_tile##r##_##p(const float *x, const float *wp, const float *b, float *y,      \
                                   int64_t N, int64_t K) {                                         \
        tile256(x, wp, b, y, r, p, N, K);                                                          \
    }
#define AVX512_TILE(r, p)                                                                          \
    __attribute__((target("avx512f"))) static void avx512_tile##r##_##p(                            \
        const float *x, const float *wp, const float *b, float *y, int64_t N, int64_t K) {         \
        tile512(x, wp, b, y, r, p, N, K);                                                          \
    }
#define AVX512_ROW(r) AVX512_TILE(r, 1) AVX512_TILE(r, 2) AVX512_TILE(r, 3) AVX512_TILE(r, 4)
AVX2_TILE(1, 1) AVX2_TILE(1, 2) AVX2_TILE(2, 1) AVX2_TILE(2, 2) AVX2_TILE(3, 1) AVX2_TILE(3, 2)
AVX512_ROW(1) AVX512_ROW(2) AVX512_ROW(3) AVX512_ROW(4) AVX512_ROW(5) AVX512_ROW(6)

/* [rows][panels], both from 1 */
static const tile_fn AVX2_TILES[AVX2_ROWS + 1][AVX2_PANELS + 1] = {
    {0}, {0, avx2_tile1_1, avx2_tile1_2}, {0, avx2_tile2_1, avx2_tile2_2}, {0, avx2_tile3_1, avx2_tile3_2}};
#define AVX512_TILES_OF(r) {0, avx512_tile##r##_1, avx512_tile##r##_2, avx512_tile##r##_3, avx512_tile##r##_4}
static const tile_fn AVX512_TILES[AVX512_ROWS + 1][AVX512_PANELS + 1] = {
    {0}, AVX512_TILES_OF(1), AVX512_TILES_OF(2), AVX512_TILES_OF(3),
    AVX512_TILES_OF(4), AVX512_TILES_OF(5), AVX512_TILES_OF(6)};

/* Threads split the column groups; every group runs all its row tiles back to back, so its
 * panels are read from memory once and from cache after. */
static void tiled_gemm(const tile_fn *tiles, int64_t tile_rows, int64_t tile_panels, const float *x,
                       const float *wp, const float *bias, float *y, int64_t M, int64_t N, int64_t K,
                       int threads) {
    const int64_t group = tile_panels * PANEL;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t n = 0; n < N; n += group) {
        const int64_t panels = (N - n < group ? N - n : group) / PANEL;
        const float *w = wp + n * K;
        const float *b = bias ? bias + n : 0;
        for (int64_t m = 0; m < M; m += tile_rows) {
            const int64_t rows = M - m < tile_rows ? M - m : tile_rows;
            tiles[rows * (tile_panels + 1) + panels](x + m * K, w, b, y + m * N + n, N, K);
        }
    }
}

void small_gemm_avx2(const float *x, const float *wp, const float *bias, float *y, int64_t M, int64_t N,
                     int64_t K, int threads) {
    tiled_gemm(&AVX2_TILES[0][0], AVX2_ROWS, AVX2_PANELS, x, wp, bias, y, M, N, K, threads);
}

/* Only on a CPU with AVX-512F (`has_avx512`). */
void small_gemm_avx512(const float *x, const float *wp, const float *bias, float *y, int64_t M,
                       int64_t N, int64_t K, int threads) {
    tiled_gemm(&AVX512_TILES[0][0], AVX512_ROWS, AVX512_PANELS, x, wp, bias, y, M, N, K, threads);
}

int has_avx512(void) { return __builtin_cpu_supports("avx512f"); }

void small_gemm(const float *x, const float *wp, const float *bias, float *y, int64_t M, int64_t N,
                int64_t K, int threads) {
    (has_avx512() ? small_gemm_avx512 : small_gemm_avx2)(x, wp, bias, y, M, N, K, threads);
}
