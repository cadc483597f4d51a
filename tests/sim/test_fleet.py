"""Short synthetic traces through the whole simulated fleet (real router strategy, real operator policy)."""

import random

import pytest

from tokenfleet_devkit.sim import baselines
from tokenfleet_devkit.sim.fleet import SimConfig, Simulation, VariantSetup
from tokenfleet_devkit.sim.metrics import Slo, percentile, summarize
from tokenfleet_devkit.sim.perf_model import gpu_model
from tokenfleet_devkit.sim.request import (
    REJECT_DRAIN_TIMEOUT,
    REJECT_NO_CAPACITY,
    REJECT_OVERLOADED,
    REJECT_TOO_LARGE,
    REJECT_UNFINISHED,
    SimRequest,
)
from tokenfleet_devkit.sim.runs import tokenfleet_policy

REASONS = {REJECT_DRAIN_TIMEOUT, REJECT_NO_CAPACITY, REJECT_OVERLOADED, REJECT_TOO_LARGE, REJECT_UNFINISHED}
pytestmark = pytest.mark.unit  # pure simulations: no processes, files or network

H100 = VariantSetup("h100", gpu_model("h100"), 4.0, cold_start_s=30.0)
SLO = Slo(2.0, 0.1)


def burst_then_quiet(seed: int = 1, *, rate: float = 12.0, busy_s: float = 120.0) -> list[SimRequest]:
    """Heavy prefill load for `busy_s`, then a trickle: the fleet must scale up, then drain down."""
    rng = random.Random(seed)
    requests, t, i = [], 0.0, 0
    while t < busy_s + 180.0:
        t += rng.expovariate(rate if t < busy_s else 0.2)
        requests.append(SimRequest(i, t, rng.randint(200, 6000), rng.randint(1, 300)))
        i += 1
    return requests


def test_every_arrived_request_completes_or_is_rejected_with_a_reason() -> None:
    requests = burst_then_quiet()
    requests.append(SimRequest(len(requests), 10.0, 500_000, 10))  # larger than any KV cache
    policy = tokenfleet_policy((H100,), SLO, 5.0, {"scaleDown": {"stabilizationSeconds": 30}})
    config = SimConfig(variants=(H100,), tail_s=300.0)
    result = Simulation(config, policy, requests, {"h100": 1}).run()
    assert len(result.requests) == len(requests)
    for r in result.requests:
        assert r.is_done, f"request {r.id} lost"
        assert (r.finish_time is None) != (r.reject_reason is None)
        assert r.reject_reason is None or r.reject_reason in REASONS
    assert next(r for r in result.requests if r.prompt_tokens == 500_000).reject_reason == REJECT_TOO_LARGE
    ready = [sum(p.ready.values()) for p in result.timeline]
    assert max(ready) > 1, "the operator policy never scaled up under a burst"
    assert ready[-1] < max(ready), "the fleet never scaled back down"
    # Scale-down drains: nothing was cut off.
    assert not any(r.reject_reason == REJECT_DRAIN_TIMEOUT for r in result.requests)
    assert sum(1 for w in result.workers if w.removed_at is not None) >= 1


@pytest.mark.parametrize("strategy", ["least-load", "round-robin"])
def test_more_capacity_never_raises_latency(strategy: str) -> None:
    config = SimConfig(variants=(H100,), strategy=strategy, seed=3)
    previous: dict[str, float] | None = None
    for n in (1, 2, 4, 8):
        result = Simulation(config, baselines.Static("h100", n), burst_then_quiet(seed=5), {"h100": n}).run()
        done = [r for r in result.requests if r.finish_time is not None]
        ttfts = [r.ttft for r in done if r.ttft is not None]
        tpots = [r.tpot for r in done if r.tpot is not None]
        stats = {
            "completed": float(len(done)),
            "ttft_mean": sum(ttfts) / len(ttfts),
            "ttft_p95": percentile(ttfts, 95) or 0.0,
            "tpot_p95": percentile(tpots, 95) or 0.0,
        }
        if previous is not None:
            assert stats["completed"] >= previous["completed"]
            for key in ("ttft_mean", "ttft_p95", "tpot_p95"):
                assert stats[key] <= previous[key] * 1.02 + 1e-6, (n, key, stats, previous)
        previous = stats


def test_scale_from_zero_holds_requests_at_the_router_until_a_replica_is_ready() -> None:
    requests = [SimRequest(i, 1.0 + i * 0.1, 100, 10) for i in range(20)]
    policy = tokenfleet_policy((H100,), SLO, 5.0, {"minReplicas": 0})
    result = Simulation(SimConfig(variants=(H100,)), policy, requests, {"h100": 0}).run()
    assert all(r.finish_time is not None for r in result.requests)
    first_ready = min(w.ready_at for w in result.workers if w.ready_at is not None)
    assert first_ready >= H100.cold_start_s
    assert all(r.first_token_time is not None and r.first_token_time >= first_ready for r in result.requests)


def test_summary_counts_cost_and_slo() -> None:
    requests = [SimRequest(i, i * 1.0, 100, 10) for i in range(60)]
    result = Simulation(SimConfig(variants=(H100,)), baselines.Static("h100", 2), requests, {"h100": 2}).run(
        60.0
    )
    summary = summarize(result, SLO, {"h100": 4.0}, [2] * 1)
    assert summary["gpu_hours"] == pytest.approx(2 * 60.0 / 3600.0)
    assert summary["dollars"] == pytest.approx(4.0 * 2 * 60.0 / 3600.0)
    assert summary["slo_attainment"] == 1.0
    assert summary["completed"] == 60 and summary["rejected"] == {}
