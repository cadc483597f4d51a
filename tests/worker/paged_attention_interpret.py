"""Checks of the Triton paged-attention kernel (and of greedy decoding with the fused kernels too),
run by test_paged_attention.py in a child process.

TRITON_INTERPRET=1 must be set before triton is imported, so these run apart from the test process:
`python -m tests.worker.paged_attention_interpret MODEL_DIR` exits 0 when every check passes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from tests.worker.test_runner import BLOCK_SIZE, generate, prompts_of
from tokenfleet_worker.paged_attention import paged_decode_attention
from tokenfleet_worker.runner import TorchRunner


def reference(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, tables: torch.Tensor, lens: torch.Tensor
) -> torch.Tensor:
    """Gather each context and attend with SDPA, one sequence at a time."""
    _, block_size, kv_heads, head_dim = k_cache.shape
    rows = []
    for seq, length in enumerate(lens.tolist()):
        positions = torch.arange(length, device=q.device)
        slots = tables[seq][positions // block_size] * block_size + positions % block_size
        keys = k_cache.reshape(-1, kv_heads, head_dim)[slots].transpose(0, 1)
        values = v_cache.reshape(-1, kv_heads, head_dim)[slots].transpose(0, 1)
        query = q[seq].view(kv_heads, -1, head_dim)
        rows.append(F.scaled_dot_product_attention(query, keys, values).reshape(-1, head_dim))
    return torch.stack(rows)


def random_case(device: str, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Lengths across tile and block edges; shuffled, shared block ids."""
    gen = torch.Generator().manual_seed(0)
    heads, kv_heads, head_dim, block_size, num_blocks = 8, 2, 16, 4, 48
    lens = torch.tensor([1, 4, 5, 64, 65, 130])
    tables = torch.stack([torch.randperm(num_blocks, generator=gen)[:40] for _ in lens])
    shape = (num_blocks, block_size, kv_heads, head_dim)
    k_cache, v_cache = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    q = torch.randn(len(lens), heads, head_dim, generator=gen)
    floats = (t.to(device, dtype) for t in (q, k_cache, v_cache))
    return (*floats, tables.to(device), lens.to(device))


def check_kernel(device: str, dtype: torch.dtype, atol: float) -> None:
    q, k_cache, v_cache, tables, lens = random_case(device, dtype)
    got = paged_decode_attention(q, k_cache, v_cache, tables, lens)
    want = reference(q.float(), k_cache.float(), v_cache.float(), tables, lens)
    torch.testing.assert_close(got.float(), want, atol=atol, rtol=0)


def check_greedy(model_dir: Path, device: str) -> None:
    options = {"device": device, "block_size": BLOCK_SIZE, "kv_cache_bytes": 4 * 1024**2}
    eager = TorchRunner(model_dir, **options)  # type: ignore[arg-type]
    prompts = prompts_of({0: 3, 1: 11, 2: 6}, eager.vocab_size)
    expected = generate(eager, prompts, 4, together=False)
    for fused in (False, True):  # the paged kernel alone, and with the fused kernels
        paged = TorchRunner(
            model_dir, decode_graphs=True, paged_attention=True, fused_kernels=fused, **options
        )  # type: ignore[arg-type]
        got = generate(paged, prompts, 4, together=True)
        assert got == expected, f"paged (fused {fused}) {got} != eager {expected}"
        assert paged.decode_graphs is not None
        assert any(key[3] == fused for key in paged.decode_graphs.entries), "no step took the kernels"


def main(argv: list[str]) -> int:
    model_dir, device = Path(argv[0]), argv[1] if len(argv) > 1 else "cpu"
    check_kernel(device, torch.float32, atol=1e-5)
    if device == "cuda":
        check_kernel(device, torch.bfloat16, atol=2e-2)
    check_greedy(model_dir, device)
    print("paged attention checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
