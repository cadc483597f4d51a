"""The reliability report: this benchmark's scenarios plus the rows the fault and fuzz tests wrote.

The tests append JSON lines to $TOKENFLEET_RELIABILITY_REPORT, one object per scenario, e.g.
`{"scenario": "worker-killed-mid-stream", "faults_injected": 1, "faults_survived": 1, "accepted": 12,
"completed": 12, "failed": 0}` or `{"scenario": "fuzz", "cases": 1800, "failures": 0}`. Keys are read
tolerantly (`injected`/`faults_injected`, `rejected`/`rejected_429`, ...), a later line for the same
scenario replaces an earlier one (test reruns append), and keys not shown in a column are kept in
the JSON. Lines that are not JSON objects with a "scenario" are counted and skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

ALIASES: dict[str, tuple[str, ...]] = {
    "injected": ("faults_injected", "injected", "faults"),
    "survived": ("faults_survived", "survived"),
    "accepted": ("accepted", "requests_accepted"),
    "completed": ("completed", "requests_completed"),
    "failed": ("failed", "requests_failed", "failures"),
    "rejected_429": ("rejected_429", "rejected", "requests_rejected"),
    "cases": ("cases", "fuzz_cases", "num_cases"),
}


def _pick(row: dict[str, Any], field: str) -> Any:
    for key in ALIASES[field]:
        if key in row:
            return row[key]
    return None


def read_test_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The latest row per scenario, in first-seen order, and how many lines were skipped."""
    rows: dict[str, dict[str, Any]] = {}
    skipped = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if not isinstance(row, dict) or not isinstance(row.get("scenario"), str):
            skipped += 1
            continue
        rows[row["scenario"]] = row
    return list(rows.values()), skipped


def normalize(row: dict[str, Any], source: str) -> dict[str, Any]:
    """One table row from a test's JSON line: the columns, plus everything else it said."""
    shown = {field: _pick(row, field) for field in ALIASES}
    passed = row.get("passed", row.get("ok"))
    if passed is None and shown["failed"] is not None:
        passed = shown["failed"] == 0
    return {"scenario": row["scenario"], "source": source, **shown, "passed": passed, "raw": row}


def overload_row(figures: dict[str, Any], unchecked: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The overload scenario as a table row; `unchecked` invariants do not count towards "ok"."""
    load = figures["requests"]
    return {
        "scenario": f"overload {figures['factor']:g}x for {figures['duration_s']:g}s",
        "source": f"bench ({figures['mode']})",
        "injected": None,
        "survived": None,
        "accepted": load["accepted"],
        "completed": load["completed"],
        "failed": load["failed"],
        "rejected_429": load["rejected_429"],
        "cases": None,
        "passed": all(ok for claim, ok in figures["invariants"].items() if claim not in unchecked),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "[green]yes[/green]" if value else "[red]no[/red]"
    return str(value)


def scenario_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="reliability: scenarios")
    columns = (
        "scenario",
        "source",
        "faults in/survived",
        "accepted",
        "completed",
        "failed",
        "429",
        "cases",
        "ok",
    )
    for column in columns:
        t.add_column(column)
    for r in rows:
        faults = "-" if r["injected"] is None else f"{r['injected']}/{_cell(r['survived'])}"
        t.add_row(
            r["scenario"],
            r["source"],
            faults,
            *(_cell(r[k]) for k in ("accepted", "completed", "failed", "rejected_429", "cases", "passed")),
        )
    return t


def memory_table(figures: dict[str, Any]) -> Table:
    t = Table(title="overload: resident memory (MiB) and invariants")
    for column in ("process", "at start", "peak, 1st half", "peak", "bounded"):
        t.add_column(column)
    for name, m in figures["peak_rss"].items():
        t.add_row(
            name,
            _cell(m["start_mib"]),
            _cell(m["first_half_peak_mib"]),
            _cell(m["peak_mib"]),
            _cell(m["bounded"]),
        )
    return t
