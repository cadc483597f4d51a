"""The latency the router adds: one real sim worker, called directly and through a real router.

Requests alternate between the two paths over kept-alive connections, so both see the same
worker state and machine load; the worker's steps are made very short so its own time does not
drown the difference. The router's CPU time a request is reported too: on a machine whose cores
are all busy, every millisecond of it turns into latency.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

MODEL = "overhead-tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT, env=env)


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            if httpx.get(url + "/ready", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s}s")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_overhead(samples: int) -> dict[str, Any]:
    from tokenfleet_worker.make_model import make_model

    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tokenfleet-bench-router-") as tmp:
        root = Path(tmp)
        make_model(root / MODEL, preset="tiny")
        profile = root / "fast.json"
        profile.write_text(json.dumps({"base_s": 0.0002, "per_token_s": 0.0, "per_context_token_s": 0.0}))
        worker_port, router_port = _free_port(), _free_port()
        worker_url, router_url = f"http://127.0.0.1:{worker_port}", f"http://127.0.0.1:{router_port}"
        try:
            processes.append(
                _start(
                    [
                        "-m",
                        "tokenfleet_worker",
                        "--backend",
                        "sim",
                        "--model",
                        str(root / MODEL),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(worker_port),
                        "--sim-profile",
                        str(profile),
                        "--log-level",
                        "warning",
                    ],
                    root / "worker.log",
                )
            )
            processes.append(
                _start(
                    [
                        "-m",
                        "tokenfleet_router",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(router_port),
                        "--workers",
                        worker_url,
                        "--log-level",
                        "warning",
                    ],
                    root / "router.log",
                )
            )
            _wait_ready(worker_url, processes[0])
            _wait_ready(router_url, processes[1])
            body = {"model": MODEL, "prompt": "How much does the router add?", "max_tokens": 1}
            direct: list[float] = []
            routed: list[float] = []
            cpu_before: float | None = None
            with httpx.Client(timeout=10.0) as client:
                for i in range(samples + 10):
                    if i == 10:  # the first few warm connections and caches
                        cpu_before = _cpu_seconds(processes[1].pid)
                    for url, sink in ((worker_url, direct), (router_url, routed)):
                        started = time.perf_counter()
                        client.post(url + "/v1/completions", json=body).raise_for_status()
                        if i >= 10:
                            sink.append((time.perf_counter() - started) * 1000)
            cpu_after = _cpu_seconds(processes[1].pid)
        finally:
            for process in processes:
                process.kill()
                process.wait(timeout=10)
    result: dict[str, Any] = {"samples": samples}
    for name, q in (("p50", 0.5), ("p95", 0.95)):
        result[f"direct_{name}_ms"] = _quantile(direct, q)
        result[f"router_{name}_ms"] = _quantile(routed, q)
        result[f"added_{name}_ms"] = _quantile(routed, q) - _quantile(direct, q)
    # CPU the router spent a request (its load polling included): what a busy machine pays.
    result["router_cpu_ms_per_request"] = (
        None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / samples * 1000
    )
    return result
