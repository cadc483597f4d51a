"""Run a checks module in a child process with Triton's interpreter switched on.

TRITON_INTERPRET=1 must be set before triton is first imported, so kernel checks on CPU cannot run
inside the test process, which may have imported it already.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")


def run_interpreted(module: str, *args: str) -> str:
    """Run `python -m module args...` under the interpreter; return its stdout, failing on a non-zero exit."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    roots = [str(ROOT / part) for part in ("common", "worker", "devkit")]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *roots, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
