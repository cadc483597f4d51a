"""The fault figures' JSON-lines file: one object per scenario, appended, nothing written when unset."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.reliability import report

pytestmark = pytest.mark.unit


def test_lines_are_appended_with_the_documented_fields(tmp_path: Path) -> None:
    path = tmp_path / "figures" / "reliability.jsonl"
    first = report.ScenarioFigures("worker_sigkill", faults_injected=1, faults_survived=1)
    first.count("completed", 4)
    first.count("failed")
    first.count("rejected", 2)
    first.details = {"retries": 4}
    report.write(first, str(path))
    report.write(report.ScenarioFigures("apiserver_restart"), str(path))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["scenario"] for line in lines] == ["worker_sigkill", "apiserver_restart"]
    assert set(lines[0]) == {
        "scenario",
        "faults_injected",
        "faults_survived",
        "requests_accepted",
        "requests_completed",
        "requests_failed",
        "requests_rejected",
        "seconds",
        "details",
        "time",
    }
    assert (lines[0]["requests_accepted"], lines[0]["requests_completed"], lines[0]["requests_failed"]) == (
        5,
        4,
        1,
    )
    assert lines[0]["requests_rejected"] == 2 and lines[0]["details"] == {"retries": 4}
    assert dt.datetime.fromisoformat(lines[0]["time"]).tzinfo is not None


def test_nothing_is_written_without_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(report.REPORT_ENV, raising=False)
    assert report.write(report.ScenarioFigures("x")) is None
    monkeypatch.setenv(report.REPORT_ENV, str(tmp_path / "r.jsonl"))
    assert report.write(report.ScenarioFigures("x")) == tmp_path / "r.jsonl"
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 1
