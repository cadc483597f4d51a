"""The Triton paged-attention kernel equals gathered SDPA, and decoding with it gives eager's tokens.

On CPU the kernel runs in Triton's interpreter, which must be switched on before triton is first
imported: the checks (paged_attention_interpret.py) run in a child process for that.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.worker import paged_attention_interpret
from tests.worker.triton_interpreter import needs_triton, run_interpreted
from tokenfleet_worker.make_model import make_model
from tokenfleet_worker.runner import TorchRunner


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("paged"), preset="tiny", seed=21)


@needs_triton
def test_kernel_and_greedy_decoding_in_the_triton_interpreter(model_dir: Path) -> None:
    stdout = run_interpreted("tests.worker.paged_attention_interpret", str(model_dir))
    assert "paged attention checks passed" in stdout


def test_paged_attention_needs_decode_graphs_and_triton(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="paged_attention needs decode_graphs"):
        TorchRunner(model_dir, kv_cache_bytes=1024**2, paged_attention=True)
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ValueError, match="paged_attention needs"):
            TorchRunner(model_dir, kv_cache_bytes=1024**2, decode_graphs=True, paged_attention=True)


@pytest.mark.gpu
def test_kernel_and_greedy_decoding_on_cuda(model_dir: Path) -> None:
    assert paged_attention_interpret.main([str(model_dir), "cuda"]) == 0
