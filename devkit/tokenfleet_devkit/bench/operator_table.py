"""The table `tokenfleet bench operator` prints: every measure next to its target."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _fmt(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def table(results: dict[str, Any]) -> Table:
    rec, tick, idle, rss = (results[k] for k in ("reconcile_latency_s", "tick_s", "idle", "operator_rss_mb"))
    cfg = results["config"]
    t = Table(title=f"operator: {cfg['fleets']} fleets on {cfg['nodes']} kwok GPU nodes")
    for column in ("measure", "value", "target"):
        t.add_column(column)
    t.add_row("reconcile latency p50 (spec change acked -> Deployment)", _fmt(rec["p50"], " s"), "")
    t.add_row("reconcile latency p99", _fmt(rec["p99"], " s"), "< 2 s")
    t.add_row(
        "  p50 / p99 of the operator's handler alone",
        f"{_fmt(rec.get('handler_p50'), ' s')} / {_fmt(rec.get('handler_p99'), ' s')}",
        "",
    )
    t.add_row(
        "  p50 / p99 from sending the change",
        f"{_fmt(rec.get('from_send_p50'), ' s')} / {_fmt(rec.get('from_send_p99'), ' s')}",
        "",
    )
    t.add_row("changes measured", f"{rec['measured']} of {rec['changes']}", "all")
    t.add_row(
        "tick per fleet mean / p99 (cached pods, scrape, decide, writes)",
        f"{_fmt(tick['mean'], ' s')} / {_fmt(tick['p99'], ' s')}",
        "",
    )
    t.add_row("policy.decide per fleet (full history)", _fmt(results["decide_us_per_fleet"], " µs", 0), "")
    reads = idle["requests_per_minute"].get("GET", 0.0)
    t.add_row("idle API reads per minute", _fmt(reads, "", 0), "")
    t.add_row("idle API writes per minute", _fmt(idle["writes_per_minute"], "", 1), "0")
    t.add_row("objects written while idle (by version)", str(len(idle["objects_changed"])), "0")
    t.add_row("operator RSS now / peak", f"{rss['VmRSS']:.0f} / {rss['VmHWM']:.0f} MB", "< 250 MB")
    return t
