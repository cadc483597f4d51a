"""Where fleet snapshots come from: direct scrapes of worker pods, or PromQL against Prometheus.

Both implement `MetricsSource.collect(target, variants, now)`. "The source answered but has no data
for this fleet" raises NoMetricsData; "the source could not be asked" raises MetricsSourceError. The
caller records either as a stale snapshot, so the policy holds instead of scaling down.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Protocol

import httpx

from tokenfleet_common import metric_names
from tokenfleet_common.metric_profiles import MetricProfile, profile
from tokenfleet_operator.fleet_pods import FleetTarget, PodInfo, assemble_snapshot
from tokenfleet_operator.metrics_parsing import (
    MetricsFormatError,
    PodSample,
    counter_rate,
    parse_pod_sample,
    sample_values,
)
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot

MIN_SCRAPED_FRACTION = 0.5  # fewer ready pods answering than this is no measurement of the fleet


class NoMetricsData(Exception):
    """The source was reachable but holds no metrics for the fleet's ready workers."""


class MetricsSourceError(Exception):
    """The source could not be queried (connection, timeout, bad response)."""


class MetricsSource(Protocol):
    async def collect(self, target: FleetTarget, variants: Sequence[str], now: float) -> FleetSnapshot: ...


def _router_counts(text: str) -> tuple[int, float]:
    """(requests held, routing decisions so far) from one router's /metrics text."""
    values = sample_values(text)

    def total(name: str) -> float:
        return sum(v for _, v in values.get(name, []) if not math.isnan(v))

    return int(total(metric_names.ROUTER_HELD)), total(metric_names.ROUTER_DECISIONS)


class DirectScrapeSource:
    """Scrapes every ready worker's /metrics concurrently; rates come from deltas between scrapes."""

    def __init__(self, client: httpx.AsyncClient, timeout_seconds: float = 2.0) -> None:
        self._client = client
        self._timeout = timeout_seconds
        self._previous: dict[str, dict[str, tuple[float, PodSample]]] = {}  # fleet -> pod -> (time, sample)
        # fleet -> router pod -> (time, routing decisions so far)
        self._decisions: dict[str, dict[str, tuple[float, float]]] = {}

    async def _scrape(self, pod: PodInfo, metric_profile: MetricProfile) -> PodSample | None:
        try:
            response = await self._client.get(f"http://{pod.ip}:{pod.port}/metrics", timeout=self._timeout)
            response.raise_for_status()
            return parse_pod_sample(response.text, metric_profile)
        except (httpx.HTTPError, MetricsFormatError):
            return None

    async def _routers(
        self, fleet_key: str, routers: Sequence[PodInfo], now: float
    ) -> tuple[int, float | None]:
        """Requests the routers hold, and the rate they sent requests to workers since the last scrape
        (None until two scrapes of some router)."""

        async def one(pod: PodInfo) -> tuple[int, float] | None:
            try:
                response = await self._client.get(
                    f"http://{pod.ip}:{pod.port}/metrics", timeout=self._timeout
                )
                response.raise_for_status()
                return _router_counts(response.text)
            except (httpx.HTTPError, MetricsFormatError):
                return None  # a router we cannot read holds nothing we can act on

        ready = [p for p in routers if p.ip and p.state == "ready"]
        answers = await asyncio.gather(*(one(p) for p in ready))
        before = self._decisions.get(fleet_key, {})
        held, rate, is_rate_known = 0, 0.0, False
        seen: dict[str, tuple[float, float]] = {}
        for pod, answer in zip(ready, answers, strict=True):
            if answer is None:
                continue
            held += answer[0]
            seen[pod.name] = (now, answer[1])
            if pod.name in before:
                then, count = before[pod.name]
                rate += counter_rate(count, answer[1], now - then)
                is_rate_known = True
        self._decisions[fleet_key] = seen
        return held, rate if is_rate_known else None

    async def collect(self, target: FleetTarget, variants: Sequence[str], now: float) -> FleetSnapshot:
        metric_profile = profile(target.profile)
        ready = target.ready_workers
        results, (held, dispatched) = await asyncio.gather(
            asyncio.gather(*(self._scrape(p, metric_profile) for p in ready)),
            self._routers(target.key, target.routers, now),
        )
        samples = {pod.name: s for pod, s in zip(ready, results, strict=True) if s is not None}
        if ready and len(samples) < MIN_SCRAPED_FRACTION * len(ready):
            raise NoMetricsData(
                f"{len(samples)} of {len(ready)} ready workers of {target.key} returned metrics"
            )
        previous = self._previous.get(target.key, {})
        snapshot = assemble_snapshot(target, variants, samples, previous, now, held, dispatched)
        self._previous[target.key] = {name: (now, s) for name, s in samples.items()}
        return snapshot

    def forget(self, fleet_key: str) -> None:
        self._previous.pop(fleet_key, None)
        self._decisions.pop(fleet_key, None)


