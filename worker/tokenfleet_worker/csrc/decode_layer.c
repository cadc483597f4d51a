/* One decoder layer of a CPU decode step in one call: the other kernels of this library, in order.
 *
 * Called op by op from Python, a batch-1 step of a 100M model spent ~3.5 ms of ~19 outside its
 * matrix products (which stream the weights at the measured bandwidth): nine calls a layer, each
 * with its wrapper, its checks and its fresh output tensor, and the interpreter running from
 * caches the products had just swept. Here a layer is one call with its buffers reused. */
#include <stdint.h>

void small_gemm(const float *x, const float *wp, const float *bias, float *y, int64_t M, int64_t N,
                int64_t K, int threads);
void add_rms_norm(const float *x, float *residual, const float *weight, float *out, int64_t rows,
                  int64_t size, float eps, int threads);
void silu_mul(const float *x, float *out, int64_t rows, int64_t size, int threads);
void rope_and_cache(float *qkv, int64_t row_stride, const float *cos, const float *sin,
                    const int64_t *slots, float *k_cache, float *v_cache, int64_t tokens, int64_t H,
                    int64_t Hkv, int64_t D, int threads);
int paged_decode_attention(const float *q, int64_t q_stride, const float *k_cache, const float *v_cache,
                           const int64_t *tables, int64_t table_stride, const int64_t *lens, float *out,
                           int64_t B, int64_t H, int64_t Hkv, int64_t D, int64_t block_size, float scale,
                           int threads);

/* What stays the same from step to step: weights in the product kernel's panels, biases (NULL when
 * absent), norm weights, shapes, and the layer's KV cache ([blocks, block_size, Hkv, D] each). */
typedef struct {
    const float *qkv, *qkv_bias, *o, *o_bias, *gate_up, *down;
    const float *input_norm, *post_norm;
    float *k_cache, *v_cache;
    int64_t hidden, intermediate, heads, kv_heads, head_dim, block_size;
    float eps, scale;
} layer_plan;

/* T single-token decodes. x: [T, hidden], the previous layer's output (or the embeddings);
 * residual: [T, hidden], the residual stream, or NULL on the first layer, where the stream is x
 * (and x is then updated in place, as the op-by-op path does). Writes the MLP's output to out
 * [T, hidden]. scratch: `decode_layer_scratch(plan, T)` floats. cos, sin: [T, head_dim]; slots: [T];
 * tables: [T, table_stride]; lens: [T]. Returns paged_decode_attention's status. */
int decode_layer(const layer_plan *p, float *x, float *residual, float *out, float *scratch,
                 const float *cos, const float *sin, const int64_t *slots, const int64_t *tables,
                 int64_t table_stride, const int64_t *lens, int64_t T, int threads) {
    const int64_t H = p->heads, Hkv = p->kv_heads, D = p->head_dim;
    const int64_t qkv_size = (H + 2 * Hkv) * D, q_size = H * D;
    float *normed = scratch;                         /* [T, hidden] */
    float *qkv = normed + T * p->hidden;             /* [T, qkv_size] */
    float *attended = qkv + T * qkv_size;            /* [T, q_size] */
    float *projected = attended + T * q_size;        /* [T, hidden] */
    float *gate_up = projected + T * p->hidden;      /* [T, 2 * intermediate] */
    float *activated = gate_up + T * 2 * p->intermediate; /* [T, intermediate] */
    float *stream = residual ? residual : x;

    add_rms_norm(x, residual, p->input_norm, normed, T, p->hidden, p->eps, threads);
    small_gemm(normed, p->qkv, p->qkv_bias, qkv, T, qkv_size, p->hidden, threads);
    rope_and_cache(qkv, qkv_size, cos, sin, slots, p->k_cache, p->v_cache, T, H, Hkv, D, threads);
    int status = paged_decode_attention(qkv, qkv_size, p->k_cache, p->v_cache, tables, table_stride, lens,
                                        attended, T, H, Hkv, D, p->block_size, p->scale, threads);
    if (status) return status;
    small_gemm(attended, p->o, p->o_bias, projected, T, p->hidden, q_size, threads);
    add_rms_norm(projected, stream, p->post_norm, normed, T, p->hidden, p->eps, threads);
    small_gemm(normed, p->gate_up, 0, gate_up, T, 2 * p->intermediate, p->hidden, threads);
    silu_mul(gate_up, activated, T, p->intermediate, threads);
    small_gemm(activated, p->down, 0, out, T, p->hidden, p->intermediate, threads);
    return 0;
}

int64_t decode_layer_scratch(const layer_plan *p, int64_t T) {
    const int64_t qkv_size = (p->heads + 2 * p->kv_heads) * p->head_dim;
    return T * (2 * p->hidden + qkv_size + p->heads * p->head_dim + 3 * p->intermediate);
}
