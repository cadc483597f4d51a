"""Scale a process fleet with the operator's own policy, for runs without a cluster.

Every interval the router's `/fleet` view (each worker's polled queue, batch and KV usage, plus the
requests the router holds) becomes the `FleetSnapshot` the operator would build from the same
workers, and the operator's pure `decide` says how many workers to run. Only scale-up is applied
(a worker process is started; it joins the router once ready): the scenario ends at the burst's
end, so a scale-down would not be observed anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tokenfleet_devkit.bench.reliability_fleet import ProcessFleet
from tokenfleet_operator.policy import decide
from tokenfleet_operator.resource import InferenceDeploymentSpec, parse_spec
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot

VARIANT = "sim"
HISTORY_S = 60.0


def fleet_spec(min_replicas: int, max_replicas: int, max_num_seqs: int) -> InferenceDeploymentSpec:
    return parse_spec(
        {
            "model": {"name": "overload-tiny", "uri": "file:///unused"},
            "engine": {"backend": "sim", "maxNumSeqs": max_num_seqs},
            "accelerators": [{"name": VARIANT, "hourlyCost": 1.0, "device": "cpu"}],
            "autoscaling": {
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "targets": {"queueDepthPerReplica": 2, "kvCacheUtilization": 0.8},
                "scaleUp": {"stabilizationSeconds": 0, "maxStep": 2},
                "metrics": {"intervalSeconds": 1},
            },
        }
    )


def snapshot_from_fleet(fleet: dict[str, Any], num_starting: int, now: float) -> FleetSnapshot:
    """The policy's view of one router `/fleet` answer (pure)."""
    endpoints = [e for e in fleet.get("endpoints", []) if e.get("available")]
    kv = [float(e.get("kv_cache_usage") or 0.0) for e in endpoints]
    variant = VariantSnapshot(
        name=VARIANT,
        ready=len(endpoints),
        starting=num_starting,
        waiting=float(sum(int(e.get("waiting") or 0) for e in endpoints)),
        running=float(sum(int(e.get("running") or 0) for e in endpoints)),
        kv_usage=sum(kv) / len(kv) if kv else 0.0,
        tokens_in_flight=float(sum(int(e.get("tokens_in_flight") or 0) for e in endpoints)),
    )
    return FleetSnapshot(time=now, variants=(variant,), router_held=int(fleet.get("held") or 0))


@dataclass(frozen=True)
class ScaleEvent:
    at_s: float  # since the scaler started
    previous: int
    replicas: int
    reason: str


class PolicyScaler:
    """Runs `decide` every `interval_s` on a thread; `on_joined(name, pid)` hears of workers that joined."""

    def __init__(
        self,
        fleet: ProcessFleet,
        spec: InferenceDeploymentSpec,
        on_joined: Callable[[str, int], None],
        interval_s: float = 1.0,
    ) -> None:
        self.fleet = fleet
        self.spec = spec
        self.on_joined = on_joined
        self.interval_s = interval_s
        self.events: list[ScaleEvent] = []
        self.errors = 0
        self._history: list[FleetSnapshot] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-scaler", daemon=True)
        self._started = time.monotonic()

    def tick(self, now: float) -> None:
        assert self.fleet.router is not None
        self._admit()
        try:
            view = httpx.get(self.fleet.router.url + "/fleet", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            self.errors += 1  # no snapshot this interval: the policy sees the gap as stale data
            return
        self._history.append(snapshot_from_fleet(view, self.fleet.num_starting, now))
        self._history = [s for s in self._history if s.time >= now - HISTORY_S]
        current = len([w for w in self.fleet.workers if w.process.poll() is None])
        decision = decide(self.spec, self._history, {VARIANT: current}, now)
        if decision.total > current:
            self.events.append(ScaleEvent(now - self._started, current, decision.total, decision.reason))
            for _ in range(decision.total - current):
                self.fleet.start_worker()

    def _admit(self) -> None:
        for member in self.fleet.admit_ready():
            self.on_joined(member.name, member.process.pid)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick(time.monotonic())

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._admit()
