"""Failures and backpressure end to end: a real router in front of real sim workers.

Each test starts its own processes, since it kills, drains or saturates them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.router.conftest import MODEL
from tests.router.processes import (
    metric_value,
    running,
    sim_profile,
    start_router,
    start_worker,
    wait_until_dispatched,
    wait_until_routable,
)

pytestmark = pytest.mark.slow


def client_for(url: str, timeout: float = 30.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=timeout)


def test_worker_killed_mid_stream_ends_the_stream_with_an_error_and_traffic_moves_on(
    model_dir: Path, log_dir: Path, tmp_path: Path
) -> None:
    slow = sim_profile(tmp_path / "slow.json", step_s=0.05)
    doomed, survivor = (start_worker(model_dir, log_dir, "--sim-profile", str(slow)) for _ in range(2))
    router = start_router(log_dir, "--workers", f"{doomed.url},{survivor.url}", "--strategy", "round-robin")
    with running(doomed, survivor, router):
        for server in (doomed, survivor, router):
            server.wait_ready()
        # Until both have reported load the router counts one as saturated, and the stream
        # would run on the other, not the one killed below.
        wait_until_routable(router.url, workers=2)
        client = client_for(router.url)
        stream_texts: list[str] = []
        started = time.monotonic()
        with pytest.raises(openai.APIError, match="mid-stream") as info:
            # Round-robin by URL: the first request goes to the worker whose URL sorts first.
            first_url = min(doomed.url, survivor.url)
            victim = doomed if doomed.url == first_url else survivor
            for chunk in client.completions.create(model=MODEL, prompt="long", max_tokens=400, stream=True):
                stream_texts.append(chunk.choices[0].text)
                if len(stream_texts) == 3:
                    victim.kill()
        assert len(stream_texts) >= 3  # what arrived before the failure was delivered, once
        assert time.monotonic() - started < 15  # ended promptly, no hang until the read timeout
        assert "upstream_failed" in str(info.value.body)
        # The next requests are served by the survivor (the dead one fails to connect and is skipped).
        for _ in range(3):
            answer = client.completions.create(model=MODEL, prompt="again", max_tokens=2)
            assert answer.choices[0].text is not None
        fleet = httpx.get(router.url + "/fleet").json()
        assert sum(e["in_flight"] for e in fleet["endpoints"]) == 0


def post_quietly(url: str, max_tokens: int) -> None:
    """A long request whose outcome does not matter (its worker is killed at the end of the test)."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(
            url + "/v1/completions",
            json={"model": MODEL, "prompt": "x", "max_tokens": max_tokens},
            timeout=30,
        )


def test_draining_worker_503_is_retried_on_another(model_dir: Path, log_dir: Path, tmp_path: Path) -> None:
    slow = sim_profile(tmp_path / "slow.json", step_s=0.05)
    draining = start_worker(model_dir, log_dir, "--sim-profile", str(slow), "--drain-timeout", "30")
    healthy = start_worker(model_dir, log_dir)
    # A long poll interval keeps the router from learning of the drain through /load, so requests
    # do reach the draining worker and its 503 must be retried.
    router = start_router(
        log_dir,
        "--workers",
        f"{draining.url},{healthy.url}",
        "--strategy",
        "round-robin",
        "--poll-interval",
        "30",
    )
    with running(draining, healthy, router):
        for server in (draining, healthy, router):
            server.wait_ready()
        # Both workers must have reported once: a worker with no report yet counts as saturated.
        deadline = time.monotonic() + 45
        while httpx.get(router.url + "/fleet").json()["available_workers"] < 2:
            assert time.monotonic() < deadline, "the router never heard from both workers"
            time.sleep(0.1)
        # Keep the draining worker busy so it stays up (draining) after SIGTERM.
        long = threading.Thread(target=post_quietly, args=(draining.url, 400), daemon=True)
        long.start()
        time.sleep(0.3)
        draining.terminate()
        deadline = time.monotonic() + 10
        while httpx.get(draining.url + "/ready").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        client = client_for(router.url)
        for i in range(4):
            answer = client.completions.create(model=MODEL, prompt=f"q{i}", max_tokens=2)
            assert answer.choices[0].finish_reason in ("length", "stop")
        metrics = httpx.get(router.url + "/metrics").text
        assert metric_value(metrics, "tokenfleet_router_retries_total") >= 1
        assert (
            metric_value(metrics, "tokenfleet_router_requests_total", status="200", worker=healthy.url) == 4
        )


