import pytest

from tokenfleet_devkit.sim import baselines, oracle
from tokenfleet_devkit.sim.adapters import FleetSnapshot, VariantSnapshot
from tokenfleet_devkit.sim.observation import Observation
from tokenfleet_devkit.sim.perf_model import LinearModel
from tokenfleet_devkit.sim.request import SimRequest

pytestmark = pytest.mark.unit


def observe(
    now: float, ready: int, *, rps: float = 0.0, waiting: float = 0.0, held: int = 0, concurrency: float = 0.0
) -> Observation:
    snap = FleetSnapshot(
        time=now, variants=(VariantSnapshot("g", ready=ready, waiting=waiting),), router_held=held
    )
    return Observation(now, snap, {"g": ready}, rps, concurrency)


@pytest.mark.parametrize(
    ("name", "ready", "rps", "want"),
    [
        ("at target holds", 4, 8.0, 4),
        ("within tolerance holds", 4, 8.6, 4),
        ("double load doubles", 4, 16.0, 8),
        ("huge load is rate limited to max(4, 100%)", 2, 100.0, 6),
        ("no ready replicas asks from the rate", 0, 6.0, 3),
    ],
)
def test_hpa_scale_up(name: str, ready: int, rps: float, want: int) -> None:
    hpa = baselines.Hpa("g", rps_per_replica=2.0)
    assert hpa.decide(observe(0.0, ready, rps=rps)) == {"g": want}, name


def test_hpa_scales_down_only_after_the_window_and_evaluates_every_15_s() -> None:
    hpa = baselines.Hpa("g", rps_per_replica=2.0)
    assert hpa.decide(observe(0.0, 4, rps=8.0)) == {"g": 4}
    assert hpa.decide(observe(5.0, 4, rps=0.0)) == {"g": 4}  # between periods: unchanged
    for t in range(15, 300, 15):
        assert hpa.decide(observe(float(t), 4, rps=0.0)) == {"g": 4}
    # The one-minute rate still saw load at 15-45 s, so those asks expire from the window last.
    assert hpa.decide(observe(375.0, 4, rps=0.0)) == {"g": 1}


def test_keda_asks_for_queued_requests_over_the_target() -> None:
    keda = baselines.Keda("g", waiting_per_replica=4.0)
    assert keda.decide(observe(0.0, 2, waiting=10.0, held=10)) == {"g": 5}
    fresh = baselines.Keda("g", waiting_per_replica=4.0)
    assert fresh.decide(observe(0.0, 2)) == {"g": 1}  # empty queue and no history: down to minReplicas
    assert keda.decide(observe(15.0, 5)) == {"g": 5}  # the down window remembers the ask for 5


def test_kpa_panics_on_a_spike_and_never_scales_down_in_panic() -> None:
    kpa = baselines.Kpa("g", concurrency_per_replica=10.0)
    for t in range(0, 60, 5):
        assert kpa.decide(observe(float(t), 2, concurrency=20.0)) == {"g": 2}
    # A spike: the 6 s panic window averages 20 and 100 in flight on 2 replicas -> panic, ask for 6.
    assert kpa.decide(observe(60.0, 2, concurrency=100.0)) == {"g": 6}
    # In panic, lower load does not scale down.
    assert kpa.decide(observe(65.0, 10, concurrency=5.0)) == {"g": 10}
    # After the panic ends, the stable window's mean decides, halving the replicas at most per step.
    assert kpa.decide(observe(200.0, 10, concurrency=5.0)) == {"g": 5}
    assert kpa.decide(observe(205.0, 5, concurrency=5.0)) == {"g": 3}
    assert kpa.decide(observe(210.0, 3, concurrency=5.0)) == {"g": 2}
    assert kpa.decide(observe(215.0, 2, concurrency=5.0)) == {"g": 1}


def test_schedule_follows_its_minutes_and_starts_at_once() -> None:
    schedule = baselines.Schedule("g", [1, 3, 2])
    assert schedule.is_cold_start_free
    assert [schedule.decide(observe(t, 1))["g"] for t in (0.0, 59.0, 60.0, 125.0, 999.0)] == [1, 1, 3, 2, 2]


