import pytest

from tokenfleet_devkit.sim.adapters import (
    FleetSnapshot,
    OperatorPolicy,
    RouterModel,
    VariantPrice,
    VariantSnapshot,
    fleet_spec,
)
from tokenfleet_devkit.sim.events import EventLoop
from tokenfleet_devkit.sim.observation import Observation
from tokenfleet_devkit.sim.perf_model import LinearModel
from tokenfleet_devkit.sim.request import SimRequest
from tokenfleet_devkit.sim.worker import EngineConfig, SimWorker, WorkerEvents

pytestmark = pytest.mark.unit


def test_fleet_spec_is_parsed_by_the_operator_and_merges_overrides() -> None:
    spec = fleet_spec(
        [VariantPrice("h100", 4.0, 16), VariantPrice("l40s", 1.4, 8)],
        interval_s=10.0,
        autoscaling={
            "targets": {"queueDepthPerReplica": 2},
            "minReplicas": 0,
            "metrics": {"profile": "vllm"},
        },
    )
    auto = spec.autoscaling
    assert spec.variant_names == ("h100", "l40s")
    assert auto.targets.queue_depth_per_replica == 2.0
    assert auto.targets.kv_cache_utilization == 0.8  # the operator's default survives the merge
    assert auto.metrics.interval_seconds == 10 and auto.metrics.profile == "vllm"
    assert auto.min_replicas == 0 and auto.scale_to_zero_after_seconds is not None
    assert [a.tokens_per_second for a in spec.accelerators] == [None, None]
    declared = fleet_spec([VariantPrice("h100", 4.0, 16, tokens_per_second=25_000.0)])
    assert declared.accelerator("h100").tokens_per_second == 25_000.0


def _observe(now: float, ready: int, waiting: float) -> Observation:
    snap = FleetSnapshot(time=now, variants=(VariantSnapshot("h100", ready=ready, waiting=waiting),))
    return Observation(now, snap, {"h100": ready}, 0.0, waiting)


def test_operator_policy_scales_on_queue_and_keeps_a_bounded_history() -> None:
    policy = OperatorPolicy(fleet_spec([VariantPrice("h100", 4.0, 64)]))
    assert policy.decide(_observe(5.0, 2, waiting=2.0)) == {"h100": 2}
    assert policy.decide(_observe(10.0, 2, waiting=64.0))["h100"] > 2
    assert "scale up" in policy.last_reason
    for t in range(15, 3000, 5):
        policy.decide(_observe(float(t), 2, waiting=0.0))
    assert policy.history[0].time >= 3000 - policy._keep_s - 5


class _Quiet(WorkerEvents):
    pass


def test_router_model_uses_the_real_strategy_and_saturation_rules() -> None:
    loop = EventLoop()
    perf = LinearModel("t", 1.0, 0.0, 0.0, kv_capacity_tokens=100_000)
    engine = EngineConfig(max_num_seqs=1)
    workers = [SimWorker(f"w{i}", "v", perf, engine, loop, _Quiet(), 0.0) for i in range(2)]
    router = RouterModel("least-load", seed=0)
    router.set_workers(workers)
    picked = []
    for i in range(4):
        request = SimRequest(i, 0.0, 10, 10)
        worker = router.pick(request, float(i))  # a second apart: fresh load reports each time
        assert worker is not None
        worker.submit(request, float(i))
        picked.append(worker.name)
    assert sorted(picked) == ["w0", "w0", "w1", "w1"]  # least-load spreads the work
    # Each worker now has one running and one waiting; fill the queues past the saturation limit.
    for i in range(4, 4 + 2 * 8):
        request = SimRequest(i, 10.0, 10, 10)
        worker = router.pick(request, 10.0 + i)
        if worker is None:
            break
        worker.submit(request, 10.0 + i)
    assert router.pick(SimRequest(99, 100.0, 10, 10), 100.0) is None
    router.set_workers([])
    assert router.pick(SimRequest(100, 101.0, 10, 10), 101.0) is None


def test_router_model_weighs_the_prefill_queued_at_each_worker_as_the_real_router_does() -> None:
    # Both workers run one request; w0 also has a long prompt queued. Equal request counts, but
    # least-load scores the prefill ahead (the worker's report plus prompts sent since it was taken).
    loop = EventLoop()
    perf = LinearModel("t", 1.0, 0.0, 0.0, kv_capacity_tokens=100_000)
    workers = [
        SimWorker(f"w{i}", "v", perf, EngineConfig(max_num_seqs=1), loop, _Quiet(), 0.0) for i in range(2)
    ]
    router = RouterModel("least-load", seed=0)
    router.set_workers(workers)
    workers[0].submit(SimRequest(0, 0.0, 10, 10), 0.0)
    workers[0].submit(SimRequest(1, 0.0, 4000, 10), 0.0)
    workers[1].submit(SimRequest(2, 0.0, 10, 10), 0.0)
    workers[1].submit(SimRequest(3, 0.0, 10, 10), 0.0)
    assert workers[0].prefill_tokens_waiting == 10 + 4000  # the first prompt is mid-step
    for i in range(4, 8):
        request = SimRequest(i, 0.0, 100, 10)
        worker = router.pick(request, 0.0)
        assert worker is not None and worker.name == "w1"
        worker.submit(request, 0.0)
