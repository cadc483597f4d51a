from __future__ import annotations

import pytest

from tokenfleet_common.load_report import LoadReport
from tokenfleet_router.load_view import LoadView, SaturationLimits
from tokenfleet_router.types import Endpoint

pytestmark = pytest.mark.unit
A = Endpoint("a", "http://a:1")
B = Endpoint("b", "http://b:1")


def report(**fields: object) -> LoadReport:
    values: dict[str, object] = dict(
        waiting=0,
        running=1,
        kv_cache_usage=0.2,
        free_blocks=80,
        total_blocks=100,
        tokens_in_flight=50,
        max_num_seqs=4,
    )
    values.update(fields)
    return LoadReport(**values)  # type: ignore[arg-type]


def only(view: LoadView, now: float, name: str = "a") -> object:
    return next(w for w in view.snapshot(now) if w.name == name)


def test_own_counts_update_instantly() -> None:
    view = LoadView()
    view.set_endpoints([A])
    view.begin("a", 100)
    view.begin("a", 50)
    view.end("a", 100)
    load = view.snapshot(0.0)[0]
    assert (load.num_in_flight, load.tokens_in_flight) == (1, 50)
    view.end("a", 50)
    view.end("a", 50)  # never negative
    view.end("gone", 5)  # a worker that left is ignored
    assert (view.snapshot(0.0)[0].num_in_flight, view.snapshot(0.0)[0].tokens_in_flight) == (0, 0)


def test_prompt_counts_as_prefill_until_the_first_token() -> None:
    view = LoadView()
    view.set_endpoints([A])
    view.begin("a", 120, 100)
    view.begin("a", 60, 50)
    assert view.snapshot(0.0)[0].prefill_tokens_in_flight == 150
    view.first_token("a", 100)
    assert view.snapshot(0.0)[0].prefill_tokens_in_flight == 50
    view.end("a", 120)  # the streamed one: its prefill was already taken off
    view.end("a", 60, 50)  # one that failed (or did not stream) before its first token
    load = view.snapshot(0.0)[0]
    assert (load.num_in_flight, load.tokens_in_flight, load.prefill_tokens_in_flight) == (0, 0, 0)
    view.first_token("a", 10)  # never negative
    view.first_token("gone", 10)  # a worker that left is ignored
    assert view.snapshot(0.0)[0].prefill_tokens_in_flight == 0


def test_reported_prefill_plus_what_was_sent_since_the_poll() -> None:
    view = LoadView()
    view.set_endpoints([A, B])
    view.begin("a", 900, 800, now=0.5)  # counted by the worker's report of the poll sent at 1.0
    view.begin("a", 300, 200, now=1.2)  # sent after that poll went out: not in its report yet
    view.record_report("a", report(prefill_tokens_waiting=350), now=1.3, polled_at=1.0)
    view.begin("b", 500, 400, now=1.0)
    view.record_report("b", report(), now=1.3)  # a worker that does not count its prefill
    assert only(view, 1.4, "a").prefill_tokens_in_flight == 350 + 200  # type: ignore[attr-defined]
    assert only(view, 1.4, "b").prefill_tokens_in_flight == 400  # type: ignore[attr-defined]
    view.record_report("a", report(prefill_tokens_waiting=0), now=1.6, polled_at=1.5)
    assert only(view, 1.7, "a").prefill_tokens_in_flight == 0  # type: ignore[attr-defined]


def test_no_report_or_stale_report_means_saturated_not_idle() -> None:
    view = LoadView(SaturationLimits(stale_after_s=2.0))
    view.set_endpoints([A])
    assert view.snapshot(0.0)[0].is_saturated  # never reported
    view.record_report("a", report(), now=10.0)
    assert not view.snapshot(11.5)[0].is_saturated
    assert view.snapshot(12.5)[0].is_saturated


@pytest.mark.parametrize(
    ("fields", "in_flight", "saturated"),
    [
        ({}, 0, False),
        ({"waiting": 8}, 0, True),  # queue at the limit
        ({"waiting": 7}, 0, False),
        ({"kv_cache_usage": 0.97, "waiting": 1}, 0, True),  # full cache with a queue
        ({"kv_cache_usage": 0.97, "waiting": 0}, 0, False),  # full cache, nothing waiting: still fine
        ({}, 11, False),  # max_num_seqs 4 + max_waiting 8 = 12
        ({}, 12, True),
    ],
)
def test_saturation_rules(fields: dict[str, object], in_flight: int, saturated: bool) -> None:
    view = LoadView(SaturationLimits(max_waiting=8, max_kv_usage=0.95))
    view.set_endpoints([A])
    view.record_report("a", report(**fields), now=0.0)
    for _ in range(in_flight):
        view.begin("a", 1)
    assert view.snapshot(0.1)[0].is_saturated is saturated


def test_explicit_in_flight_limit() -> None:
    view = LoadView(SaturationLimits(max_in_flight=2))
    view.set_endpoints([A])
    view.record_report("a", report(), now=0.0)
    view.begin("a", 1)
    assert not view.snapshot(0.0)[0].is_saturated
    view.begin("a", 1)
    assert view.snapshot(0.0)[0].is_saturated


def test_draining_or_unready_report_makes_a_worker_unavailable() -> None:
    view = LoadView()
    view.set_endpoints([A, B])
    view.record_report("a", report(draining=True), now=0.0)
    view.record_report("b", report(ready=False), now=0.0)
    assert [w.is_available for w in view.snapshot(0.0)] == [False, False]


def test_failed_worker_is_skipped_for_the_backoff() -> None:
    view = LoadView(SaturationLimits(failure_backoff_s=2.0))
    view.set_endpoints([A])
    view.record_report("a", report(), now=0.0)
    view.mark_failed("a", now=1.0)
    assert not view.snapshot(2.9)[0].is_available
    view.record_report("a", report(), now=3.0)
    assert view.snapshot(3.0)[0].is_available


def test_worker_without_reports_is_judged_by_own_counts() -> None:
    view = LoadView(SaturationLimits(max_in_flight=3))
    view.set_endpoints([A])
    view.record_no_reports("a")
    assert not view.snapshot(100.0)[0].is_saturated
    for _ in range(3):
        view.begin("a", 1)
    assert view.snapshot(100.0)[0].is_saturated


def test_report_fields_reach_the_snapshot() -> None:
    view = LoadView()
    view.set_endpoints([A])
    assert view.snapshot(0.0)[0].prefix_cache_tokens is None  # no report yet: size unknown
    fields = dict(waiting=3, running=2, kv_cache_usage=0.4, max_num_seqs=16, prefix_cache_tokens=4096)
    view.record_report("a", report(**fields), now=0.0)
    load = view.snapshot(0.0)[0]
    assert (load.num_waiting, load.num_running, load.kv_cache_usage, load.max_num_seqs) == (3, 2, 0.4, 16)
    assert load.prefix_cache_tokens == 4096


def test_set_endpoints_keeps_state_of_staying_workers_and_reports_removed() -> None:
    view = LoadView()
    view.set_endpoints([A, B])
    view.begin("a", 10)
    removed = view.set_endpoints([A, Endpoint("c", "http://c:1")])
    assert removed == ["b"]
    assert {w.name: w.num_in_flight for w in view.snapshot(0.0)} == {"a": 1, "c": 0}
    # Same name, new address (a replaced pod): fresh state.
    view.set_endpoints([Endpoint("a", "http://a2:1")])
    assert view.snapshot(0.0)[0].num_in_flight == 0
    assert view.num_workers == 1