def test_oracle_plan_covers_each_minutes_work() -> None:
    perf = LinearModel("t", 0.0, 0.001, 0.0, kv_capacity_tokens=10**9)
    # Prefill rate 1000 tok/s; decode step for the reference batch of 64 is 64 ms, so 1 ms per output token.
    requests = [SimRequest(i, 30.0, 6000, 1000) for i in range(10)] + [SimRequest(99, 90.0, 600, 100)]
    demand = oracle.demand_per_minute(requests, perf, 2048, 120.0)
    assert demand[0] == pytest.approx(10 * (6.0 + 1.0) / 60.0)
    assert demand[1] == pytest.approx((0.6 + 0.1) / 60.0)
    assert oracle.plan(demand, 0.5) == [3, 1]
    assert oracle.plan(demand, 0.5, cap=2) == [2, 1]
    assert oracle.plan(demand, 1.5) == [1, 1]
    with pytest.raises(ValueError):
        oracle.plan(demand, 0.0)


def test_full_load_throughput_is_the_demands_busy_time_or_the_kv_limit() -> None:
    # Same rates as above: a 6000 + 1000 request keeps a replica busy 6 + 1 = 7 s.
    roomy = LinearModel("t", 0.0, 0.001, 0.0, kv_capacity_tokens=10**9)
    requests = [SimRequest(i, 0.0, 6000, 1000) for i in range(4)]
    assert oracle.full_load_tokens_per_second(requests, roomy, 2048) == pytest.approx(7000 / 7.0)
    # A small KV cache binds: each request holds (6000 + 500) tokens for 1000 steps of 64 ms.
    tight = LinearModel("t", 0.0, 0.001, 0.0, kv_capacity_tokens=40_000)
    kv_seconds = 4 * 6500 * 1000 * 0.064 / 40_000
    assert kv_seconds > 4 * 7.0
    assert oracle.full_load_tokens_per_second(requests, tight, 2048) == pytest.approx(4 * 7000 / kv_seconds)
    assert oracle.full_load_tokens_per_second([], roomy, 2048) == 0.0


def test_oracle_with_cold_start_orders_each_minute_early_and_keeps_it_to_the_minutes_end() -> None:
    plan = baselines.ColdStartSchedule("g", [2, 5, 1], cold_start_s=45.0)
    assert not plan.is_cold_start_free
    asks = {t: plan.decide(observe(t, 2))["g"] for t in (0.0, 10.0, 20.0, 59.0, 60.0, 110.0, 119.0, 125.0)}
    # Minute 1 needs 5: ordered from 15 s on (one cold start early); minute 2 needs 1: kept until 120 s.
    assert asks == {0.0: 2, 10.0: 2, 20.0: 5, 59.0: 5, 60.0: 5, 110.0: 5, 119.0: 5, 125.0: 1}


def test_oracle_plan_by_misses_weighs_replicas_against_missed_requests() -> None:
    # Minute 0 misses 30 requests on 1 replica, 4 on 2, none on 3; minute 1 misses none on 1.
    misses = [[30, 4, 0], [0]]
    assert oracle.plan_by_misses(misses, 0.01) == [1, 1]  # a miss is worth little: one replica
    assert oracle.plan_by_misses(misses, 0.1) == [2, 1]  # 2 + 0.4 beats 1 + 3 and 3 + 0
    assert oracle.plan_by_misses(misses, 1.0) == [3, 1]
    assert oracle.plan_by_misses(misses, 1.0, cap=2) == [2, 1]
    # A size that missed more than a smaller one counts as the smaller one's misses (capacity never hurts),
    # so the plan never picks it over the smaller size.
    assert oracle.plan_by_misses([[5, 7, 0]], 0.3) == [1]
    with pytest.raises(ValueError):
        oracle.plan_by_misses(misses, 0.0)


def test_oracle_repair_raises_the_minutes_that_missed_most_until_the_rest_fit_the_allowance() -> None:
    plan = [2, 2, 1, 3]
    missed = [5, 40, 0, 12]
    # 57 misses, 10 allowed: minute 1 (40) leaves 17 over, minute 3 (12) leaves 5 within the allowance.
    assert oracle.repair(plan, missed, allowed=10, cap=4) == [2, 3, 1, 4]
    # At the cap a minute cannot be raised: the next one is.
    assert oracle.repair(plan, missed, allowed=10, cap=3) == [3, 3, 1, 3]
    assert oracle.repair(plan, missed, allowed=60, cap=4) == plan  # already within the allowance
