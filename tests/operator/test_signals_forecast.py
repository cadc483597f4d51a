"""The leading signal: the routers' request rate forecast a start-up ahead, turned into replicas."""

from __future__ import annotations

import math

import pytest

from tokenfleet_operator.forecast import (
    HORIZON_SECONDS,
    SPARE,
    Demand,
    demand_by_time,
    forecasts,
    is_bursty,
    tokens_per_request,
)
from tokenfleet_operator.resource import parse_spec
from tokenfleet_operator.signals import recommend, trailing_tokens_per_second
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot

pytestmark = pytest.mark.unit

AUTO = parse_spec(
    {
        "model": {"name": "chat", "uri": "pvc://m/x"},
        "accelerators": [{"name": "h100", "hourlyCost": 4.0}],
        "autoscaling": {"targets": {"queueDepthPerReplica": 10, "ttftP95Seconds": 2}},
    }
).autoscaling


def at(time: float, dispatched: float | None, tokens: float = 0.0, ready: int = 4) -> FleetSnapshot:
    variant = VariantSnapshot(name="h100", ready=ready, prompt_tokens_per_second=tokens, kv_usage=0.1)
    return FleetSnapshot(time=time, variants=(variant,), dispatched_per_second=dispatched)


def test_a_steady_rate_forecasts_itself() -> None:
    got = forecasts([at(t, 10.0) for t in range(0, 100, 5)])
    assert [f.rate for f in got] == pytest.approx([10.0] * 20)


def test_a_rising_rate_is_forecast_higher_than_its_latest_reading() -> None:
    history = [at(t, 1.0 + 0.1 * t) for t in range(0, 100, 5)]  # +0.1 request/s every second
    latest = forecasts(history)[-1]
    assert latest.level < 1.0 + 0.1 * 95  # the smoothed level lags the ramp...
    assert latest.rate > 1.0 + 0.1 * 95  # ...and the trend carries the forecast past the reading
    assert latest.rate < 1.0 + 0.1 * (95 + HORIZON_SECONDS)  # damped: not the whole horizon's trend


def test_a_falling_rate_never_forecasts_below_zero() -> None:
    history = [at(t, max(0.0, 20.0 - t)) for t in range(0, 40, 5)]
    assert all(f.rate >= 0.0 for f in forecasts(history))


def test_snapshots_without_a_router_rate_or_stale_are_skipped() -> None:
    stale = FleetSnapshot(time=10, is_stale=True, dispatched_per_second=99.0)
    got = forecasts([at(0, 5.0), at(5, None), stale, at(15, 5.0)])
    assert [f.time for f in got] == [0, 15]


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([at(0, 2.0, 2000.0), at(5, 6.0, 6000.0)], 1000.0),
        ([at(0, 0.0, 0.0), at(5, None, 500.0)], None),  # no requests seen: unknown
    ],
)
def test_tokens_per_request(history: list[FleetSnapshot], expected: float | None) -> None:
    got = tokens_per_request(history)
    assert got == pytest.approx(expected) if expected is not None else got is None


def rising(rate: float, tokens_per_request: float = 1000.0) -> list[FleetSnapshot]:
    """A minute at 1 request/s, then `rate`: the load the fleet has not carried yet."""
    return [
        at(t, 1.0 if t < 60 else rate, (1.0 if t < 60 else rate) * tokens_per_request)
        for t in range(0, 70, 5)
    ]


def test_demand_is_the_forecast_load_over_what_a_replica_carries_plus_spare() -> None:
    history = rising(10.0)
    demand = demand_by_time(history, planned_tokens_per_replica=2000.0)
    rate = forecasts(history)[-1].rate
    load = rate * tokens_per_request(history) / 2000.0  # type: ignore[operator]
    assert demand[65].replicas == pytest.approx(load + SPARE * math.sqrt(load))
    assert demand_by_time(history, None) == {}  # nothing learned yet: no signal
    assert demand_by_time([at(0, None, 100.0)], 2000.0) == {}  # no router rate: no signal


def test_demand_rises_only_for_load_above_what_was_recently_carried() -> None:
    steady = [at(t, 10.0, 10_000.0) for t in range(0, 120, 5)]
    assert not any(d.is_rising for d in demand_by_time(steady, 2000.0).values())  # carried all along
    assert demand_by_time(rising(10.0), 2000.0)[65].is_rising  # past the last minute's levels


