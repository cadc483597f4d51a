"""A worker process killed (SIGKILL) while it streams and while others queue on it, behind the real router.

Requests it had accepted but not yet begun to answer are retried on the other worker and succeed; the
stream it was sending ends promptly with one OpenAI-shaped SSE error event; no client hangs (each has a
timeout, and the test bounds the wait)."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.reliability import report
from tests.router.conftest import MODEL
from tests.router.processes import metric_value, running, sim_profile, start_router, start_worker
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

NUM_QUEUED = 4  # requests waiting behind the stream on the doomed worker when it dies


def ask(base: str, i: int, stream: bool) -> str:
    """One request to completion; its finish_reason (streams: of the last chunk)."""
    client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=30)
    if not stream:
        return str(
            client.completions.create(model=MODEL, prompt=f"queued {i}", max_tokens=4)
            .choices[0]
            .finish_reason
        )
    chunks = list(client.completions.create(model=MODEL, prompt=f"queued {i}", max_tokens=4, stream=True))
    return str(chunks[-1].choices[0].finish_reason)


def test_worker_sigkill_retries_queued_requests_and_ends_started_streams_cleanly(
    model_dir: Path, log_dir: Path, tmp_path: Path
) -> None:
    figures = report.ScenarioFigures("worker_sigkill_behind_router")
    slow = sim_profile(tmp_path / "slow.json", step_s=0.05)
    # One sequence at a time on the doomed worker, so the queued requests have no first byte yet.
    doomed = start_worker(model_dir, log_dir, "--sim-profile", str(slow), "--max-num-seqs", "1")
    survivor = start_worker(model_dir, log_dir)
    workers_file = tmp_path / "workers"
    workers_file.write_text(doomed.url + "\n")
    router = start_router(log_dir, "--workers-file", str(workers_file), "--poll-interval", "0.2")
    with running(doomed, survivor, router), ThreadPoolExecutor(NUM_QUEUED) as pool:
        for server in (doomed, survivor, router):
            server.wait_ready()
        client = openai.OpenAI(base_url=router.url + "/v1", api_key="none", max_retries=0, timeout=30)
        stream = iter(client.completions.create(model=MODEL, prompt="long", max_tokens=400, stream=True))
        received = [next(stream).choices[0].text for _ in range(3)]
        queued: list[Future[str]] = [
            pool.submit(ask, router.url, i, stream=i % 2 == 1) for i in range(NUM_QUEUED)
        ]
        wait_for(
            "the queued requests to wait on the doomed worker",
            lambda: httpx.get(doomed.url + "/load", timeout=2).json()["waiting"] == NUM_QUEUED,
            timeout=20,
            every=0.1,
        )
        workers_file.write_text(f"{doomed.url}\n{survivor.url}\n")
        wait_for(
            "the router to know both workers", lambda: httpx.get(router.url + "/fleet").json()["workers"] == 2
        )

        killed_at = time.monotonic()
        doomed.kill()  # SIGKILL: no drain, connections reset
        figures.faults_injected += 1

        with pytest.raises(openai.APIError, match="mid-stream") as info:
            for chunk in stream:
                received.append(chunk.choices[0].text)
        assert time.monotonic() - killed_at < 10, "the cut stream did not end promptly"
        assert info.value.body["code"] == "upstream_failed"  # type: ignore[index]
        figures.count("failed")  # the started stream: ended early, but cleanly
        finishes = [f.result(timeout=30) for f in queued]
        assert finishes == ["length"] * NUM_QUEUED, finishes
        figures.count("completed", NUM_QUEUED)
        metrics = httpx.get(router.url + "/metrics").text
        retries = metric_value(metrics, "tokenfleet_router_retries_total")
        assert retries >= NUM_QUEUED
        served = metric_value(metrics, "tokenfleet_router_requests_total", status="200", worker=survivor.url)
        assert served >= NUM_QUEUED
        assert httpx.get(router.url + "/fleet").json()["in_flight"] == 0
        figures.faults_survived += 1
        figures.details = {"retries": retries, "stream_events_before_cut": len(received)}
    report.write(figures)
