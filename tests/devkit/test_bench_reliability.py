"""The reliability benchmark: its pure parts, and a `--smoke` overload of real processes end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tokenfleet_devkit.bench.reliability_overload import invariants, router_answers
from tokenfleet_devkit.bench.reliability_report import normalize, overload_row, read_test_rows
from tokenfleet_devkit.bench.reliability_rss import MemoryTrack, read_memory_kib
from tokenfleet_devkit.bench.reliability_scaler import VARIANT, fleet_spec, snapshot_from_fleet
from tokenfleet_operator.policy import decide


def _figures(**changes: Any) -> dict[str, Any]:
    requests = {
        "accepted": 10,
        "completed": 10,
        "failed": 0,
        "rejected_429": 5,
        "rejected_429_without_retry_after": 0,
        "unreached": 0,
    }
    figures: dict[str, Any] = {
        "requests": requests,
        "peak_rss": {"router": {"bounded": True}, "worker-2": {"bounded": None}},
        "exited": {},
        "replicas_before": 2,
        "replicas_after": 3,
        "factor": 10.0,
        "duration_s": 60.0,
        "mode": "processes",
    }
    for key, value in changes.items():
        if key in requests:
            requests[key] = value
        else:
            figures[key] = value
    return figures


@pytest.mark.unit
@pytest.mark.parametrize(
    ("changes", "missed"),
    [
        ({}, set()),
        ({"completed": 9, "failed": 1}, {"no accepted request lost"}),
        ({"rejected_429": 0}, {"429 beyond the bounded queue"}),
        ({"rejected_429_without_retry_after": 2}, {"every 429 has Retry-After"}),
        ({"unreached": 3}, set()),  # reported, not judged: a starved client cannot connect either
        ({"exited": {"router": -9}}, {"no process died"}),
        ({"peak_rss": {"router": {"bounded": False}}}, {"memory bounded"}),
        ({"peak_rss": {"worker-2": {"bounded": None}}}, {"memory bounded"}),  # nothing judged
        ({"replicas_after": 2}, {"fleet scaled up"}),
    ],
)
def test_invariants_name_what_was_missed(changes: dict[str, Any], missed: set[str]) -> None:
    verdicts = invariants(_figures(**changes))
    assert {claim for claim, ok in verdicts.items() if not ok} == missed


@pytest.mark.unit
def test_router_answers_tell_its_own_refusals_from_passed_on_ones() -> None:
    text = "\n".join(
        [
            "# TYPE tokenfleet_router_requests_total counter",
            'tokenfleet_router_requests_total{status="200",worker="http://a"} 7.0',
            'tokenfleet_router_requests_total{status="200",worker="http://b"} 5.0',
            'tokenfleet_router_requests_total{status="429",worker="none"} 30.0',
            'tokenfleet_router_requests_total{status="429",worker="http://a"} 1.0',
            "# TYPE tokenfleet_router_held gauge",
            "tokenfleet_router_held 3.0",
        ]
    )
    assert router_answers(text + "\n") == {"200 worker": 12, "429 router": 30, "429 worker": 1}


@pytest.mark.unit
def test_overload_row_ignores_unchecked_invariants() -> None:
    figures = _figures(replicas_after=2)
    figures["invariants"] = invariants(figures)
    assert overload_row(figures)["passed"] is False
    row = overload_row(figures, frozenset({"fleet scaled up"}))
    assert row["passed"] is True and row["accepted"] == 10 and row["rejected_429"] == 5


@pytest.mark.unit
def test_test_rows_keep_the_latest_per_scenario_and_skip_junk(tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    lines = [
        {"scenario": "sigterm-under-load", "faults_injected": 1, "faults_survived": 0, "failed": 2},
        "not json",
        ["a", "list"],
        {"no": "scenario"},
        {"scenario": "fuzz", "cases": 1200, "failures": 0},
        {"scenario": "sigterm-under-load", "faults_injected": 1, "faults_survived": 1, "failed": 0},
    ]
    report.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n")
    rows, skipped = read_test_rows(report)
    assert skipped == 3
    assert [r["scenario"] for r in rows] == ["sigterm-under-load", "fuzz"]
    sigterm, fuzz = (normalize(r, "tests") for r in rows)
    assert (sigterm["injected"], sigterm["survived"], sigterm["failed"], sigterm["passed"]) == (1, 1, 0, True)
    assert fuzz["cases"] == 1200 and fuzz["failed"] == 0 and fuzz["passed"] is True


@pytest.mark.unit
@pytest.mark.parametrize(
    ("peaks_mib", "bounded"),
    [
        ([50] * 4, None),  # too few samples to judge
        ([50, 60, 62, 61, 63, 62, 64, 63, 64, 65], True),  # levels off
        ([50, 60, 70, 80, 90, 100, 110, 120, 130, 140], False),  # grows with every sample
    ],
)
def test_memory_is_bounded_when_it_levels_off(peaks_mib: list[int], bounded: bool | None) -> None:
    track = MemoryTrack()
    for mib in peaks_mib:
        track.add(mib * 1024, 0)
    assert track.is_bounded is bounded
    assert track.as_dict()["peak_mib"] == max(peaks_mib)


@pytest.mark.unit
def test_reads_this_process_memory_and_none_for_a_missing_one(tmp_path: Path) -> None:
    memory = read_memory_kib(os.getpid())
    assert memory is not None and 0 < memory[0] <= memory[1]
    assert read_memory_kib(os.getpid(), proc=tmp_path) is None


@pytest.mark.unit
def test_the_policy_scales_up_on_what_the_router_holds() -> None:
    endpoint = {"available": True, "waiting": 8, "running": 4, "kv_cache_usage": 0.1, "tokens_in_flight": 400}
    view = {"held": 64, "endpoints": [endpoint, dict(endpoint), {**endpoint, "available": False}]}
    snapshot = snapshot_from_fleet(view, num_starting=0, now=100.0)
    assert snapshot.ready == 2 and snapshot.router_held == 64 and snapshot.waiting == 16
    decision = decide(fleet_spec(2, 4, 4), [snapshot], {VARIANT: 2}, now=100.0)
    assert decision.total == 4
    idle = snapshot_from_fleet({"held": 0, "endpoints": [{"available": True}] * 2}, 0, 100.0)
    assert decide(fleet_spec(2, 4, 4), [idle], {VARIANT: 2}, now=100.0).total == 2


def test_smoke_overload_loses_no_accepted_request(tmp_path: Path) -> None:
    """Real sim workers and a real router, 5x their measured capacity for 3 s, plus the tests' rows."""
    from tokenfleet_devkit.bench.reliability import main

    report = tmp_path / "report.jsonl"
    report.write_text(json.dumps({"scenario": "fuzz", "cases": 321, "failures": 0}) + "\n")
    assert main(["--smoke", "--results", str(tmp_path), "--report", str(report)]) == 0
    results = json.loads((tmp_path / "reliability.json").read_text())
    overload = results["overload"]
    load = overload["requests"]
    assert load["accepted"] > 0 and load["accepted"] == load["completed"] and load["failed"] == 0
    assert load["rejected_429"] > 0 and load["rejected_429_without_retry_after"] == 0
    assert load["sent"] == load["accepted"] + load["rejected_429"] + load["rejected_503"] + load["unreached"]
    assert {"router", "worker-0", "worker-1"} <= set(overload["peak_rss"])
    assert all(m["peak_mib"] > 0 for m in overload["peak_rss"].values())
    assert overload["exited"] == {}
    assert results["fuzz_cases"] == 321
    assert [r["scenario"] for r in results["scenarios"]][1:] == ["fuzz"]
