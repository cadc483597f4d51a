"""Per-signal desired replicas, tolerance, burst detection and the consolidation check."""

from __future__ import annotations

from typing import Any

import pytest

from tokenfleet_operator.resource import parse_spec
from tokenfleet_operator.signals import consolidation_blocker, is_burst, recommend
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot

pytestmark = pytest.mark.unit

SPEC = parse_spec(
    {
        "model": {"name": "chat", "uri": "pvc://m/x"},
        "engine": {"maxNumSeqs": 100},
        "accelerators": [{"name": "h100", "hourlyCost": 4.0}],
        "autoscaling": {
            "targets": {"queueDepthPerReplica": 10, "kvCacheUtilization": 0.8, "ttftP95Seconds": 2}
        },
    }
)
AUTO = SPEC.autoscaling


def snap(ready: int = 4, held: int = 0, ttft: float | None = None, **v: Any) -> FleetSnapshot:
    return FleetSnapshot(
        time=0,
        variants=(VariantSnapshot(name="h100", ready=ready, **v),),
        router_held=held,
        ttft_p95_seconds=ttft,
    )


@pytest.mark.parametrize(
    ("snapshot", "replicas", "signal"),
    [
        (snap(waiting=80), 8, "queue"),
        (snap(waiting=20, held=20), 4, "queue"),  # 10/replica: on target
        (snap(kv_usage=0.84), 4, "kv"),  # within tolerance: KV asks for no change
        (snap(kv_usage=0.4), 2, "kv"),
        (snap(kv_usage=0.4, kv_capacity_tokens_per_replica=1000, tokens_in_flight=6400), 8, "tokens"),
        (snap(kv_usage=0.5, ttft=2.3), 5, "ttft"),  # 15 % over the SLO: ceil(4 x 1.15)
        (snap(kv_usage=0.5, ttft=5.0), 6, "ttft"),  # 2.5 x the SLO, capped at 1.5 x per reading
        (snap(kv_usage=0.5, ttft=2.1), 3, "kv"),  # within tolerance of the SLO: TTFT stays silent
        (snap(ready=0, held=25), 3, "held"),
        (snap(ready=0, starting=2), 2, "none"),
    ],
)
def test_recommend(snapshot: FleetSnapshot, replicas: int, signal: str) -> None:
    rec = recommend(AUTO, snapshot)
    assert (rec.replicas, rec.signal) == (replicas, signal)


def test_recommend_is_cached_by_value() -> None:
    recommend.cache_clear()
    first = recommend(AUTO, snap(waiting=80))
    again = recommend(AUTO, snap(waiting=80))  # an equal, separately built snapshot
    assert again is first and recommend.cache_info().hits == 1


def test_ttft_never_asks_for_fewer() -> None:
    assert recommend(AUTO, snap(kv_usage=0.8, ttft=0.1)).replicas == 4


@pytest.mark.parametrize(
    ("snapshot", "burst"),
    [
        (snap(waiting=80), True),
        (snap(waiting=60), False),
        (snap(ready=0, held=1), True),
        (snap(ready=0), False),
    ],
)
def test_is_burst(snapshot: FleetSnapshot, burst: bool) -> None:
    assert is_burst(AUTO, snapshot) is burst


@pytest.mark.parametrize(
    ("snapshot", "remaining", "blocker"),
    [
        (snap(kv_usage=0.5), 3, None),  # 0.5 x 4/3 = 67 % stays under 80 %
        (snap(kv_usage=0.7), 3, "KV cache would be 93%"),
        (snap(kv_usage=0.5), 2, "KV cache would be 100%"),
        (snap(kv_usage=0.3), 2, None),
        (snap(kv_usage=0.3, waiting=30), 2, "queue would be 15.0/replica"),
        (snap(kv_usage=0.1, running=300), 3, "running batches would be 100% full"),
        (snap(kv_usage=0.1), 0, None),
        (snap(kv_usage=0.1, running=1), 0, "the fleet is not idle"),
    ],
)
def test_consolidation(snapshot: FleetSnapshot, remaining: int, blocker: str | None) -> None:
    got = consolidation_blocker(AUTO, SPEC.engine, snapshot, remaining)
    assert (got is None) if blocker is None else (got is not None and got.startswith(blocker))
