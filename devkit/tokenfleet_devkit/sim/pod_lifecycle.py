"""A real fleet's replicas as the watch saw them (pure): the operator's orders and each worker pod's life.

The simulator's cold start runs from the autoscaler's order to a replica the router can use. On the real
fleet that is the worker Deployment's `spec.replicas` rising (the operator's patch, as the API server
accepted it) to the pod's Ready condition: the Deployment and ReplicaSet controllers, scheduling, the
process start and the readiness probe all lie in between. Pod timestamps cannot measure it: they have
whole seconds and start at the pod's creation, after the controllers' part. Watch events stamped on the
replay's own clock can.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass
class PodLife:
    """Seconds on the replay's clock (negative: before the replay started)."""

    added_s: float
    ready_s: float | None = None  # first seen Ready
    gone_s: float | None = None  # deletion began: the router stops sending to it here


@dataclass(frozen=True)
class Order:
    at_s: float
    replicas: int


def scale_ups(orders: Sequence[Order]) -> list[Order]:
    """The orders that raised the replica count; the count starts at 0, so the Deployment's creation,
    when the watch saw it, is the first."""
    counts = [0, *(o.replicas for o in orders)]
    return [o for o, before in zip(orders, counts, strict=False) if o.replicas > before]


def order_to_ready_s(orders: Sequence[Order], pods: Iterable[PodLife]) -> list[float]:
    """For every pod added after a scale-up and turned Ready: Ready minus the latest scale-up before it
    was added, in order of the pods' creation. Pods with no scale-up before them (the starting replicas)
    are left out."""
    ups = scale_ups(orders)
    lags = []
    for pod in sorted(pods, key=lambda p: p.added_s):
        before = [o.at_s for o in ups if o.at_s <= pod.added_s]
        if before and pod.ready_s is not None:
            lags.append(pod.ready_s - before[-1])
    return lags


def ready_curve(pods: Mapping[str, PodLife], end_s: float) -> tuple[tuple[float, float], ...]:
    """Pods Ready and not being deleted, as an exact step curve over [0, end_s]."""
    changes: list[tuple[float, int]] = []
    for pod in pods.values():
        if pod.ready_s is None or (pod.gone_s is not None and pod.gone_s <= pod.ready_s):
            continue
        changes.append((max(0.0, pod.ready_s), +1))
        if pod.gone_s is not None:
            changes.append((max(0.0, pod.gone_s), -1))
    return step_curve(changes, end_s)


def step_curve(changes: Iterable[tuple[float, int]], end_s: float) -> tuple[tuple[float, float], ...]:
    """A count over [0, end_s] from (time, +1 or -1) changes; changes at or before 0 make its start."""
    ordered = sorted(changes)
    count = float(sum(d for t, d in ordered if t <= 0.0))
    curve: list[tuple[float, float]] = [(0.0, count)]
    for t, d in ordered:
        if 0.0 < t <= end_s:
            count += d
            if curve[-1][0] == t:
                curve[-1] = (t, count)
            else:
                curve.append((t, count))
    if curve[-1][0] < end_s:
        curve.append((end_s, count))
    return tuple(curve)
