"""The simulator's side of a validation run: the shared setup through `Simulation`, as a `RunRecord`.

The policy is the operator's `decide` on the spec parsed from the very document the real fleet runs;
the replica's step time is the sim-backend worker's profile as a `LinearModel`; the cold start is the
one measured on the real fleet (or, for a diagnostic run, each real pod's own, replica by replica). The
ready curve is exact: +1 when a replica turns ready, -1 when it is
told to drain (the moment the real pod gets its deletion timestamp and leaves the router).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenfleet_devkit.sim.adapters import OperatorPolicy
from tokenfleet_devkit.sim.fleet import SimConfig, SimResult, Simulation, VariantSetup
from tokenfleet_devkit.sim.perf_model import LinearModel
from tokenfleet_devkit.sim.pod_lifecycle import step_curve
from tokenfleet_devkit.sim.request import SimRequest
from tokenfleet_devkit.sim.validation import RunRecord
from tokenfleet_devkit.sim.validation_setup import ValidationSetup, fleet_document
from tokenfleet_devkit.sim.worker import EngineConfig
from tokenfleet_operator.resource import parse_spec


@dataclass(frozen=True)
class SimRun:
    record: RunRecord
    result: SimResult
    config: SimConfig


def ready_curve(result: SimResult, end_s: float) -> tuple[tuple[float, float], ...]:
    """Ready-and-not-draining replicas as a step curve over [0, end_s]."""
    changes: list[tuple[float, int]] = []
    for worker in result.workers:
        if worker.ready_at is None:
            continue
        changes.append((worker.ready_at, +1))
        gone = worker.drained_at if worker.drained_at is not None else worker.removed_at
        if gone is not None:
            changes.append((gone, -1))
    return step_curve(changes, end_s)


def sim_config(
    setup: ValidationSetup,
    cold_start_s: float,
    tail_s: float,
    tick_period_s: float | None = None,
    cold_starts_s: Sequence[float] = (),
    first_tick_s: float | None = None,
) -> SimConfig:
    """The simulator's fleet; `tick_period_s` overrides how often the policy runs (default: the spec's
    interval), for an operator whose ticks take time of their own (it waits an interval after each);
    `first_tick_s` sets the ticks' phase against the arrivals."""
    fleet = setup.fleet
    profile = setup.profile
    perf = LinearModel(
        "sim-backend",
        profile.base_s,
        profile.per_token_s,
        profile.per_context_token_s,
        setup.kv_capacity_tokens,
    )
    variant = VariantSetup(
        fleet.variant, perf, fleet.hourly_cost, cold_start_s, fleet.max_replicas, tuple(cold_starts_s)
    )
    engine = EngineConfig(
        max_num_seqs=fleet.max_num_seqs,
        max_batched_tokens=fleet.max_batched_tokens,
        prefix_caching=True,
        prefix_block_tokens=fleet.block_size,
    )
    return SimConfig(
        variants=(variant,),
        engine=engine,
        interval_s=float(fleet.interval_s) if tick_period_s is None else tick_period_s,
        strategy=fleet.strategy,
        drain_timeout_s=float(fleet.drain_timeout_s),
        tail_s=tail_s,
        first_tick_s=first_tick_s,
    )


def run_sim(
    setup: ValidationSetup,
    cold_start_s: float,
    window_s: float,
    grace_s: float = 60.0,
    tick_period_s: float | None = None,
    cold_starts_s: Sequence[float] = (),
    first_tick_s: float | None = None,
) -> SimRun:
    """Simulate the setup's arrivals; the ready curve covers [0, window_s], and answers may take until
    `grace_s` after the window (as long as the real run's client waits). `cold_starts_s`, when given,
    replaces `cold_start_s` replica by replica, in order of creation; `first_tick_s` is when the
    operator first ticks (default: one tick period in)."""
    spec = parse_spec(fleet_document(setup.fleet, "sim", Path("/sim"))["spec"])
    end_s = max(window_s, setup.last_arrival_s)
    tail_s = end_s + grace_s - setup.last_arrival_s
    config = sim_config(setup, cold_start_s, tail_s, tick_period_s, cold_starts_s, first_tick_s)
    requests = [SimRequest(i, a.at_s, a.prompt_tokens, a.output_tokens) for i, a in enumerate(setup.arrivals)]
    initial = {setup.fleet.variant: setup.fleet.min_replicas}
    sim = Simulation(config, OperatorPolicy(spec), requests, initial)
    result = sim.run(setup.last_arrival_s)
    ttfts = tuple(r.ttft for r in result.requests if r.finish_time is not None and r.ttft is not None)
    record = RunRecord("sim", len(setup.arrivals), ttfts, ready_curve(result, end_s))
    return SimRun(record, result, config)
