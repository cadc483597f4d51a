"""Metrics sources against real servers on 127.0.0.1: worker-style /metrics endpoints, a real Prometheus."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tokenfleet_common import metric_names as m
from tokenfleet_operator.fleet_pods import FleetTarget, PodInfo
from tokenfleet_operator.metrics_source import (
    DirectScrapeSource,
    MetricsSourceError,
    NoMetricsData,
    PrometheusSource,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeWorkerMetrics:
    """A real HTTP /metrics endpoint with tokenfleet worker names, whose values the test moves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.waiting = Gauge(m.REQUESTS_WAITING, "w", registry=self.registry)
        self.running = Gauge(m.REQUESTS_RUNNING, "r", registry=self.registry)
        self.kv = Gauge(m.KV_CACHE_USAGE, "kv", registry=self.registry)
        self.prompt = Counter(m.PROMPT_TOKENS.removesuffix("_total"), "p", registry=self.registry)
        self.generation = Counter(m.GENERATION_TOKENS.removesuffix("_total"), "g", registry=self.registry)
        self.ttft = Histogram(m.TTFT, "t", buckets=(0.1, 0.5, 1.0), registry=self.registry)
        self.held = Gauge(m.ROUTER_HELD, "h", registry=self.registry)
        self.decisions = Counter(
            m.ROUTER_DECISIONS.removesuffix("_total"), "d", ["strategy"], registry=self.registry
        )
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def workers() -> Iterator[list[FakeWorkerMetrics]]:
    servers = [FakeWorkerMetrics(), FakeWorkerMetrics()]
    yield servers
    for s in servers:
        s.close()


def target_for(servers: list[FakeWorkerMetrics], extra: tuple[PodInfo, ...] = ()) -> FleetTarget:
    pods = tuple(
        PodInfo(f"chat-worker-h100-{i}", "h100", "127.0.0.1", "ready", s.port) for i, s in enumerate(servers)
    )
    return FleetTarget("ns", "chat", "tokenfleet", 16, pods + extra)


async def test_direct_scrape_rates_and_router_held(workers: list[FakeWorkerMetrics]) -> None:
    router = FakeWorkerMetrics()
    try:
        router.held.set(5)
        target = target_for(workers, (PodInfo("chat-worker-h100-x", "h100", "", "starting"),))
        target = FleetTarget(
            **{**target.__dict__, "routers": (PodInfo("r", "", "127.0.0.1", "ready", router.port),)}
        )
        workers[0].waiting.set(4)
        workers[1].waiting.set(2)
        workers[0].kv.set(0.5)
        workers[1].kv.set(0.3)
        async with httpx.AsyncClient() as client:
            source = DirectScrapeSource(client, timeout_seconds=2.0)
            first = await source.collect(target, ["h100"], now=100.0)
            workers[0].prompt.inc(500)
            workers[1].generation.inc(1000)
            for _ in range(10):
                workers[0].ttft.observe(0.3)
            router.decisions.labels("least-load").inc(20)
            router.decisions.labels("round-robin").inc(10)
            second = await source.collect(target, ["h100"], now=110.0)
        v = second.variants[0]
        assert (v.ready, v.starting, v.waiting) == (2, 1, 6)
        assert v.kv_usage == pytest.approx(0.4)
        assert first.variants[0].tokens_per_second == 0
        assert v.prompt_tokens_per_second == pytest.approx(
            50
        ) and v.generation_tokens_per_second == pytest.approx(100)
        assert second.ttft_p95_seconds == pytest.approx(0.1 + 0.4 * 0.95)
        assert second.router_held == 5
        # The routers' dispatch rate needs two scrapes: counter increase over the seconds between them.
        assert first.dispatched_per_second is None
        assert second.dispatched_per_second == pytest.approx(3.0)
    finally:
        router.close()


async def test_direct_scrape_without_answers_is_no_data(workers: list[FakeWorkerMetrics]) -> None:
    dead = tuple(PodInfo(f"dead-{i}", "h100", "127.0.0.1", "ready", free_port()) for i in range(3))
    target = target_for(workers[:1], dead)
    async with httpx.AsyncClient() as client:
        with pytest.raises(NoMetricsData, match="1 of 4"):
            await DirectScrapeSource(client, timeout_seconds=1.0).collect(target, ["h100"], now=1.0)
        # No ready pods is a measurement (an empty fleet), not missing data.
        empty = FleetTarget("ns", "chat", "tokenfleet", 16, (PodInfo("p", "h100", "", "starting"),))
        snap = await DirectScrapeSource(client).collect(empty, ["h100"], now=1.0)
        assert snap.variants[0].starting == 1 and not snap.is_stale


@pytest.fixture
def prometheus(tmp_path: Path, workers: list[FakeWorkerMetrics]) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed")
    port = free_port()
    targets = "\n".join(
        f"""      - targets: ["127.0.0.1:{s.port}"]
        labels: {{namespace: ns, pod: chat-worker-h100-{i}}}"""
        for i, s in enumerate(workers)
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: w\n    static_configs:\n{targets}\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_prometheus_source(prometheus: str, workers: list[FakeWorkerMetrics]) -> None:
    workers[0].waiting.set(3)
    workers[1].waiting.set(1)
    workers[0].kv.set(0.7)
    workers[1].kv.set(0.1)
    target = target_for(workers)
    async with httpx.AsyncClient() as client:
        source = PrometheusSource(client, prometheus, rate_window="30s")
        deadline = time.monotonic() + 30
        snap = None
        while time.monotonic() < deadline:
            workers[0].prompt.inc(100)
            try:
                snap = await source.collect(target, ["h100"], now=time.time())
                if snap.variants[0].ready == 2 and snap.variants[0].prompt_tokens_per_second > 0:
                    break
            except (NoMetricsData, MetricsSourceError):
                pass
            await asyncio.sleep(0.5)
        assert snap is not None
        v = snap.variants[0]
        assert (v.ready, v.waiting) == (2, 4)
        assert v.kv_usage == pytest.approx(0.4)
        assert v.prompt_tokens_per_second > 0
        unknown = FleetTarget(
            "other", "chat", "tokenfleet", 16, (PodInfo("chat-worker-h100-0", "h100", "ip", "ready"),)
        )
        with pytest.raises(NoMetricsData):
            await source.collect(unknown, ["h100"], now=time.time())
        with pytest.raises(MetricsSourceError):
            await PrometheusSource(client, f"http://127.0.0.1:{free_port()}").collect(target, ["h100"], now=0)
