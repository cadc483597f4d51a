"""The Triton paged-attention kernel equals gathered SDPA, and decoding with it gives eager's tokens.

On CPU the kernel runs in Triton's interpreter, which must be switched on before triton is first
imported: the checks (paged_attention_interpret.py) run in a child process for that.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.worker import paged_attention_interpret
from tokenfleet_worker.make_model import make_model
from tokenfleet_worker.runner import TorchRunner

ROOT = Path(__file__).resolve().parents[2]
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("paged"), preset="tiny", seed=21)


@needs_triton
def test_kernel_and_greedy_decoding_in_the_triton_interpreter(model_dir: Path) -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    roots = [str(ROOT / part) for part in ("common", "worker", "devkit")]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *roots, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "tests.worker.paged_attention_interpret", str(model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "paged attention checks passed" in proc.stdout


def test_paged_attention_needs_decode_graphs_and_triton(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="paged_attention needs decode_graphs"):
        TorchRunner(model_dir, kv_cache_bytes=1024**2, paged_attention=True)
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ValueError, match="paged_attention needs"):
            TorchRunner(model_dir, kv_cache_bytes=1024**2, decode_graphs=True, paged_attention=True)


@pytest.mark.gpu
def test_kernel_and_greedy_decoding_on_cuda(model_dir: Path) -> None:
    assert paged_attention_interpret.main([str(model_dir), "cuda"]) == 0
