"""The JSON report and the PNG plot land on disk and hold what the summary says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenfleet_devkit.demo.accounting import FleetSample, RequestResult, summarize
from tokenfleet_devkit.demo.report import request_rate, write_json, write_plot

pytestmark = pytest.mark.unit


def fixtures() -> tuple[list[RequestResult], list[FleetSample]]:
    results = [
        RequestResult(0, "sim", "burst", 0.5, True, ttft_s=0.2, latency_s=0.5),
        RequestResult(1, "sim", "burst", 1.0, False, error="InternalServerError"),
        RequestResult(2, "sim", "late", 7.0, True, ttft_s=1.2, latency_s=1.5, is_cold=True),
    ]
    timeline = [
        FleetSample(0.0, "sim", {"a": 1}, {"a": 0}, {"a": 1}),
        FleetSample(4.0, "sim", {"a": 0}, {"a": 0}, {"a": 0}),
    ]
    return results, timeline


def test_request_rate_bins_sent_times() -> None:
    results, _ = fixtures()
    starts, rates = request_rate(results, end_s=8.0)
    assert starts == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert rates == [1.0, 0.0, 0.0, 0.5, 0.0]


def test_json_report_round_trips(tmp_path: Path) -> None:
    results, timeline = fixtures()
    summary = summarize(results, {"sim": timeline}, {"sim": {"a": 2.0}}, "sim", 8.0)
    path = tmp_path / "deep" / "report.json"
    write_json(path, summary, results, {"sim": timeline}, {"installed_with": "helm"})
    data = json.loads(path.read_text())
    assert data["installed_with"] == "helm"
    assert data["summary"]["num_failed"] == 1 and data["summary"]["is_success"] is False
    assert data["summary"]["failures"] == {"InternalServerError": 1}
    assert "saving" in data["summary"]["costs"]["sim"]
    assert [r["index"] for r in data["requests"]] == [0, 1, 2]
    assert data["timeline"]["sim"][0]["desired"] == {"a": 1}


def test_plot_is_a_png(tmp_path: Path) -> None:
    results, timeline = fixtures()
    path = tmp_path / "plot.png"
    write_plot(path, results, timeline, 8.0, "title", "a long note " * 30)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