def _selector(namespace: str, pod_prefix: str) -> str:
    return f'{{namespace="{namespace}",pod=~"{pod_prefix}-.*"}}'


class PrometheusSource:
    """PromQL against a Prometheus that scrapes the workers with `namespace` and `pod` target labels."""

    def __init__(
        self, client: httpx.AsyncClient, url: str, timeout_seconds: float = 5.0, rate_window: str = "1m"
    ) -> None:
        self._client = client
        self._url = url.rstrip("/")
        self._timeout = timeout_seconds
        self._window = rate_window

    async def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        try:
            response = await self._client.get(
                f"{self._url}/api/v1/query", params={"query": promql}, timeout=self._timeout
            )
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MetricsSourceError(f"Prometheus query failed: {exc}") from exc
        if body.get("status") != "success":
            raise MetricsSourceError(f"Prometheus answered {body.get('errorType')}: {body.get('error')}")
        out = []
        for item in body.get("data", {}).get("result", []):
            value = float(item["value"][1])
            if not math.isnan(value):
                out.append((item.get("metric", {}), value))
        return out

    async def _by_pod(self, promql: str) -> dict[str, float]:
        return {labels.get("pod", ""): value for labels, value in await self.query(promql)}

    async def collect(self, target: FleetTarget, variants: Sequence[str], now: float) -> FleetSnapshot:
        p = profile(target.profile)
        sel = _selector(target.namespace, f"{target.name}-worker")
        w = self._window
        queries = {
            "waiting": f"sum by (pod) ({p.waiting}{sel})",
            "running": f"sum by (pod) ({p.running}{sel})",
            "kv": f"max by (pod) ({p.kv_usage}{sel})",
            "prompt": f"sum by (pod) (rate({p.prompt_tokens}{sel}[{w}]))",
            "generation": f"sum by (pod) (rate({p.generation_tokens}{sel}[{w}]))",
        }
        if p.name == "tokenfleet":
            queries["tokens"] = f"sum by (pod) (tokenfleet_tokens_in_flight{sel})"
            queries["blocks"] = f"sum by (pod) (tokenfleet_kv_cache_blocks_total{sel})"
        names = list(queries)
        values = dict(
            zip(names, await asyncio.gather(*(self._by_pod(queries[n]) for n in names)), strict=True)
        )
        ready = target.ready_workers
        answered = [pod for pod in ready if pod.name in values["waiting"] or pod.name in values["kv"]]
        if ready and len(answered) < MIN_SCRAPED_FRACTION * len(ready):
            raise NoMetricsData(
                f"Prometheus has metrics for {len(answered)} of {len(ready)} ready workers of {target.key}"
            )
        ttft_rows = await self.query(
            f"histogram_quantile(0.95, sum by (le) (rate({p.ttft}_bucket{sel}[{w}])))"
        )
        routers = _selector(target.namespace, target.name + "-router")
        held_rows = await self.query(f"sum({metric_names.ROUTER_HELD}{routers})")
        dispatched_rows = await self.query(f"sum(rate({metric_names.ROUTER_DECISIONS}{routers}[{w}]))")
        result = []
        for variant in variants:
            pods = [pod for pod in target.workers if pod.variant == variant]
            mine = [pod.name for pod in answered if pod.variant == variant]

            def total(key: str, names: list[str] = mine) -> float:
                return sum(values.get(key, {}).get(n, 0.0) for n in names)

            blocks = [values.get("blocks", {}).get(n, 0.0) for n in mine]
            known = [b for b in blocks if b > 0]
            result.append(
                VariantSnapshot(
                    name=variant,
                    ready=len(mine),
                    starting=sum(1 for pod in pods if pod.state == "starting"),
                    unschedulable=sum(1 for pod in pods if pod.state == "unschedulable"),
                    waiting=total("waiting"),
                    running=total("running"),
                    kv_usage=total("kv") / len(mine) if mine else 0.0,
                    tokens_in_flight=total("tokens"),
                    prompt_tokens_per_second=total("prompt"),
                    generation_tokens_per_second=total("generation"),
                    kv_capacity_tokens_per_replica=sum(known) / len(known) * target.block_size
                    if known
                    else 0.0,
                )
            )
        ttft = ttft_rows[0][1] if ttft_rows and not math.isinf(ttft_rows[0][1]) else None
        held = int(held_rows[0][1]) if held_rows else 0
        loads = tuple(
            sorted(
                (pod.name, values["waiting"].get(pod.name, 0.0) + values["running"].get(pod.name, 0.0))
                for pod in answered
            )
        )
        return FleetSnapshot(
            time=now,
            variants=tuple(result),
            ttft_p95_seconds=ttft,
            router_held=held,
            pod_loads=loads,
            dispatched_per_second=dispatched_rows[0][1] if dispatched_rows else None,
        )
