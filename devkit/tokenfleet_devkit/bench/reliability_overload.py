"""The overload scenario on local processes: measure the fleet, then offer it many times its capacity.

Steps: sim workers + a real router (reliability_fleet) -> capacity measured with closed-loop
clients through the router -> memory sampling starts -> an open-loop burst at `factor` x capacity
for `duration_s`, while the operator's policy may add workers (reliability_scaler) -> every
answer sorted (reliability_burst) -> figures and the invariants' verdicts.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tokenfleet_common.metric_names import ROUTER_REQUESTS
from tokenfleet_devkit.bench.reliability_burst import RequestShape, measure_capacity, run_burst
from tokenfleet_devkit.bench.reliability_fleet import MODEL, FleetOptions, ProcessFleet
from tokenfleet_devkit.bench.reliability_rss import MemorySampler
from tokenfleet_devkit.bench.reliability_scaler import PolicyScaler, fleet_spec

Say = Callable[[str], None]


@dataclass(frozen=True)
class OverloadOptions:
    factor: float = 10.0
    duration_s: float = 60.0
    capacity_probe_s: float = 8.0
    workers: int = 2
    max_workers: int = 4  # the policy's maxReplicas; equal to `workers` turns scaling off
    max_tokens: int = 128  # long answers: 10x capacity in few requests a second, little client CPU
    fleet: FleetOptions = field(default_factory=FleetOptions)
    keep_logs: Path | None = None  # where the processes' logs stay (default: a temp dir, removed)


def invariants(figures: dict[str, Any]) -> dict[str, bool]:
    """The issue's claims about overload, each true or false for one run's figures (pure)."""
    load = figures["requests"]
    judged = [m for m in figures["peak_rss"].values() if m["bounded"] is not None]
    return {
        "no accepted request lost": load["accepted"] == load["completed"] and load["failed"] == 0,
        "429 beyond the bounded queue": load["rejected_429"] > 0,
        "every 429 has Retry-After": load["rejected_429_without_retry_after"] == 0,
        "no process died": not figures["exited"],
        # Workers that joined late may have too few samples to judge (None); the rest must level off.
        "memory bounded": bool(judged) and all(m["bounded"] for m in judged),
        "fleet scaled up": figures["replicas_after"] > figures["replicas_before"],
    }


def router_answers(metrics_text: str) -> dict[str, int]:
    """The router's own count of answers by status: "429 router" when it refused a request itself,
    "429 worker" when it passed on a worker's refusal (pure)."""
    answers: dict[str, int] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name != ROUTER_REQUESTS:
                continue
            source = "router" if sample.labels.get("worker") == "none" else "worker"
            key = f"{sample.labels.get('status')} {source}"
            answers[key] = answers.get(key, 0) + int(sample.value)
    return dict(sorted(answers.items()))


def _scrape_router(url: str) -> dict[str, int]:
    try:
        return router_answers(httpx.get(url + "/metrics", timeout=10.0).text)
    except (httpx.HTTPError, ValueError):
        return {}


def run_overload(options: OverloadOptions, say: Say = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tokenfleet-bench-reliability-") as tmp:
        root = options.keep_logs or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        fleet = ProcessFleet(root, options.fleet)
        try:
            return _run(fleet, options, say)
        finally:
            fleet.close()


def _run(fleet: ProcessFleet, options: OverloadOptions, say: Say) -> dict[str, Any]:
    for _ in range(options.workers):
        fleet.start_worker()
    router = fleet.start_router()
    fleet.wait_ready()
    say(f"fleet ready: {options.workers} workers and a router")
    shape = RequestShape(MODEL, options.max_tokens)
    concurrency = options.workers * options.fleet.max_num_seqs
    capacity = asyncio.run(measure_capacity(router.url, shape, concurrency, options.capacity_probe_s))
    rate = options.factor * capacity
    say(
        f"capacity {capacity:.1f} req/s ({options.workers} workers, {concurrency} closed-loop clients, "
        f"{options.max_tokens} tokens each); burst {options.factor:g}x = {rate:.1f} req/s "
        f"for {options.duration_s:g}s"
    )
    sampler = MemorySampler(fleet.pids())
    scaler = PolicyScaler(
        fleet,
        fleet_spec(options.workers, max(options.max_workers, options.workers), options.fleet.max_num_seqs),
        sampler.add,
    )
    replicas_before = fleet.num_serving
    load_before = os.getloadavg()[0]
    answers_before = _scrape_router(router.url)  # the capacity probe's answers, left out below
    sampler.start()
    if options.max_workers > options.workers:
        scaler.start()
    started = time.monotonic()
    counts = asyncio.run(run_burst(router.url, shape, rate, options.duration_s))
    burst_s = time.monotonic() - started
    if options.max_workers > options.workers:
        scaler.stop()
    memory = sampler.stop()
    answers_after = _scrape_router(router.url)
    answers = {
        k: n - answers_before.get(k, 0) for k, n in answers_after.items() if n > answers_before.get(k, 0)
    }
    exited = {name: code for name, code in fleet.exit_codes().items() if code is not None}
    figures: dict[str, Any] = {
        "scenario": "overload",
        "mode": "processes",
        "capacity_rps": capacity,
        "offered_rps": rate,
        "factor": options.factor,
        "duration_s": options.duration_s,
        "burst_wall_s": burst_s,
        # Timings are only comparable on a machine that is not oversubscribed: say how loaded it was.
        "machine": {
            "cpus": os.cpu_count(),
            "load_1m_before": load_before,
            "load_1m_after": os.getloadavg()[0],
        },
        "requests": counts.as_dict(),
        "peak_rss": memory,
        "router_answers": answers,
        "replicas_before": replicas_before,
        "replicas_after": fleet.num_serving,
        "scale_events": [vars(e) for e in scaler.events],
        "scaler_errors": scaler.errors,
        "exited": exited,
        "router_limits": {
            "max_held": options.fleet.router_max_held,
            "queue_timeout_s": options.fleet.router_queue_timeout_s,
            "worker_max_waiting": options.fleet.worker_max_waiting,
            "max_num_seqs": options.fleet.max_num_seqs,
        },
    }
    figures["invariants"] = invariants(figures)
    return figures
