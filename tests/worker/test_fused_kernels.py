"""The fused Triton kernels equal the torch ops they replace (greedy decoding with them is checked
beside the paged kernel's, in paged_attention_interpret.py); bad inputs are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.worker import fused_kernels_interpret
from tests.worker.triton_interpreter import needs_triton, run_interpreted
from tokenfleet_worker.fused_kernels import add_rms_norm, rope_and_cache, silu_mul
from tokenfleet_worker.make_model import make_model
from tokenfleet_worker.runner import TorchRunner


@needs_triton
def test_kernels_in_the_triton_interpreter() -> None:
    assert "fused kernel checks passed" in run_interpreted("tests.worker.fused_kernels_interpret")


def test_layouts_the_kernels_cannot_read_are_refused() -> None:
    """Checked before any kernel is compiled, so these need no Triton."""
    qkv = torch.zeros((2, 7 * 16))
    cache = torch.zeros((4, 4, 2, 16))
    with pytest.raises(ValueError, match="contiguous"):
        add_rms_norm(torch.zeros((4, 8)).t(), None, torch.ones(4), 1e-6)
    with pytest.raises(ValueError, match=r"heads \+ 2 \* kv_heads"):
        rope_and_cache(qkv, qkv, qkv, torch.zeros(2, dtype=torch.int64), cache, cache, num_heads=4)
    with pytest.raises(ValueError, match="contiguous caches"):
        rope_and_cache(qkv, qkv, qkv, torch.zeros(2, dtype=torch.int64), cache.transpose(0, 1), cache, 3)
    with pytest.raises(ValueError, match="row-contiguous"):
        silu_mul(torch.zeros((8, 4)).t())
    odd_qkv, odd_cache = torch.zeros((2, 7 * 12)), torch.zeros((4, 4, 2, 12))
    with pytest.raises(ValueError, match="power-of-two head_dim"):
        rope_and_cache(odd_qkv, odd_qkv, odd_qkv, torch.zeros(2, dtype=torch.int64), odd_cache, odd_cache, 3)


def test_fused_kernels_need_the_paged_kernel(tmp_path: Path) -> None:
    model_dir = make_model(tmp_path, preset="tiny", seed=3)
    with pytest.raises(ValueError, match="fused_kernels needs paged_attention"):
        TorchRunner(model_dir, kv_cache_bytes=1024**2, decode_graphs=True, fused_kernels=True)


@pytest.mark.gpu
def test_kernels_on_cuda() -> None:
    assert fused_kernels_interpret.main(["cuda"]) == 0
