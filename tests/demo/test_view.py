"""The live view and the summary table render what they promise (to a recording console)."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from rich.console import Console, RenderableType

from tokenfleet_devkit.demo.accounting import FleetSample, RequestResult, summarize
from tokenfleet_devkit.demo.fleet_spec import FleetNames
from tokenfleet_devkit.demo.replay import Counters
from tokenfleet_devkit.demo.view import live_view, summary_table

pytestmark = pytest.mark.unit


def rendered(renderable: RenderableType) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return str(out)


def test_live_view_shows_replicas_signals_reason_and_request_counts() -> None:
    sample = FleetSample(
        t_s=3.0,
        fleet="sim",
        desired={"h100": 1, "l40s": 3},
        ready={"h100": 0, "l40s": 2},
        pods={"h100": 1, "l40s": 3},
        queue_depth=4.5,
        kv_usage=0.42,
        tokens_per_second=812.0,
        cost_per_mtok=1.87,
        last_reason="scale up 2->4: queue 9 per replica",
    )
    counters = Counters(sent=10, ok=7, failed=0, in_flight=3, http_errors=Counter({429: 2}))
    text = rendered(live_view("burst", 3.0, 60.0, {"sim": sample}, counters, FleetNames(), "the note"))
    for expected in (
        "h100",
        "l40s",
        "4.5",
        "42%",
        "812",
        "1.87",
        "scale up 2->4",
        "sent 10",
        "429x2",
        "the note",
    ):
        assert expected in text, expected


def test_summary_table_shows_failures_ttft_moves_and_costs() -> None:
    results = [
        RequestResult(0, "sim", "burst", 0.0, True, ttft_s=0.25, latency_s=1.0, is_cold=True),
        RequestResult(1, "sim", "late", 9.0, True, ttft_s=2.0, latency_s=3.0, is_cold=True),
    ]
    timeline = [
        FleetSample(0.0, "sim", {"l40s": 0}, {"l40s": 0}, {"l40s": 0}),
        FleetSample(1.0, "sim", {"l40s": 2}, {"l40s": 2}, {"l40s": 2}),
        FleetSample(5.0, "sim", {"l40s": 0}, {"l40s": 0}, {"l40s": 0}),
    ]
    summary = summarize(results, {"sim": timeline}, {"sim": {"l40s": 1.2}}, "sim", 10.0)
    text = rendered(summary_table(summary, FleetNames(), 10.0))
    for expected in (
        "2 of 2 (code 2)",
        "250 ms / 2.00 s",
        "1 / 1 (code)",
        "scaled to zero",
        "yes",
        "% saved",
    ):
        assert expected in text, expected
