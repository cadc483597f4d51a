"""Stopping a child process the way Kubernetes stops a container: SIGTERM, a grace period, then SIGKILL.

The operator and the workers drain on SIGTERM, so benchmarks and tests give them the same chance
before killing them."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_gracefully(process: subprocess.Popen[Any], grace_s: float = 20.0) -> None:
    """SIGTERM, wait up to `grace_s`, then SIGKILL; returns once the process is gone."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
