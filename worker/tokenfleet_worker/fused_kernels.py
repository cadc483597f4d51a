"""Triton kernels that fuse the small elementwise ops of a decode step (CUDA decode graphs).

Profiled on an H100 (1B model, batch 32, graph-replayed step): a layer ran 15 kernels, and the
eleven that are not matrix products or attention took a third of the GPU time — each one reads
and writes a few KiB, so its cost is its fixed start-up, not memory traffic. Three kernels replace
eight per layer:

- `add_rms_norm`: the residual add and the following RMSNorm (twice per layer);
- `rope_and_cache`: rotary embedding of queries and keys, and the write of the keys and values
  into their cache slots (was mul, roll, addcmul and two index_copy);
- `silu_mul`: the SwiGLU activation (was silu and mul).

Each rounds where the torch ops it replaces round, so bfloat16 results agree with them up to the
order of a float32 sum. Like paged_attention.py they run in Triton's interpreter on CPU tensors
when TRITON_INTERPRET=1 is set before triton is imported.
"""

from __future__ import annotations

from typing import Any

import torch

SILU_BLOCK = 1024  # intermediate features per program of silu_mul


def next_power_of_two(value: int) -> int:
    return 1 << (value - 1).bit_length()


def _kernels() -> dict[str, Any]:
    """Compile-on-first-use, as in paged_attention.py."""
    if _COMPILED:
        return _COMPILED
    import triton
    import triton.language as tl

    @triton.jit
    def add_rms_norm_kernel(  # type: ignore[no-untyped-def]  # Triton reads only tl.constexpr annotations
        x_ptr,
        residual_ptr,
        weight_ptr,
        out_ptr,
        stride_row,
        eps,
        SIZE: tl.constexpr,
        BLOCK: tl.constexpr,
        HAS_RESIDUAL: tl.constexpr,
    ):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        inside = cols < SIZE
        x = tl.load(x_ptr + row * stride_row + cols, mask=inside, other=0.0)
        if HAS_RESIDUAL:
            residual = tl.load(residual_ptr + row * stride_row + cols, mask=inside, other=0.0)
            x = (x.to(tl.float32) + residual.to(tl.float32)).to(x.dtype)  # rounded, as torch's add
            tl.store(residual_ptr + row * stride_row + cols, x, mask=inside)
        value = x.to(tl.float32)
        rstd = 1.0 / tl.sqrt(tl.sum(value * value, 0) / SIZE + eps)
        weight = tl.load(weight_ptr + cols, mask=inside, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * stride_row + cols, (value * rstd * weight).to(x.dtype), mask=inside)

    @triton.jit
    def rope_and_cache_kernel(  # type: ignore[no-untyped-def]
        qkv_ptr,
        cos_ptr,
        sin_ptr,
        slots_ptr,
        q_ptr,
        k_cache_ptr,
        v_cache_ptr,
        stride_token,
        stride_angle,
        stride_q,
        stride_slot,
        NUM_HEADS: tl.constexpr,
        NUM_KV_HEADS: tl.constexpr,
        HEAD_DIM: tl.constexpr,
        ROTATED_PAD: tl.constexpr,
        KV_PAD: tl.constexpr,
    ):
        token = tl.program_id(0)
        heads = tl.arange(0, ROTATED_PAD)  # query heads, then key heads
        dims = tl.arange(0, HEAD_DIM)
        is_head = (heads < NUM_HEADS + NUM_KV_HEADS)[:, None]
        base = qkv_ptr + token * stride_token
        x = tl.load(base + heads[:, None] * HEAD_DIM + dims[None, :], mask=is_head, other=0.0)
        half_turn = (dims + HEAD_DIM // 2) % HEAD_DIM
        rolled = tl.load(base + heads[:, None] * HEAD_DIM + half_turn[None, :], mask=is_head, other=0.0)
        cos = tl.load(cos_ptr + token * stride_angle + dims).to(tl.float32)
        sin = tl.load(sin_ptr + token * stride_angle + dims).to(tl.float32)
        # torch: addcmul(x * cos, roll(x), signed_sin), the product rounded before the add.
        scaled = (x.to(tl.float32) * cos[None, :]).to(x.dtype).to(tl.float32)
        out = (scaled + rolled.to(tl.float32) * sin[None, :]).to(x.dtype)
        # Out of place: rotating within qkv would race, one warp's store against another's load.
        is_query = is_head & (heads < NUM_HEADS)[:, None]
        tl.store(q_ptr + token * stride_q + heads[:, None] * HEAD_DIM + dims[None, :], out, mask=is_query)
        slot = tl.load(slots_ptr + token).to(tl.int64)
        is_key = is_head & (heads >= NUM_HEADS)[:, None]
        key_heads = heads - NUM_HEADS
        tl.store(
            k_cache_ptr + slot * stride_slot + key_heads[:, None] * HEAD_DIM + dims[None, :], out, mask=is_key
        )
        kv = tl.arange(0, KV_PAD)
        is_kv = (kv < NUM_KV_HEADS)[:, None]
        value_base = base + (NUM_HEADS + NUM_KV_HEADS) * HEAD_DIM
        values = tl.load(value_base + kv[:, None] * HEAD_DIM + dims[None, :], mask=is_kv, other=0.0)
        tl.store(
            v_cache_ptr + slot * stride_slot + kv[:, None] * HEAD_DIM + dims[None, :], values, mask=is_kv
        )

    @triton.jit
    def silu_mul_kernel(  # type: ignore[no-untyped-def]
        x_ptr,
        out_ptr,
        stride_x,
        stride_out,
        SIZE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = cols < SIZE
        gate = tl.load(x_ptr + row * stride_x + cols, mask=inside, other=0.0)
        up = tl.load(x_ptr + row * stride_x + SIZE + cols, mask=inside, other=0.0)
        g = gate.to(tl.float32)
        activated = (g / (1.0 + tl.exp(-g))).to(gate.dtype)  # rounded, as torch's silu
        out = (activated.to(tl.float32) * up.to(tl.float32)).to(gate.dtype)
        tl.store(out_ptr + row * stride_out + cols, out, mask=inside)

    _COMPILED.update(
        add_rms_norm=add_rms_norm_kernel, rope_and_cache=rope_and_cache_kernel, silu_mul=silu_mul_kernel
    )
    return _COMPILED


_COMPILED: dict[str, Any] = {}


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> torch.Tensor:
    """RMSNorm of `x + residual` (of `x` alone when residual is None); [tokens, hidden], contiguous.

    The sum is written back into `residual`, which then holds the new residual stream.
    """
    if not x.is_contiguous() or (residual is not None and not residual.is_contiguous()):
        raise ValueError("add_rms_norm needs contiguous inputs")
    out = torch.empty_like(x)
    size = x.shape[-1]
    _kernels()["add_rms_norm"][(x.shape[0],)](
        x,
        residual if residual is not None else x,
        weight,
        out,
        x.stride(0),
        eps,
        SIZE=size,
        BLOCK=next_power_of_two(size),
        HAS_RESIDUAL=residual is not None,
    )
    return out


def rope_and_cache(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    signed_sin: torch.Tensor,
    slot_mapping: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    num_heads: int,
) -> torch.Tensor:
    """Rotate the queries and keys of `qkv` [tokens, (heads + 2 * kv_heads) * head_dim], write keys
    and values to their slots of the caches [blocks, block_size, kv_heads, head_dim], and return
    the rotated queries [tokens, heads, head_dim].

    cos and signed_sin: [tokens, 1, head_dim] as `DecoderModel.rope` returns them.
    """
    _, _, num_kv_heads, head_dim = k_cache.shape
    if qkv.stride(1) != 1 or not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError("rope_and_cache needs a row-contiguous qkv and contiguous caches")
    if qkv.shape[1] != (num_heads + 2 * num_kv_heads) * head_dim:
        raise ValueError(f"qkv has {qkv.shape[1]} features, not (heads + 2 * kv_heads) * head_dim")
    if head_dim & (head_dim - 1) or cos.stride() != signed_sin.stride() or cos.stride(-1) != 1:
        raise ValueError("rope_and_cache needs a power-of-two head_dim and cos, sin of one contiguous layout")
    q = qkv.new_empty((qkv.shape[0], num_heads, head_dim))
    _kernels()["rope_and_cache"][(qkv.shape[0],)](
        qkv,
        cos,
        signed_sin,
        slot_mapping,
        q,
        k_cache,
        v_cache,
        qkv.stride(0),
        cos.stride(0),
        q.stride(0),
        k_cache.stride(1),
        NUM_HEADS=num_heads,
        NUM_KV_HEADS=num_kv_heads,
        HEAD_DIM=head_dim,
        ROTATED_PAD=next_power_of_two(num_heads + num_kv_heads),
        KV_PAD=next_power_of_two(num_kv_heads),
    )
    return q


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of `gate_up` [tokens, 2 * intermediate] (gate first), as [tokens, intermediate]."""
    if gate_up.stride(1) != 1:
        raise ValueError("silu_mul needs a row-contiguous input")
    tokens, size = gate_up.shape[0], gate_up.shape[1] // 2
    out = gate_up.new_empty((tokens, size))
    block = min(SILU_BLOCK, next_power_of_two(size))
    _kernels()["silu_mul"][(tokens, -(-size // block))](
        gate_up, out, gate_up.stride(0), out.stride(0), SIZE=size, BLOCK=block
    )
    return out
