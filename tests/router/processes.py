"""Real worker and router processes on 127.0.0.1 for the router's integration tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, path: str = "/ready") -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {STARTUP_TIMEOUT_S}s:\n{self.log()}")

    def terminate(self) -> None:
        """SIGTERM: a worker starts draining."""
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def _start(name: str, argv: Sequence[str], port: int, log_dir: Path) -> Server:
    log_path = log_dir / f"{name}-{port}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *argv], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return Server(name, port, process, log_path)


def start_worker(model_dir: Path, log_dir: Path, *extra: str, backend: str = "sim") -> Server:
    port = free_port()
    argv = ["-m", "tokenfleet_worker", "--backend", backend, "--model", str(model_dir)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra]
    return _start("worker", argv, port, log_dir)


def start_router(log_dir: Path, *args: str) -> Server:
    port = free_port()
    argv = ["-m", "tokenfleet_router", "--host", "127.0.0.1", "--port", str(port), *args]
    return _start("router", argv, port, log_dir)


def sim_profile(path: Path, step_s: float) -> Path:
    """A sim performance model whose every decode step takes about `step_s`."""
    path.write_text(json.dumps({"base_s": step_s, "per_token_s": 0.0, "per_context_token_s": 0.0}))
    return path


def wait_until_routable(router_url: str, workers: int = 1, timeout_s: float = 15.0) -> None:
    """Block until the router has a fresh load report from `workers` workers with room: until then it
    counts them as saturated (and, with no queue allowed, refuses)."""
    deadline = time.monotonic() + timeout_s
    while httpx.get(router_url + "/fleet").json()["available_workers"] < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"router saw fewer than {workers} routable workers in {timeout_s} s")
        time.sleep(0.02)


def wait_until_dispatched(router_url: str, count: int, timeout_s: float = 15.0) -> None:
    """Block until the router has sent `count` requests to workers (a loaded CI box may take a while)."""
    name = "tokenfleet_router_routing_decisions_total"
    deadline = time.monotonic() + timeout_s
    while metric_value(httpx.get(router_url + "/metrics").text, name) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"router dispatched fewer than {count} requests in {timeout_s} s")
        time.sleep(0.02)


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[None]:
    """Kill the servers however the test ends."""
    try:
        yield
    finally:
        for server in servers:
            server.kill()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` in a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total