def test_a_small_fleet_gets_a_larger_share_of_spare_than_a_large_one() -> None:
    small = demand_by_time(rising(2.0), 1000.0)[65].replicas
    large = demand_by_time(rising(40.0), 1000.0)[65].replicas
    small_load = forecasts(rising(2.0))[-1].rate * tokens_per_request(rising(2.0)) / 1000.0  # type: ignore[operator]
    large_load = forecasts(rising(40.0))[-1].rate * tokens_per_request(rising(40.0)) / 1000.0  # type: ignore[operator]
    assert small / small_load > large / large_load > 1.0


def test_demand_orders_replicas_only_when_rising() -> None:
    rec = recommend(AUTO, at(0, 50.0), None, demand=Demand(7.6, is_rising=True))
    assert (rec.replicas, rec.signal) == (8, "demand")
    steady = recommend(AUTO, at(0, 50.0), None, demand=Demand(7.6, is_rising=False))
    assert steady.signal != "demand"  # noise on a steady load orders nothing, and holds nothing either
    assert steady.replicas == recommend(AUTO, at(0, 50.0), None).replicas


def test_throughput_signal_reads_the_smoothed_rate_when_given() -> None:
    spiky = at(0, None, tokens=4000.0)  # one interval's spike: 1000 tokens/s on each of 4 replicas
    assert recommend(AUTO, spiky, 1000.0).replicas == 4
    assert recommend(AUTO, spiky, 1000.0, tokens_per_second=2000.0).replicas == 2


def test_trailing_tokens_per_second_is_the_mean_over_the_window() -> None:
    history = [at(0, None, 1000.0), at(5, None, 3000.0), at(10, None, 2000.0), at(15, None, 6000.0)]
    got = trailing_tokens_per_second(history, window_s=10.0)
    assert got == pytest.approx({0: 1000.0, 5: 2000.0, 10: 2500.0, 15: 4000.0})


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([10, 12, 9, 11, 8, 10, 13, 9], False),  # Poisson-like: variance about the mean
        ([0, 0, 60, 0, 0, 0, 55, 0], True),  # silent, then bursts
        ([0, 0, 0], None),  # nothing arrived: cannot tell
        ([10], None),  # one interval: cannot tell
    ],
)
def test_is_bursty_tells_bursts_from_noise(counts: list[int], expected: bool | None) -> None:
    history = [at(5.0 * i, c / 5.0) for i, c in enumerate([0, *counts])]
    assert is_bursty(history, window_s=300.0, now=5.0 * len(counts)) is expected


def test_trailing_rate_with_no_window_is_each_snapshots_own() -> None:
    history = [at(0, None, 1000.0), at(5, None, 3000.0)]
    assert trailing_tokens_per_second(history, window_s=0.0) == {0: 1000.0, 5: 3000.0}


def test_a_snapshots_demand_never_changes_with_later_snapshots() -> None:
    # Noise, then bursts, then noise: later readings flip whether the recent arrivals look bursty.
    # The scale-down window re-reads past asks, so an ask must not be withdrawn after the fact.
    counts = [10, 12, 9, 11, 10, 0, 0, 60, 0, 55, 0, 0, 11, 9, 30, 35, 40, 12, 10, 9]
    history = [at(5.0 * i, c / 5.0, tokens=c * 200.0) for i, c in enumerate(counts)]
    full = demand_by_time(history, 1000.0, trend_window_s=30.0)
    flips = set()
    for k in range(2, len(history)):
        prefix = demand_by_time(history[:k], 1000.0, trend_window_s=30.0)
        flips |= {t for t, d in prefix.items() if d.is_rising != full[t].is_rising}
    assert not flips
    assert any(d.is_rising for d in full.values())  # the history does order replicas somewhere


def test_bursty_arrivals_forecast_their_level_rather_than_extrapolate() -> None:
    bursts = [at(5.0 * i, c / 5.0, tokens=c * 200.0) for i, c in enumerate([0, 0, 60, 0, 0, 20, 40])]
    read = demand_by_time(bursts, 1000.0, trend_window_s=300.0)
    extrapolated = demand_by_time(bursts, 1000.0)
    assert read[30].replicas < extrapolated[30].replicas  # the last rise is not projected a minute on
