"""The policy with the routers' request rate: scale-up before a queue forms, and noise told from bursts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.operator.operator_fleet_script import make_spec
from tokenfleet_operator.policy import decide
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot

pytestmark = pytest.mark.unit

SPEC = make_spec(
    accelerators=[{"name": "h100", "hourlyCost": 4.0}],
    targets={"queueDepthPerReplica": 8, "ttftP95Seconds": 2},
)


def at(time: float, ready: int, dispatched: float | None, tokens: float) -> FleetSnapshot:
    """`ready` replicas with no queue, processing `tokens` tokens/s in all, TTFT well within target."""
    variant = VariantSnapshot(name="h100", ready=ready, kv_usage=0.1, prompt_tokens_per_second=tokens)
    return FleetSnapshot(
        time=time, variants=(variant,), ttft_p95_seconds=0.5, dispatched_per_second=dispatched
    )


def test_a_rising_request_rate_orders_replicas_before_any_queue_forms() -> None:
    calm = [at(5.0 * i, 4, 4.0, 4000.0) for i in range(12)]  # 1000 tokens per request, 1000/s per replica
    # The routers already send three times as many requests; the workers have not processed them yet.
    history = [*calm, at(60.0, 4, 12.0, 4000.0)]
    decision = decide(SPEC, history, {"h100": 4}, now=60.0)
    assert decision.total == 8  # ceil(forecast / learned capacity), limited by maxStep 4
    assert "forecast load" in decision.reason
    without_router = [at(s.time, 4, None, 4000.0) for s in history]
    assert decide(SPEC, without_router, {"h100": 4}, now=60.0).total == 4


def _window(rates: list[float], swings: tuple[int, ...], ready: int = 6) -> list[FleetSnapshot]:
    """Each interval's tokens follow its requests (1000 tokens each); at the `swings` the KV cache of
    `ready` replicas fills to just under target, asking for all of them."""
    out = []
    for i, rate in enumerate(rates):
        variant = VariantSnapshot(
            name="h100",
            ready=ready,
            kv_usage=0.75 if i in swings else 0.1,
            prompt_tokens_per_second=1000.0 * rate,
        )
        out.append(
            FleetSnapshot(time=5.0 * i, variants=(variant,), ttft_p95_seconds=0.5, dispatched_per_second=rate)
        )
    return out


def test_noisy_steady_load_consolidates_past_its_rare_peaks() -> None:
    # The fleet once carried three times today's steady rate; in the last five minutes two rare swings
    # of the KV cache asked for every replica: noise, not load, so the count comes down.
    history = _window([18.0] * 3 + [6.0] * 61, swings=(10, 40))
    decision = decide(SPEC, history, {"h100": 6}, now=history[-1].time)
    assert decision.direction == "down"


def test_bursty_load_holds_for_its_bursts() -> None:
    # Bursts separated by silence, each filling the KV cache: they come back, so the fleet stays.
    rates = [0.0 if i % 30 else 90.0 for i in range(64)]
    history = _window(rates, swings=(30, 60))
    assert decide(SPEC, history, {"h100": 6}, now=history[-1].time).direction == "hold"


def test_a_past_bursts_backlog_does_not_hold_the_fleet() -> None:
    # Bursts come and go; the last one left a queue that asked for 12 replicas. By now the queue is
    # served: the window holds the load the bursts came with (the burst floor), not their backlog.
    rates = [0.0 if i % 30 else 90.0 for i in range(64)]
    history = _window(rates, swings=())
    backlog = replace(history[60].variants[0], waiting=96.0)  # 16 a replica, twice the target
    history[60] = replace(history[60], variants=(backlog,))
    decision = decide(SPEC, history, {"h100": 12}, now=history[-1].time)
    assert decision.direction == "down"
    # Without the routers' counts nothing tells bursts from load, and the backlog's ask holds the window.
    blind = [replace(s, dispatched_per_second=None) for s in history]
    assert decide(SPEC, blind, {"h100": 12}, now=blind[-1].time).direction == "hold"


def _one_burst(at_interval: int, intervals: int = 64) -> list[FleetSnapshot]:
    """Two requests a second for `intervals` intervals, but 90 then 60 a second at `at_interval`: no
    queue or KV reading ever asks for more than a few replicas."""
    rates = [2.0] * intervals
    rates[at_interval], rates[at_interval + 1] = 90.0, 60.0
    return _window(rates, swings=())


def test_bursty_load_holds_what_the_recent_bursts_rate_needs() -> None:
    # The burst 2 minutes ago came at a rate 4.3 replicas carry flat out, 6 with the headroom: the
    # quiet since then does not shrink the fleet below that, since bursts come back. The floor is a
    # floor, not an ask: 9 still come down.
    recent = _one_burst(40)
    held = decide(SPEC, recent, {"h100": 6}, now=recent[-1].time)
    assert held.direction == "hold" and "recent bursts' rate (6 replicas)" in held.reason
    assert decide(SPEC, recent, {"h100": 9}, now=recent[-1].time).total == 8
    # The floor outlasts the scale-down window a little (bursts a window apart found the fleet just
    # shrunk), then the fleet follows the quiet.
    late = _one_burst(0)  # 315 s ago
    assert decide(SPEC, late, {"h100": 6}, now=late[-1].time).direction == "hold"
    old = _one_burst(0, intervals=80)  # 395 s ago
    assert decide(SPEC, old, {"h100": 6}, now=old[-1].time).total == 5


def test_a_served_backlog_does_not_hold_the_fleet_on_steady_load_either() -> None:
    # Steady load (not bursty) that queued for a minute: the queue is served, and the load signals in
    # the window ask for far fewer than 12. A backlog's ask measures work already arrived; holding it
    # for the whole window pays for capacity the load no longer needs.
    history = _window([6.0] * 64, swings=())
    for i in range(45, 57):
        queued = replace(history[i].variants[0], waiting=96.0)
        history[i] = replace(history[i], variants=(queued,))
    decision = decide(SPEC, history, {"h100": 12}, now=history[-1].time)
    assert decision.direction == "down"
    blind = [replace(s, dispatched_per_second=None) for s in history]
    assert decide(SPEC, blind, {"h100": 12}, now=blind[-1].time).direction == "hold"


def test_a_fresh_operator_scales_its_own_backlog_scale_up_down_but_never_below_the_fleet_it_found() -> None:
    # The operator started 2 minutes ago (less than a scale-down window of history) and found 6 replicas;
    # a backlog in its first minute took the fleet to 12, and is served. It may come down from its own
    # 12 (not a whole window seen, but those replicas are its own doing), never below the 6 it found.
    history = _window([6.0] * 24, swings=())
    for i in range(4, 10):
        queued = replace(history[i].variants[0], waiting=96.0)
        history[i] = replace(history[i], variants=(queued,))
    assert history[-1].time < SPEC.autoscaling.scale_down.stabilization_seconds
    down = decide(SPEC, history, {"h100": 12}, now=history[-1].time)
    assert down.direction == "down"
    found_fleet = decide(SPEC, history, {"h100": 6}, now=history[-1].time)
    assert found_fleet.total == 6
