"""Per-signal desired replicas, tolerance, burst detection and the consolidation check."""

from __future__ import annotations

from typing import Any

import pytest

from tokenfleet_operator.resource import parse_spec
from tokenfleet_operator.signals import (
    consolidation_blocker,
    is_burst,
    planned_throughput_per_replica,
    recommend,
)
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


@pytest.mark.parametrize(
    ("snapshot", "replicas", "lasting"),
    [
        (snap(waiting=80, kv_usage=0.4), 8, 2),  # a backlog asks for 8; the load itself for 2
        (snap(kv_usage=0.5, ttft=5.0), 6, 3),  # TTFT reads the same backlog
        (snap(kv_usage=0.4, kv_capacity_tokens_per_replica=1000, tokens_in_flight=6400), 8, 8),
        (snap(ready=0, held=20), 2, 0),  # requests held with no worker: a backlog too
        (snap(ready=0, starting=3), 3, 3),  # nothing measured: what is coming is kept, then and later
    ],
)
def test_lasting_is_the_largest_ask_of_the_load_signals(
    snapshot: FleetSnapshot, replicas: int, lasting: int
) -> None:
    rec = recommend(AUTO, snapshot)
    assert (rec.replicas, rec.lasting) == (replicas, lasting)


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


def at(time: float, ready: int, rate: float, waiting: float = 0.0, ttft: float | None = 1.0) -> FleetSnapshot:
    """A snapshot of `ready` replicas processing `rate` tokens/s in all, with `waiting` queued."""
    variant = VariantSnapshot(
        name="h100", ready=ready, waiting=waiting, kv_usage=0.1, prompt_tokens_per_second=rate
    )
    return FleetSnapshot(time=time, variants=(variant,), ttft_p95_seconds=ttft)


@pytest.mark.parametrize(
    ("history", "planned"),
    [
        ([at(0, 4, 4000), at(5, 4, 4000)], None),  # two intervals: too few to learn from
        ([at(0, 4, 0), at(5, 4, 0), at(10, 4, 0)], None),  # no traffic
        # Saturated (4 waiting per replica) within the TTFT target: the median saturated rate.
        ([at(t, 2, r, waiting=8) for t, r in ((0, 1800), (5, 2000), (10, 2400))], 1000.0),
        # Saturation broke the TTFT target: half the median saturated rate.
        ([at(t, 2, r, waiting=8, ttft=3.0) for t, r in ((0, 1800), (5, 2000), (10, 2400))], 500.0),
        # No queue, TTFT kept: the highest per-replica rate plus the 10 % tolerance.
        ([at(0, 4, 2000), at(5, 4, 3200), at(10, 4, 2400)], 880.0),
        # A rate carried with TTFT over target proves nothing.
        ([at(0, 4, 2000), at(5, 4, 3200, ttft=2.5), at(10, 4, 2400)], 660.0),
    ],
)
def test_planned_throughput_is_learned_from_history(
    history: list[FleetSnapshot], planned: float | None
) -> None:
    got = planned_throughput_per_replica(AUTO, history)
    assert got == pytest.approx(planned) if planned is not None else got is None


def test_probing_lets_one_replica_fewer_carry_the_load_only_on_a_calm_history() -> None:
    calm = [at(t, 4, 2000) for t in (0, 5, 10)]
    assert planned_throughput_per_replica(AUTO, calm, may_probe=True) == pytest.approx(500 * 4 / 3)
    assert recommend(AUTO, calm[-1], 500 * 4 / 3).replicas == 3
    queued = [at(0, 4, 2000, waiting=8), *calm[1:]]
    assert planned_throughput_per_replica(AUTO, queued, may_probe=True) == pytest.approx(550.0)


def test_throughput_holds_a_fleet_whose_queue_and_kv_read_flat() -> None:
    busy = snap(kv_usage=0.1, prompt_tokens_per_second=3600)  # 900 tokens/s on each of 4 replicas
    assert recommend(AUTO, busy).replicas == 1  # KV alone would consolidate to one replica
    held = recommend(AUTO, busy, 1000.0)
    assert (held.replicas, held.signal) == (4, "throughput")
    assert recommend(AUTO, busy, 2000.0).replicas == 2  # capacity proven higher: fewer suffice


def test_throughput_never_asks_for_more_than_ready() -> None:
    assert recommend(AUTO, snap(kv_usage=0.8, prompt_tokens_per_second=8000), 1000.0).replicas == 4
