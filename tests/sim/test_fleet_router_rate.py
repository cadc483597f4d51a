"""The simulated snapshot carries the routers' request rate, as the operator reads it from Prometheus."""

import pytest

from tokenfleet_devkit.sim import baselines
from tokenfleet_devkit.sim.fleet import SimConfig, Simulation, VariantSetup
from tokenfleet_devkit.sim.observation import Observation
from tokenfleet_devkit.sim.perf_model import gpu_model
from tokenfleet_devkit.sim.request import SimRequest

pytestmark = pytest.mark.unit

H100 = VariantSetup("h100", gpu_model("h100"), 4.0, cold_start_s=30.0)


class Recording(baselines.Static):
    """A fixed fleet that keeps every observation it was handed."""

    def __init__(self, replicas: int) -> None:
        super().__init__("h100", replicas)
        self.seen: list[Observation] = []

    def decide(self, observation: Observation) -> dict[str, int]:
        self.seen.append(observation)
        return super().decide(observation)


def test_dispatched_rate_counts_the_requests_sent_to_workers_per_interval() -> None:
    # 3 requests per second for 20 s, then nothing: the rate reads 3/s, then 0.
    requests = [SimRequest(i, 0.1 + i / 3.0, 100, 5) for i in range(60)]
    policy = Recording(2)
    Simulation(SimConfig(variants=(H100,), tail_s=30.0), policy, requests, {"h100": 2}).run(20.0)
    rates = [o.snapshot.dispatched_per_second for o in policy.seen]
    assert rates[:4] == pytest.approx([3.0, 3.0, 3.0, 3.0])
    assert rates[-1] == 0.0
    assert sum(r * 5.0 for r in rates if r is not None) == pytest.approx(60)  # every request, once


def test_held_requests_count_when_the_router_sends_them_on() -> None:
    # No worker for the first 30 s (cold start): the requests wait at the router, then go out together.
    requests = [SimRequest(i, 1.0 + i, 100, 5) for i in range(10)]
    policy = Recording(1)
    Simulation(SimConfig(variants=(H100,), tail_s=30.0), policy, requests, {}).run(20.0)
    rates = {o.now: o.snapshot.dispatched_per_second for o in policy.seen}
    assert all(rates[t] == 0.0 for t in (5.0, 10.0, 15.0, 20.0, 25.0, 30.0))
    assert sum(r * 5.0 for r in rates.values() if r is not None) == pytest.approx(10)
