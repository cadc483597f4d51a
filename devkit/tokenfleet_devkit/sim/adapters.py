"""The one place the simulator speaks the operator's and the router's interfaces.

- `RouterModel` drives the router's real strategy (`tokenfleet_router.strategies`), load view and
  admission rule with simulated load reports, polled no more often than the real router polls.
- `OperatorPolicy` builds an `InferenceDeploymentSpec` with the operator's own parser and calls its
  pure `decide` on simulated `FleetSnapshot`s.
If those interfaces move, only this module changes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenfleet_common.load_report import LoadReport
from tokenfleet_devkit.sim.observation import Observation
from tokenfleet_devkit.sim.request import SimRequest
from tokenfleet_devkit.sim.worker import SimWorker
from tokenfleet_operator.policy import decide, history_seconds
from tokenfleet_operator.resource import InferenceDeploymentSpec, parse_spec
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot
from tokenfleet_router import admission
from tokenfleet_router.load_view import LoadView, SaturationLimits
from tokenfleet_router.strategies import build_strategy
from tokenfleet_router.types import Endpoint, RequestInfo

__all__ = [
    "FleetSnapshot",
    "OperatorPolicy",
    "RouterModel",
    "VariantSnapshot",
    "admission",
    "fleet_spec",
]

REPORT_POLL_S = 0.25  # the router's default load-poll interval


class RouterModel:
    def __init__(
        self, strategy: str, seed: int, limits: SaturationLimits | None = None, poll_s: float = REPORT_POLL_S
    ) -> None:
        self.strategy = build_strategy(strategy, rng=random.Random(seed))
        self.view = LoadView(limits)
        self.poll_s = poll_s
        self._workers: dict[str, SimWorker] = {}
        self._reported_at: dict[str, float] = {}

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    def set_workers(self, workers: Iterable[SimWorker]) -> None:
        self._workers = {w.name: w for w in workers}
        removed = self.view.set_endpoints(Endpoint(name, f"sim://{name}") for name in self._workers)
        for name in removed:
            self.strategy.forget_worker(name)
            self._reported_at.pop(name, None)

    def _poll(self, now: float) -> None:
        for name, worker in self._workers.items():
            last = self._reported_at.get(name)
            if last is not None and now - last < self.poll_s:
                continue
            self._reported_at[name] = now
            report = LoadReport(
                waiting=len(worker.waiting),
                running=worker.num_running,
                kv_cache_usage=worker.kv_usage,
                free_blocks=max(0, worker.capacity - worker.kv_used),
                total_blocks=worker.capacity,
                tokens_in_flight=worker.tokens_in_flight,
                max_num_seqs=worker.engine.max_num_seqs,
                prefill_tokens_waiting=worker.prefill_tokens_waiting,
                prefix_cache_tokens=worker.capacity,
            )
            self.view.record_report(name, report, now)

    def pick(self, request: SimRequest, now: float) -> SimWorker | None:
        if not self._workers:
            return None
        self._poll(now)
        info = RequestInfo(
            block_hashes=request.hash_ids,
            num_prompt_tokens=request.prompt_tokens,
            max_tokens=request.output_tokens,
        )
        chosen = self.strategy.choose(info, self.view.snapshot(now))
        if chosen is None:
            return None
        self.view.begin(
            chosen.name, request.prompt_tokens + request.output_tokens, request.prompt_tokens, now
        )
        return self._workers[chosen.name]

    def first_token(self, request: SimRequest) -> None:
        if request.worker is not None:
            self.view.first_token(request.worker, request.prompt_tokens)

    def done(self, request: SimRequest) -> None:
        if request.worker is not None:
            prefill_left = 0 if request.first_token_time is not None else request.prompt_tokens
            self.view.end(request.worker, request.prompt_tokens + request.output_tokens, prefill_left)


@dataclass(frozen=True)
class VariantPrice:
    name: str
    hourly_cost: float
    max_replicas: int
    tokens_per_second: float | None = (
        None  # declared full-load throughput (spec.accelerators[].tokensPerSecond)
    )


def fleet_spec(
    variants: Sequence[VariantPrice],
    *,
    min_replicas: int = 1,
    max_replicas: int = 64,
    interval_s: float = 5.0,
    max_num_seqs: int = 256,
    max_batched_tokens: int = 8192,
    autoscaling: Mapping[str, Any] | None = None,
) -> InferenceDeploymentSpec:
    """An InferenceDeployment spec for the simulated fleet, parsed by the operator's own parser."""
    auto: dict[str, Any] = {
        "mode": "builtin",
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": {"source": "direct", "intervalSeconds": int(interval_s)},
    }
    for key, value in (autoscaling or {}).items():
        if isinstance(value, Mapping) and isinstance(auto.get(key), Mapping):
            auto[key] = {**auto[key], **value}
        else:
            auto[key] = value
    return parse_spec(
        {
            "model": {"name": "sim", "uri": "sim://model"},
            "engine": {"backend": "sim", "maxNumSeqs": max_num_seqs, "maxBatchedTokens": max_batched_tokens},
            "accelerators": [_accelerator(v) for v in variants],
            "autoscaling": auto,
        }
    )


def _accelerator(variant: VariantPrice) -> dict[str, Any]:
    declared = {} if variant.tokens_per_second is None else {"tokensPerSecond": variant.tokens_per_second}
    return {
        "name": variant.name,
        "hourlyCost": variant.hourly_cost,
        "maxReplicas": variant.max_replicas,
    } | declared


class OperatorPolicy:
    """tokenfleet's policy: the operator's `decide` over a bounded history of snapshots."""

    is_cold_start_free = False

    def __init__(self, spec: InferenceDeploymentSpec, name: str = "tokenfleet") -> None:
        self.name = name
        self.spec = spec
        self._keep_s = history_seconds(spec)  # what the operator keeps
        self.history: list[FleetSnapshot] = []
        self.last_reason = ""

    def decide(self, observation: Observation) -> dict[str, int]:
        now = observation.now
        self.history.append(observation.snapshot)
        while self.history and self.history[0].time < now - self._keep_s:
            self.history.pop(0)
        decision = decide(self.spec, self.history, observation.current, now)
        self.last_reason = decision.reason
        return dict(decision.replicas)
