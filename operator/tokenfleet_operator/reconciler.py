"""Applies what the pure modules decide: children for a spec, and one autoscaling tick per interval.

`Reconciler.reconcile(body)` keeps the children in line with the spec, never touching the replica
counts already running. `Reconciler.tick(body)` takes the fleet's pods, collects a snapshot, asks the
policy (or, in modes external/off, spreads spec.replicas), and writes only what changed: worker
Deployments, pod deletion costs before a scale-down, the status, and an Event for each scaling change.
Both read the cluster from the watch-backed `ClusterCache` (never from the API server), so a tick of an
unchanged fleet sends no request at all; at most `TICK_CONCURRENCY` ticks run at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tokenfleet_operator import child_meta, children, fleet_pods, policy, status
from tokenfleet_operator.kube import KubeApi
from tokenfleet_operator.metrics_source import (
    DirectScrapeSource,
    MetricsSource,
    MetricsSourceError,
    NoMetricsData,
    PrometheusSource,
)
from tokenfleet_operator.operator_metrics import OperatorMetrics
from tokenfleet_operator.resource import InferenceDeploymentSpec, parse_spec
from tokenfleet_operator.settings import ROUTER_PORT, WORKER_PORT, OperatorSettings
from tokenfleet_operator.snapshot import FleetSnapshot
from tokenfleet_operator.watch_cache import ClusterCache

log = logging.getLogger("tokenfleet.operator")


@dataclass
class FleetState:
    history: list[FleetSnapshot] = field(default_factory=list)
    last_status: dict[str, Any] | None = None

    def remember(self, snapshot: FleetSnapshot, keep_seconds: float) -> None:
        self.history.append(snapshot)
        self.history = [s for s in self.history if s.time >= snapshot.time - keep_seconds]


IDENTITY_KINDS = ("ServiceAccount", "Role", "RoleBinding")
TICK_CONCURRENCY = 16  # ticks in flight at once: more fleets queue, they do not pile onto the API server


def owner_of(body: Mapping[str, Any]) -> child_meta.Owner:
    meta = body["metadata"]
    return child_meta.Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(
        self,
        api: KubeApi,
        http: httpx.AsyncClient,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        cache: ClusterCache,
        clock: Callable[[], float] = time.time,
        children_api: KubeApi | None = None,
    ) -> None:
        self.api = api  # ticks: replicas, deletion costs, status, Events
        self.cache = cache  # every read of children and pods
        # Spec changes get their own connections, so they never queue behind every fleet's tick.
        self.children_api = children_api or api
        for client in {id(api): api, id(self.children_api): self.children_api}.values():
            client.on_request = lambda verb: metrics.api_requests.labels(verb).inc()
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.states: dict[str, FleetState] = {}
        self._http = http
        self._direct = DirectScrapeSource(http, settings.scrape_timeout_seconds)
        self._prometheus: dict[str, PrometheusSource] = {}
        self._ticks = asyncio.Semaphore(TICK_CONCURRENCY)

    def state(self, owner: child_meta.Owner) -> FleetState:
        return self.states.setdefault(f"{owner.namespace}/{owner.name}", FleetState())

    def forget(self, owner: child_meta.Owner) -> None:
        key = f"{owner.namespace}/{owner.name}"
        self.states.pop(key, None)
        self._direct.forget(key)
        self.metrics.fleet.forget(owner.namespace, owner.name)

    def source(self, spec: InferenceDeploymentSpec) -> MetricsSource:
        url = spec.autoscaling.metrics.url
        if spec.autoscaling.metrics.source == "prometheus" and url:
            return self._prometheus.setdefault(url, PrometheusSource(self._http, url))
        return self._direct

    def live_replicas(self, owner: child_meta.Owner, spec: InferenceDeploymentSpec) -> dict[str, int] | None:
        """Replicas per variant as the worker Deployments have them; None when none exists yet."""
        found: dict[str, int] = {}
        for name in spec.variant_names:
            live = self.cache.get(
                "Deployment", owner.namespace, child_meta.worker_deployment_name(owner.name, name)
            )
            if live is not None:
                found[name] = int((live.get("spec") or {}).get("replicas", 0))
        return found or None

    async def apply(self, api: KubeApi, manifest: Mapping[str, Any]) -> bool:
        """Write `manifest` unless the cached live object matches it; True when written."""
        kind, meta = manifest["kind"], manifest["metadata"]
        written = await api.apply(manifest, self.cache.get(kind, meta["namespace"], meta["name"]))
        if written is None:
            return False
        self.cache.put(kind, written)  # the next read sees it, before the watch says so
        return True

    def initial_replicas(self, spec: InferenceDeploymentSpec) -> dict[str, int]:
        auto = spec.autoscaling
        total = auto.min_replicas if auto.mode == "builtin" else spec.replicas
        return policy.fixed_decision(spec, [], {}, total, "initial size", self.clock()).replicas

    async def reconcile(self, body: Mapping[str, Any]) -> int:
        """Bring the children in line with the spec; returns how many objects were written."""
        started = time.perf_counter()
        spec = parse_spec(body["spec"])
        owner = owner_of(body)
        api = self.children_api
        replicas = self.live_replicas(owner, spec) or self.initial_replicas(spec)
        manifests = children.build_children(owner, spec, replicas, self.settings)
        # The router's identity goes first and in order (a RoleBinding needs its Role and account);
        # everything else concurrently, so a spec change reaches the worker Deployments in one round trip.
        identity = [m for m in manifests if m["kind"] in IDENTITY_KINDS]
        writes = 0
        for manifest in sorted(identity, key=lambda m: IDENTITY_KINDS.index(m["kind"])):
            writes += await self.apply(api, manifest)
        rest = [m for m in manifests if m["kind"] not in IDENTITY_KINDS]
        writes += sum(await asyncio.gather(*(self.apply(api, m) for m in rest)))
        wanted = {child_meta.worker_deployment_name(owner.name, v) for v in spec.variant_names}
        for live in self.cache.of_fleet("Deployment", owner.namespace, owner.name):
            name = live["metadata"]["name"]
            component = (live["metadata"].get("labels") or {}).get(child_meta.LABEL_COMPONENT)
            if component == "worker" and name not in wanted:  # a variant removed from the spec
                await api.delete("Deployment", owner.namespace, name)
                self.cache.drop("Deployment", owner.namespace, name)
                writes += 1
        self.metrics.reconcile_seconds.labels("children").observe(time.perf_counter() - started)
        return writes

    async def _collect(
        self, spec: InferenceDeploymentSpec, owner: child_meta.Owner, now: float
    ) -> tuple[FleetSnapshot, list[dict[str, Any]]]:
        pods = self.cache.of_fleet("Pod", owner.namespace, owner.name)
        workers, routers = fleet_pods.split_pods(pods, WORKER_PORT, ROUTER_PORT)
        target = fleet_pods.FleetTarget(
            owner.namespace,
            owner.name,
            spec.autoscaling.metrics.profile,
            spec.engine.block_size,
            tuple(workers),
            tuple(routers),
        )
        try:
            return await self.source(spec).collect(target, spec.variant_names, now), pods
        except (NoMetricsData, MetricsSourceError) as exc:
            self.metrics.errors.labels("metrics").inc()
            log.warning("fleet=%s/%s event=metrics_stale error=%r", owner.namespace, owner.name, str(exc))
            return FleetSnapshot(time=now, is_stale=True), pods

    def _decide(
        self, spec: InferenceDeploymentSpec, state: FleetState, current: dict[str, int], now: float
    ) -> policy.Decision:
        mode = spec.autoscaling.mode
        if mode == "builtin":
            return policy.decide(spec, state.history, current, now)
        total = min(spec.replicas, spec.autoscaling.max_replicas)
        who = "HPA/KEDA through the scale subresource" if mode == "external" else "hand"
        return policy.fixed_decision(
            spec, state.history, current, total, f"mode {mode}: spec.replicas set by {who}", now
        )

    async def tick(self, body: Mapping[str, Any]) -> policy.Decision:
        """One autoscaling interval for one fleet."""
        async with self._ticks:
            return await self._tick(body)

    async def _tick(self, body: Mapping[str, Any]) -> policy.Decision:
        started = time.perf_counter()
        spec = parse_spec(body["spec"])
        owner = owner_of(body)
        now = self.clock()
        state = self.state(owner)
        snapshot, pods = await self._collect(spec, owner, now)
        state.remember(snapshot, policy.history_seconds(spec))
        current = self.live_replicas(owner, spec) or {}
        decision = self._decide(spec, state, current, now)
        if decision.is_change:
            await self._apply_replicas(owner, spec, decision, pods, snapshot)
        generation = int(body["metadata"].get("generation", 0))
        if spec.autoscaling.mode == "builtin" and spec.replicas != decision.total:
            # Mirror the decision into spec.replicas, as HPA does for its target, so /scale tells the truth.
            after = await self.api.set_fleet_replicas(owner.namespace, owner.name, decision.total)
            # Our own write is observed; a jump of more than one means someone else changed the spec too.
            generation = after if after == generation + 1 else generation
        previous = state.last_status if state.last_status is not None else dict(body.get("status") or {})
        new_status = status.build_status(owner.name, spec, decision, snapshot, generation, previous, iso(now))
        patch = status.status_changes(new_status, previous)
        if patch:
            await self.api.patch_status(owner.namespace, owner.name, patch)
        state.last_status = new_status
        self.metrics.fleet.publish(owner.namespace, owner.name, spec, new_status)
        event = status.scaling_event(decision)
        if event is not None:
            await self.api.post_event(owner.namespace, body, event.type, event.reason, event.message)
            log.info("fleet=%s/%s event=scaled reason=%r", owner.namespace, owner.name, event.message)
        self.metrics.decisions.labels(owner.namespace, owner.name, decision.direction).inc()
        self.metrics.reconcile_seconds.labels("tick").observe(time.perf_counter() - started)
        return decision

    async def _apply_replicas(
        self,
        owner: child_meta.Owner,
        spec: InferenceDeploymentSpec,
        decision: policy.Decision,
        pods: list[dict[str, Any]],
        snapshot: FleetSnapshot,
    ) -> None:
        shrinking = {name for name, n in decision.replicas.items() if n < decision.previous.get(name, 0)}
        if shrinking:
            # Mark the idlest pods first, so the ReplicaSet controller removes them and not busy ones.
            workers, _ = fleet_pods.split_pods(pods, WORKER_PORT, ROUTER_PORT)
            costs = fleet_pods.deletion_costs(
                [w for w in workers if w.variant in shrinking], snapshot.pod_loads
            )
            await self.api.set_deletion_costs(owner.namespace, pods, costs)
        for acc in spec.accelerators:
            if decision.replicas.get(acc.name, 0) != decision.previous.get(acc.name, 0):
                manifest = children.worker_deployment(
                    owner, spec, acc, decision.replicas[acc.name], self.settings
                )
                await self.apply(self.api, manifest)
