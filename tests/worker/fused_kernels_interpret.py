"""Checks of the fused Triton kernels against the torch ops they replace, run by
test_fused_kernels.py in a child process (TRITON_INTERPRET=1 must be set before triton is imported).

`python -m tests.worker.fused_kernels_interpret [cpu|cuda]` exits 0 when every check passes.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from tokenfleet_worker.fused_kernels import add_rms_norm, rope_and_cache, silu_mul
from tokenfleet_worker.rope import apply_rope


def random(shape: tuple[int, ...], gen: torch.Generator, device: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(shape, generator=gen).to(device, dtype)


def check_add_rms_norm(device: str, dtype: torch.dtype, atol: float) -> None:
    gen = torch.Generator().manual_seed(1)
    x, residual = random((5, 48), gen, device, dtype), random((5, 48), gen, device, dtype)
    weight = random((48,), gen, device, dtype)
    total = residual + x
    want = F.rms_norm(total, (48,), weight, 1e-6)
    got = add_rms_norm(x, residual, weight, 1e-6)
    torch.testing.assert_close(residual, total, atol=0, rtol=0)  # the sum went into residual
    torch.testing.assert_close(got.float(), want.float(), atol=atol, rtol=0)
    alone = add_rms_norm(x, None, weight, 1e-6)
    torch.testing.assert_close(alone.float(), F.rms_norm(x, (48,), weight, 1e-6).float(), atol=atol, rtol=0)


def check_rope_and_cache(device: str, dtype: torch.dtype, atol: float) -> None:
    """Three query heads and two key/value heads (neither a power of two), shuffled slots."""
    gen = torch.Generator().manual_seed(2)
    tokens, heads, kv_heads, head_dim, blocks, block_size = 4, 3, 2, 16, 6, 4
    qkv = random((tokens, (heads + 2 * kv_heads) * head_dim), gen, device, dtype)
    angles = torch.rand((tokens, 1, head_dim), generator=gen) * 6.0
    half = head_dim // 2
    cos = angles.cos().to(device, dtype)
    signed_sin = torch.cat((-angles[..., :half].sin(), angles[..., half:].sin()), dim=-1).to(device, dtype)
    slots = torch.randperm(blocks * block_size, generator=gen)[:tokens].to(device)
    k_cache = torch.zeros((blocks, block_size, kv_heads, head_dim), dtype=dtype, device=device)
    v_cache = torch.zeros_like(k_cache)
    before = qkv.clone()
    q = rope_and_cache(qkv, cos, signed_sin, slots, k_cache, v_cache, heads)
    torch.testing.assert_close(qkv, before, atol=0, rtol=0)  # the input is left as it was
    qk = apply_rope(
        before[:, : (heads + kv_heads) * head_dim].view(tokens, heads + kv_heads, head_dim), cos, signed_sin
    )
    torch.testing.assert_close(q.float(), qk[:, :heads].float(), atol=atol, rtol=0)
    flat_k, flat_v = k_cache.view(-1, kv_heads, head_dim), v_cache.view(-1, kv_heads, head_dim)
    torch.testing.assert_close(flat_k[slots].float(), qk[:, heads:].float(), atol=atol, rtol=0)
    values = before[:, (heads + kv_heads) * head_dim :].view(tokens, kv_heads, head_dim)
    torch.testing.assert_close(flat_v[slots], values, atol=0, rtol=0)
    untouched = torch.ones(blocks * block_size, dtype=torch.bool, device=device)
    untouched[slots] = False
    assert not flat_k[untouched].any() and not flat_v[untouched].any(), (
        "a slot outside the mapping was written"
    )


def check_silu_mul(device: str, dtype: torch.dtype, atol: float) -> None:
    gen = torch.Generator().manual_seed(3)
    gate_up = random((3, 2 * 1500), gen, device, dtype)  # more than one program per row, a ragged end
    gate, up = gate_up.split(1500, dim=-1)
    torch.testing.assert_close(silu_mul(gate_up).float(), (F.silu(gate) * up).float(), atol=atol, rtol=0)


def main(argv: list[str]) -> int:
    device = argv[0] if argv else "cpu"
    # bfloat16 on CUDA only: Triton's interpreter casts float32 to bfloat16 by truncation (3.7),
    # where the compiled kernels and torch round to nearest, so it cannot check the rounding.
    checks = [(torch.float32, 1e-5)] + ([(torch.bfloat16, 2e-2)] if device == "cuda" else [])
    for dtype, atol in checks:
        check_add_rms_norm(device, dtype, atol)
        check_rope_and_cache(device, dtype, atol)
        check_silu_mul(device, dtype, atol)
    print("fused kernel checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
