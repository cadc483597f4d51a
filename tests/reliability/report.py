"""Fault figures of the reliability tests, appended to a JSON-lines file for the bench or the lead.

When the environment variable `TOKENFLEET_RELIABILITY_REPORT` names a file, every fault scenario
appends one line to it (the file is created if missing, never truncated, so several runs or several
pytest workers can share it). Without the variable nothing is written. One line is one JSON object:

    {
      "scenario": "worker_sigkill_mid_stream",   # stable id, one per test
      "faults_injected": 1,                      # faults the test caused (kills, restarts, outages)
      "faults_survived": 1,                      # of those, how many the system came through
                                                 # (the test passed its checks up to that point)
      "requests_accepted": 12,                   # requests the system took (not refused with 429/503)
      "requests_completed": 11,                  # of those, answered in full
      "requests_failed": 1,                      # of those, ended with an error (e.g. an SSE error
                                                 # event for a stream cut by a killed worker)
      "requests_rejected": 0,                    # refused on purpose (429/503 while draining ...)
      "seconds": 4.2,                            # wall time of the scenario
      "details": {...},                          # scenario-specific figures (retries, preemptions,
                                                 # replica writes, exit codes ...), flat JSON values
      "time": "2026-11-27T16:10:00+00:00"        # when the line was written (UTC)
    }

A scenario that fails its checks writes nothing: the test failure is the report. `tokenfleet bench
reliability` merges these lines into its table (devkit/tokenfleet_devkit/bench/reliability_report.py);
by hand: `[json.loads(line) for line in path.read_text().splitlines()]`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_ENV = "TOKENFLEET_RELIABILITY_REPORT"


@dataclass
class ScenarioFigures:
    """Counts for one fault scenario, filled in by the test as it goes."""

    scenario: str
    faults_injected: int = 0
    faults_survived: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # "completed" | "failed" | "rejected"
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def count(self, outcome: str, n: int = 1) -> None:
        self.outcomes[outcome] += n

    def as_record(self, now: dt.datetime) -> dict[str, Any]:
        completed, failed = self.outcomes["completed"], self.outcomes["failed"]
        return {
            "scenario": self.scenario,
            "faults_injected": self.faults_injected,
            "faults_survived": self.faults_survived,
            "requests_accepted": completed + failed,
            "requests_completed": completed,
            "requests_failed": failed,
            "requests_rejected": self.outcomes["rejected"],
            "seconds": round(time.monotonic() - self.started, 2),
            "details": self.details,
            "time": now.isoformat(timespec="seconds"),
        }


def write(figures: ScenarioFigures, path: str | None = None) -> Path | None:
    """Append the scenario's line to $TOKENFLEET_RELIABILITY_REPORT (or `path`); None when unset."""
    target = path or os.environ.get(REPORT_ENV)
    if not target:
        return None
    line = json.dumps(figures.as_record(dt.datetime.now(dt.UTC)), sort_keys=True)
    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:  # one write per line, so concurrent writers do not interleave
        f.write(line + "\n")
    return out