def test_saturated_fleet_holds_then_answers_429_with_retry_after(
    model_dir: Path, log_dir: Path, tmp_path: Path
) -> None:
    slow = sim_profile(tmp_path / "slow.json", step_s=0.05)
    worker = start_worker(model_dir, log_dir, "--sim-profile", str(slow))
    router = start_router(
        log_dir, "--workers", worker.url, "--max-in-flight", "1", "--queue-timeout", "2", "--retry-after", "2"
    )
    with running(worker, router), ThreadPoolExecutor(4) as pool:
        worker.wait_ready()
        router.wait_ready()
        wait_until_routable(router.url)
        client = client_for(router.url)
        busy = pool.submit(client.completions.create, model=MODEL, prompt="busy", max_tokens=60)  # ~3 s
        wait_until_dispatched(router.url, 1)
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as info:
            client.completions.create(model=MODEL, prompt="no room", max_tokens=2)
        waited = time.monotonic() - started
        assert 1.8 < waited < 3.5  # held for the queue timeout, then refused
        assert info.value.response.headers["retry-after"] == "2"
        assert info.value.body["code"] == "overloaded"  # type: ignore[index]
        # A request that fits in the queue timeout (busy ends about 1 s from now) is held, then served.
        held = pool.submit(
            client_for(router.url).completions.create, model=MODEL, prompt="wait", max_tokens=2
        )
        assert busy.result(timeout=30).choices[0].finish_reason == "length"
        assert held.result(timeout=30).choices[0].text is not None


def test_queue_full_is_refused_at_once(model_dir: Path, log_dir: Path, tmp_path: Path) -> None:
    slow = sim_profile(tmp_path / "slow.json", step_s=0.05)
    worker = start_worker(model_dir, log_dir, "--sim-profile", str(slow))
    router = start_router(log_dir, "--workers", worker.url, "--max-in-flight", "1", "--max-held", "0")
    with running(worker, router), ThreadPoolExecutor(2) as pool:
        worker.wait_ready()
        router.wait_ready()
        wait_until_routable(router.url)  # a worker not yet reported counts as full: "busy" would get 429
        busy = pool.submit(
            client_for(router.url).completions.create, model=MODEL, prompt="busy", max_tokens=60
        )
        wait_until_dispatched(router.url, 1)
        started = time.monotonic()
        response = httpx.post(
            router.url + "/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 1}
        )
        assert response.status_code == 429 and time.monotonic() - started < 0.5
        assert response.headers["retry-after"] == "1"
        busy.result(timeout=30)


def test_zero_workers_holds_requests_until_one_appears(
    model_dir: Path, log_dir: Path, tmp_path: Path
) -> None:
    workers_file = tmp_path / "workers"
    workers_file.write_text("")
    router = start_router(log_dir, "--workers-file", str(workers_file), "--cold-start-timeout", "60")
    worker = start_worker(model_dir, log_dir)
    with running(router, worker), ThreadPoolExecutor(2) as pool:
        router.wait_ready()  # ready with zero workers: it must accept requests to hold them
        held = [
            pool.submit(
                client_for(router.url).completions.create, model=MODEL, prompt=f"cold {i}", max_tokens=2
            )
            for i in range(2)
        ]
        deadline = time.monotonic() + 10
        while httpx.get(router.url + "/fleet").json()["held"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(router.url + "/fleet").json()["held"] == 2
        assert metric_value(httpx.get(router.url + "/metrics").text, "tokenfleet_router_requests_held") == 2
        worker.wait_ready()  # the scale-up: the worker starts, then joins the fleet
        workers_file.write_text(worker.url + "\n")
        for future in held:
            assert future.result(timeout=20).choices[0].finish_reason in ("length", "stop")
        assert httpx.get(router.url + "/fleet").json()["held"] == 0


def test_zero_workers_past_the_cold_start_timeout_is_503(log_dir: Path, tmp_path: Path) -> None:
    workers_file = tmp_path / "workers"
    workers_file.write_text("")
    router = start_router(log_dir, "--workers-file", str(workers_file), "--cold-start-timeout", "1")
    with running(router):
        router.wait_ready()
        started = time.monotonic()
        response = httpx.post(
            router.url + "/v1/completions", json={"model": MODEL, "prompt": "x"}, timeout=10
        )
        assert response.status_code == 503
        assert 0.9 < time.monotonic() - started < 3
        assert response.json()["error"]["code"] == "no_capacity"
        assert response.headers["retry-after"]


def test_client_leaving_mid_stream_frees_the_worker(model_dir: Path, log_dir: Path, tmp_path: Path) -> None:
    slow = sim_profile(tmp_path / "slow.json", step_s=0.05)
    worker = start_worker(model_dir, log_dir, "--sim-profile", str(slow))
    router = start_router(log_dir, "--workers", worker.url)
    with running(worker, router):
        worker.wait_ready()
        router.wait_ready()
        body = {"model": MODEL, "prompt": "long", "max_tokens": 400, "stream": True}
        with (
            httpx.Client(timeout=30) as http,
            http.stream("POST", router.url + "/v1/completions", json=body) as r,
        ):
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            assert httpx.get(router.url + "/fleet").json()["in_flight"] == 1
        # The client hung up after one event: the router's count and the worker's batch both empty.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            in_flight = httpx.get(router.url + "/fleet").json()["in_flight"]
            running_on_worker = httpx.get(worker.url + "/load").json()["running"]
            if in_flight == 0 and running_on_worker == 0:
                break
            time.sleep(0.1)
        assert (in_flight, running_on_worker) == (0, 0)
