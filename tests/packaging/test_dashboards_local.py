"""Every worker and router dashboard query returns data from a real Prometheus scraping a real fleet:
two sim-backend workers and a router as local processes on 127.0.0.1 (no cluster), under load.

The operator's fleet gauges need the operator running on the cluster: the end-to-end test in
test_dashboards_prometheus.py covers those; here they are the only queries allowed to be empty.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.packaging.fleet_tools import free_port, make_model
from tests.packaging.prometheus_tools import drive_load, empty_queries, running_prometheus
from tests.waiting import wait_for
from tokenfleet_devkit.packaging import file_sd

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
FLEET = {"namespace": "local", "infdep": "chat"}


@contextlib.contextmanager
def process(argv: list[str], health_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{argv[0]} exited: {log.read_text()[-2000:]}")
            try:
                return httpx.get(health_url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(f"{Path(argv[0]).name} healthy", healthy, timeout=90)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def worker_argv(model: Path, port: int) -> list[str]:
    return [
        str(BIN / "tokenfleet-worker"),
        "--model",
        str(model),
        "--served-model-name",
        "chat",
        "--backend",
        "sim",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-num-seqs",
        "4",
        "--sim-num-blocks",
        "128",
        "--log-level",
        "warning",
    ]


def test_worker_and_router_queries_return_data(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    ports = [free_port() for _ in range(3)]
    workers = [f"http://127.0.0.1:{p}" for p in ports[:2]]
    router_argv = [
        str(BIN / "tokenfleet-router"),
        "--workers",
        ",".join(workers),
        "--host",
        "127.0.0.1",
        "--port",
        str(ports[2]),
        "--log-level",
        "warning",
    ]
    sd = tmp_path / "sd"
    groups = [
        {"targets": [f"127.0.0.1:{p}"], "labels": {**FLEET, "pod": f"chat-worker-{v}-0", "variant": v}}
        for p, v in zip(ports[:2], ("h100", "l40s"), strict=True)
    ]
    file_sd.write_targets(sd / "worker.json", groups)
    file_sd.write_targets(
        sd / "router.json",
        [{"targets": [f"127.0.0.1:{ports[2]}"], "labels": {**FLEET, "pod": "chat-router-0"}}],
    )
    file_sd.write_targets(sd / "operator.json", [])
    with contextlib.ExitStack() as stack:
        for i, port in enumerate(ports[:2]):
            stack.enter_context(
                process(worker_argv(model, port), f"{workers[i]}/health", tmp_path / f"w{i}.log")
            )
        stack.enter_context(
            process(router_argv, f"http://127.0.0.1:{ports[2]}/metrics", tmp_path / "router.log")
        )
        prom = stack.enter_context(running_prometheus(tmp_path, sd))
        wait_for(
            "all targets up", lambda: sum(t["health"] == "up" for t in prom.active_targets()) == 3, timeout=30
        )
        started = time.time()
        outcomes = drive_load(f"http://127.0.0.1:{ports[2]}", "chat")
        assert outcomes.get("ok", 0) >= 20, outcomes
        time.sleep(3)
        variables = {"namespace": "local", "deployment": "chat", "pod": ".*", "__rate_interval": "1m"}
        failures = empty_queries(prom, variables, started)
    unexpected = [f for f in failures if "tokenfleet_operator_" not in f]
    assert failures, "the operator's panels cannot have data without an operator: is the check working?"
    assert not unexpected, f"{len(unexpected)} worker/router queries returned no data:\n" + "\n".join(
        unexpected
    )
