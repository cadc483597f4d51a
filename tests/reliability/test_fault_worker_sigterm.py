"""SIGTERM on a worker under load behind the real router: it turns unready at once, the router sends it
nothing new, every request it had finishes in full within the grace period, and it exits 0.

(One in-flight stream on a lone worker: tests/worker/test_main.py::
test_sigterm_drains_in_flight_stream_then_exits_0; this is the same under concurrent load, in a fleet.)"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.reliability import report
from tests.router.conftest import MODEL
from tests.router.processes import metric_value, running, sim_profile, start_router, start_worker
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

NUM_IN_FLIGHT = 8  # long requests spread over both workers before the SIGTERM
NUM_LATE = 8  # short requests sent after it
GRACE_SECONDS = 30


def complete(base: str, prompt: str, max_tokens: int) -> tuple[str, int]:
    client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=60)
    answer = client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens)
    assert answer.usage is not None
    return str(answer.choices[0].finish_reason), answer.usage.completion_tokens


def test_sigterm_under_load_drains_in_flight_refuses_new_and_exits_0(
    model_dir: Path, log_dir: Path, tmp_path: Path
) -> None:
    figures = report.ScenarioFigures("worker_sigterm_under_load")
    slow = sim_profile(tmp_path / "slow.json", step_s=0.05)
    draining = start_worker(
        model_dir, log_dir, "--sim-profile", str(slow), "--drain-timeout", str(GRACE_SECONDS)
    )
    other = start_worker(model_dir, log_dir, "--sim-profile", str(slow))
    router = start_router(
        log_dir,
        "--workers",
        f"{draining.url},{other.url}",
        "--strategy",
        "round-robin",
        "--poll-interval",
        "0.2",
    )
    with running(draining, other, router), ThreadPoolExecutor(NUM_IN_FLIGHT + NUM_LATE) as pool:
        for server in (draining, other, router):
            server.wait_ready()
        wait_for(
            "both workers in use", lambda: httpx.get(router.url + "/fleet").json()["available_workers"] == 2
        )
        in_flight = [pool.submit(complete, router.url, f"long {i}", 60) for i in range(NUM_IN_FLIGHT)]

        def queued(server_url: str) -> int:
            load = httpx.get(server_url + "/load", timeout=2).json()
            return int(load["running"] + load["waiting"])

        wait_for(
            "every long request to reach a worker",
            lambda: queued(draining.url) + queued(other.url) == NUM_IN_FLIGHT,
            timeout=20,
            every=0.05,
        )
        on_draining = queued(draining.url)
        assert on_draining >= 2
        draining.terminate()
        figures.faults_injected += 1
        signalled = time.monotonic()
        wait_for(
            "readiness to turn false", lambda: httpx.get(draining.url + "/ready").status_code == 503, 2, 0.05
        )
        late = [pool.submit(complete, router.url, f"late {i}", 4) for i in range(NUM_LATE)]

        finished = [f.result(timeout=GRACE_SECONDS + 30) for f in in_flight]
        assert finished == [("length", 60)] * NUM_IN_FLIGHT, finished  # every accepted one, in full
        assert [f.result(timeout=30)[0] for f in late] == ["length"] * NUM_LATE
        assert draining.process.wait(timeout=GRACE_SECONDS) == 0
        drained_in = time.monotonic() - signalled
        metrics = httpx.get(router.url + "/metrics").text
        served_by_draining = metric_value(
            metrics, "tokenfleet_router_requests_total", status="200", worker=draining.url
        )
        # The draining worker answered exactly what it had before the SIGTERM, none of the late ones.
        assert served_by_draining == on_draining
        figures.faults_survived += 1
        figures.count("completed", NUM_IN_FLIGHT + NUM_LATE)
        figures.details = {
            "in_flight_on_draining_worker": served_by_draining,
            "router_retries": metric_value(metrics, "tokenfleet_router_retries_total"),
            "drain_seconds": round(drained_in, 2),
            "exit_code": 0,
        }
    report.write(figures)
