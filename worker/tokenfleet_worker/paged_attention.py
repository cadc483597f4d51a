"""Decode attention that reads keys and values straight from the paged cache (a Triton kernel).

The gather path copies every sequence's context out of the cache, padded to the longest, and then
reads the copy again in SDPA: three passes over the KV bytes. This kernel walks each sequence's
block table and reads each key and value once. One program handles one (sequence, KV head): the
query heads that share that KV head are the rows of its matrix products (padded to 16, the
smallest tile of `tl.dot`), with an online softmax over tiles of the context.

Triton is optional: `available()` says whether the kernel can run here. With TRITON_INTERPRET=1
set before the first import it runs on CPU tensors, which is how it is tested without a GPU.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import torch

MIN_DOT = 16  # tl.dot needs every dimension to be at least 16
TILE_TOKENS = 64  # context positions per inner step


def triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def available(device: torch.device) -> bool:
    if not triton_importable():
        return False
    import os

    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def _kernel() -> Any:
    """Compile-on-first-use: importing triton costs a second and is not needed on most paths."""
    global _COMPILED
    if _COMPILED is not None:
        return _COMPILED
    import triton
    import triton.language as tl

    @triton.jit
    def paged_decode(  # type: ignore[no-untyped-def]  # Triton reads only tl.constexpr annotations
        q_ptr,
        k_ptr,
        v_ptr,
        tables_ptr,
        lengths_ptr,
        out_ptr,
        scale,
        stride_q_seq,
        stride_q_head,
        stride_cache_block,
        stride_cache_slot,
        stride_cache_head,
        stride_table_seq,
        stride_out_seq,
        stride_out_head,
        GROUP: tl.constexpr,
        GROUP_PAD: tl.constexpr,
        HEAD_DIM: tl.constexpr,
        BLOCK_SIZE: tl.constexpr,
        TILE: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        seq = tl.program_id(0)
        kv_head = tl.program_id(1)
        length = tl.load(lengths_ptr + seq)
        rows = tl.arange(0, GROUP_PAD)
        dims = tl.arange(0, HEAD_DIM)
        heads = kv_head * GROUP + rows
        q = tl.load(
            q_ptr + seq * stride_q_seq + heads[:, None] * stride_q_head + dims[None, :],
            mask=(rows < GROUP)[:, None],
            other=0.0,
        )
        best = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        total = tl.zeros([GROUP_PAD], tl.float32)
        acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
        offsets = tl.arange(0, TILE)
        for start in range(0, length, TILE):
            positions = start + offsets
            valid = positions < length
            blocks = tl.load(
                tables_ptr + seq * stride_table_seq + positions // BLOCK_SIZE, mask=valid, other=0
            )
            slots = (
                blocks.to(tl.int64) * stride_cache_block
                + (positions % BLOCK_SIZE) * stride_cache_slot
                + kv_head * stride_cache_head
            )
            keys = tl.load(k_ptr + slots[:, None] + dims[None, :], mask=valid[:, None], other=0.0)
            scores = tl.dot(q, tl.trans(keys), input_precision=PRECISION)
            scores = tl.where(valid[None, :], scores * scale, float("-inf"))
            new_best = tl.maximum(best, tl.max(scores, 1))
            weights = tl.exp(scores - new_best[:, None])
            rescale = tl.exp(best - new_best)
            total = total * rescale + tl.sum(weights, 1)
            values = tl.load(v_ptr + slots[:, None] + dims[None, :], mask=valid[:, None], other=0.0)
            acc = acc * rescale[:, None] + tl.dot(weights.to(values.dtype), values, input_precision=PRECISION)
            best = new_best
        out = acc / total[:, None]
        tl.store(
            out_ptr + seq * stride_out_seq + heads[:, None] * stride_out_head + dims[None, :],
            out.to(out_ptr.dtype.element_ty),
            mask=(rows < GROUP)[:, None],
        )

    _COMPILED = paged_decode
    return _COMPILED


_COMPILED: Any = None


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
) -> torch.Tensor:
    """Attention of one query token per sequence over its paged context.

    q: [seqs, heads, head_dim] (heads innermost-contiguous); k_cache, v_cache: [blocks, block_size,
    kv_heads, head_dim]; block_tables: [seqs, max_blocks] int; context_lens: [seqs] int, at least 1.
    Returns [seqs, heads, head_dim].
    """
    num_seqs, num_heads, head_dim = q.shape
    _, block_size, num_kv_heads, _ = k_cache.shape
    if q.stride(2) != 1 or k_cache.stride(3) != 1 or k_cache.stride() != v_cache.stride():
        raise ValueError("paged_decode_attention needs head_dim-contiguous q and identical cache layouts")
    if head_dim < MIN_DOT or head_dim & (head_dim - 1):
        raise ValueError(f"head_dim must be a power of two of at least {MIN_DOT}, got {head_dim}")
    group = num_heads // num_kv_heads
    out = torch.empty((num_seqs, num_heads, head_dim), dtype=q.dtype, device=q.device)
    tile = max(TILE_TOKENS, block_size)
    _kernel()[(num_seqs, num_kv_heads)](
        q,
        k_cache,
        v_cache,
        block_tables,
        context_lens,
        out,
        1.0 / math.sqrt(head_dim),
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        block_tables.stride(0),
        out.stride(0),
        out.stride(1),
        GROUP=group,
        GROUP_PAD=max(MIN_DOT, 1 << (group - 1).bit_length()),
        HEAD_DIM=head_dim,
        BLOCK_SIZE=block_size,
        TILE=tile,
        # float32 stays exact (no TF32), so it agrees with the gather path token for token.
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )
    return out
