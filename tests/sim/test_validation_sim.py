"""The simulator's side of the validation: one setup feeds it and the real fleet alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenfleet_devkit.sim.validation_setup import (
    Arrival,
    ExcerptOptions,
    FleetSetup,
    ValidationSetup,
    fleet_document,
    plan_arrivals,
)
from tokenfleet_devkit.sim.validation_sim import run_sim, sim_config
from tokenfleet_devkit.traces import TraceRecord
from tokenfleet_operator.resource import parse_spec
from tokenfleet_worker.sim import SimProfile

pytestmark = pytest.mark.unit


def burst_setup(rate_per_s: float = 6.0, burst_s: float = 30.0) -> ValidationSetup:
    """A quiet start, a burst one replica cannot serve, then quiet again."""
    arrivals = [Arrival(float(t), 64, 8) for t in range(0, 10, 2)]
    step = 1.0 / rate_per_s
    arrivals += [Arrival(10.0 + i * step, 200, 16) for i in range(int(burst_s * rate_per_s))]
    arrivals += [Arrival(10.0 + burst_s + t, 64, 8) for t in range(0, 20, 2)]
    return ValidationSetup(tuple(arrivals))


def test_plan_arrivals_cuts_the_window_thins_and_caps_lengths() -> None:
    records = [TraceRecord(float(t), 5000, 100) for t in range(100)]
    options = ExcerptOptions(
        start_s=20.0,
        duration_s=50.0,
        rate_scale=0.5,
        prompt_scale=0.1,
        max_prompt_tokens=256,
        max_output_tokens=32,
        seed=3,
    )
    arrivals = plan_arrivals(records, options)
    assert 15 <= len(arrivals) <= 35  # about half of the 50 in the window
    assert all(0.0 <= a.at_s < 50.0 for a in arrivals)
    assert {(a.prompt_tokens, a.output_tokens) for a in arrivals} == {(256, 32)}
    assert plan_arrivals(records, options) == arrivals  # seeded


def test_the_sim_parses_the_same_document_the_cluster_gets() -> None:
    fleet = FleetSetup(interval_s=3, max_replicas=5, queue_per_replica=1.5)
    spec = parse_spec(fleet_document(fleet, "ns", Path("/models/x"))["spec"])
    assert spec.autoscaling.metrics.interval_seconds == 3
    assert spec.autoscaling.max_replicas == 5
    assert spec.autoscaling.targets.queue_depth_per_replica == 1.5
    assert spec.engine.backend == "sim"
    config = sim_config(ValidationSetup((), fleet), cold_start_s=7.0, tail_s=0.0)
    assert config.interval_s == 3.0
    assert config.variants[0].cold_start_s == 7.0
    assert config.engine.max_num_seqs == fleet.max_num_seqs


def test_the_sim_steps_at_the_sim_backend_profile() -> None:
    profile = SimProfile(base_s=0.01, per_token_s=0.002, per_context_token_s=1e-5)
    setup = ValidationSetup((), profile=profile)
    perf = sim_config(setup, 5.0, 0.0).variants[0].perf
    assert perf.step_seconds(10, 1000) == pytest.approx(0.01 + 0.02 + 0.01)
    assert perf.kv_capacity_tokens == setup.sim_num_blocks * setup.fleet.block_size


def test_a_burst_scales_up_and_back_and_every_request_is_served() -> None:
    setup = burst_setup()
    run = run_sim(setup, cold_start_s=4.0, window_s=90.0)
    record = run.record
    assert record.num_served == record.num_requests == len(setup.arrivals)
    levels = [v for _, v in record.ready]
    assert levels[0] == setup.fleet.min_replicas
    assert max(levels) > setup.fleet.min_replicas
    assert levels[-1] < max(levels)
    assert record.end_s == 90.0
    assert all(a[0] <= b[0] for a, b in zip(record.ready, record.ready[1:], strict=False))


def test_a_longer_cold_start_brings_the_added_replicas_later_and_raises_ttft() -> None:
    setup = burst_setup()
    fast = run_sim(setup, cold_start_s=2.0, window_s=90.0).record
    slow = run_sim(setup, cold_start_s=12.0, window_s=90.0).record

    def first_rise(ready: tuple[tuple[float, float], ...]) -> float:
        return next(t for t, v in ready if v > setup.fleet.min_replicas)

    assert first_rise(slow.ready) - first_rise(fast.ready) == pytest.approx(10.0, abs=setup.fleet.interval_s)
    assert (slow.ttft_p95_s or 0.0) > (fast.ttft_p95_s or 0.0)


def test_drained_replicas_leave_the_ready_curve_when_told_to_drain() -> None:
    run = run_sim(burst_setup(), cold_start_s=4.0, window_s=90.0)
    drops = [t for (_, a), (t, b) in zip(run.record.ready, run.record.ready[1:], strict=False) if b < a]
    assert drops
    interval = run.config.interval_s
    # Drains happen at autoscaler ticks, so each drop lands on a multiple of the interval.
    assert all(t / interval == pytest.approx(round(t / interval)) for t in drops)


def test_measured_cold_starts_are_replayed_replica_by_replica() -> None:
    setup = burst_setup()
    run = run_sim(setup, cold_start_s=4.0, window_s=90.0, cold_starts_s=(1.0, 9.0))
    added = [w for w in run.result.workers if w.created_at > 0.0]
    added.sort(key=lambda w: (w.created_at, w.name))
    waits = [ready - w.created_at for w in added if (ready := w.ready_at) is not None]
    assert len(waits) >= 2
    # Replicas are created in order and take the measured cold starts in turn (cycling).
    assert waits[0] == pytest.approx(1.0)
    assert waits[1] == pytest.approx(9.0)


def test_the_first_tick_sets_when_the_operator_first_looks() -> None:
    setup = burst_setup()
    default = run_sim(setup, cold_start_s=4.0, window_s=90.0)
    early = run_sim(setup, cold_start_s=4.0, window_s=90.0, first_tick_s=0.5)
    interval = float(setup.fleet.interval_s)
    assert default.result.timeline[0].time == pytest.approx(interval)
    assert early.result.timeline[0].time == pytest.approx(0.5)
    assert early.result.timeline[1].time == pytest.approx(0.5 + interval)
    # Same arrivals, served either way; only when the ticks fall differs.
    assert early.record.num_served == default.record.num_served == len(setup.arrivals)
