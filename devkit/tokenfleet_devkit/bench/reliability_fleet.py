"""A fleet as plain local processes: sim-backend workers behind one real router.

The router discovers workers through a workers file, so workers started later (a scale-up) join it
the way pods join through the Kubernetes API. Every process started here is stopped in `close`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tokenfleet_worker.make_tokenizer import write_tokenizer_files

MODEL = "overload-tiny"


@dataclass(frozen=True)
class FleetOptions:
    max_num_seqs: int = 4
    worker_max_waiting: int = 8  # the worker's queue bound; the router stops sending to a worker at it
    router_max_held: int = 64
    router_queue_timeout_s: float = 5.0
    retry_after_s: int = 1
    sim_profile: dict[str, float] | None = None  # None: the sim backend's default profile
    log_level: str = "warning"  # of every process; "info" logs each upstream failure and retry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_ready(url: str) -> bool:
    try:
        return httpx.get(url + "/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Member:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    started_at: float
    is_serving: bool = False  # listed in the router's workers file


class ProcessFleet:
    def __init__(self, root: Path, options: FleetOptions) -> None:
        self.root = root
        self.options = options
        # Sim workers read only the tokenizer: no weights to write, and no torch to import here.
        (root / MODEL).mkdir(parents=True, exist_ok=True)
        write_tokenizer_files(root / MODEL, vocab_size=512, model_max_length=2048)
        self.profile_path: Path | None = None
        if options.sim_profile is not None:
            self.profile_path = root / "sim-profile.json"
            self.profile_path.write_text(json.dumps(options.sim_profile))
        self.workers_file = root / "workers.txt"
        self.workers_file.write_text("")
        self.workers: list[Member] = []
        self.router: Member | None = None

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with (self.root / f"{name}.log").open("wb") as log:
            return subprocess.Popen(
                [sys.executable, *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def start_worker(self) -> Member:
        """Start one more worker; it serves once `admit_ready` sees it ready."""
        name, port = f"worker-{len(self.workers)}", free_port()
        argv = ["-m", "tokenfleet_worker", "--backend", "sim", "--model", str(self.root / MODEL)]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", self.options.log_level]
        argv += ["--max-num-seqs", str(self.options.max_num_seqs)]
        argv += ["--max-waiting", str(self.options.worker_max_waiting)]
        if self.profile_path is not None:
            argv += ["--sim-profile", str(self.profile_path)]
        member = Member(name, f"http://127.0.0.1:{port}", self._spawn(name, argv), time.monotonic())
        self.workers.append(member)
        return member

    def start_router(self) -> Member:
        port = free_port()
        o = self.options
        argv = ["-m", "tokenfleet_router", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--workers-file", str(self.workers_file), "--log-level", o.log_level]
        argv += ["--max-held", str(o.router_max_held), "--queue-timeout", str(o.router_queue_timeout_s)]
        argv += ["--retry-after", str(o.retry_after_s), "--max-waiting", str(o.worker_max_waiting)]
        self.router = Member(
            "router", f"http://127.0.0.1:{port}", self._spawn("router", argv), time.monotonic()
        )
        return self.router

    def admit_ready(self) -> list[Member]:
        """List every newly ready worker in the workers file; returns those that joined."""
        joined = [
            w for w in self.workers if not w.is_serving and w.process.poll() is None and is_ready(w.url)
        ]
        for worker in joined:
            worker.is_serving = True
        if joined:
            urls = [w.url for w in self.workers if w.is_serving]
            tmp = self.workers_file.with_suffix(".tmp")
            tmp.write_text("\n".join(urls) + "\n")
            tmp.replace(self.workers_file)  # the router never reads half a file
        return joined

    @property
    def num_serving(self) -> int:
        return sum(w.is_serving for w in self.workers)

    @property
    def num_starting(self) -> int:
        return sum(not w.is_serving and w.process.poll() is None for w in self.workers)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Wait until every worker serves and the router sees them all."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for member in [*self.workers, *([self.router] if self.router else [])]:
                if member.process.poll() is not None:
                    log = (self.root / f"{member.name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{member.name} exited with {member.process.returncode}:\n{log}")
            self.admit_ready()
            if (
                self.router
                and self.num_serving == len(self.workers)
                and self._router_workers() == len(self.workers)
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the fleet was not ready after {timeout_s:.0f}s (logs in {self.root})")

    def _router_workers(self) -> int:
        assert self.router is not None
        try:
            return int(httpx.get(self.router.url + "/fleet", timeout=2.0).json()["workers"])
        except (httpx.HTTPError, ValueError, KeyError):
            return -1

    def pids(self) -> dict[str, int]:
        members = [*([self.router] if self.router else []), *self.workers]
        return {m.name: m.process.pid for m in members}

    def exit_codes(self) -> dict[str, int | None]:
        """Processes that died during the run (None: still running, as it should be)."""
        members = [*([self.router] if self.router else []), *self.workers]
        return {m.name: m.process.poll() for m in members}

    def close(self) -> None:
        members = [*([self.router] if self.router else []), *self.workers]
        for member in members:
            if member.process.poll() is None:
                member.process.terminate()
        for member in members:
            try:
                member.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait(timeout=5)
