"""The demo's terminal output with rich: the live fleet view and the final summary (no I/O but rendering)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tokenfleet_devkit.demo.accounting import FleetSample, Summary
from tokenfleet_devkit.demo.fleet_spec import FleetNames, hourly_costs
from tokenfleet_devkit.demo.replay import Counters


def _num(value: float | None, fmt: str, none: str = "-") -> str:
    return none if value is None else format(value, fmt)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def fleet_table(samples: Mapping[str, FleetSample], names: FleetNames) -> Table:
    table = Table(title="fleets (InferenceDeployment status + live pods)", expand=True)
    for column in (
        "fleet",
        "variant",
        "$/h each",
        "desired",
        "ready",
        "pods",
        "queue/rep",
        "KV",
        "tok/s",
        "$/Mtok",
    ):
        table.add_column(column, justify="left" if column in ("fleet", "variant") else "right")
    for fleet, sample in samples.items():
        costs = hourly_costs(fleet)
        for i, variant in enumerate(costs):
            first = i == 0
            table.add_row(
                names.resource(fleet) if first else "",
                variant,
                f"{costs[variant]:.2f}",
                str(sample.desired.get(variant, 0)),
                str(sample.ready.get(variant, 0)),
                str(sample.pods.get(variant, 0)),
                _num(sample.queue_depth, ".1f") if first else "",
                (_num(sample.kv_usage * 100, ".0f") + "%" if sample.kv_usage is not None else "-")
                if first
                else "",
                _num(sample.tokens_per_second, ".0f") if first else "",
                _num(sample.cost_per_mtok, ".2f") if first else "",
            )
    return table


def live_view(
    phase: str,
    elapsed_s: float,
    total_s: float,
    samples: Mapping[str, FleetSample],
    counters: Counters,
    names: FleetNames,
    note: str,
) -> RenderableType:
    header = Text.assemble(
        ("tokenfleet demo ", "bold"), (f"{phase}", "cyan"), f"  {elapsed_s:5.0f}s / {total_s:.0f}s"
    )
    reasons = Text()
    for fleet, sample in samples.items():
        reasons.append(f"{names.resource(fleet)}: ", style="bold")
        reasons.append(f"{sample.last_reason or 'no scaling yet'}\n")
    errors = ", ".join(f"{code}x{n}" for code, n in sorted(counters.http_errors.items())) or "none"
    requests = Text.assemble(
        ("requests ", "bold"),
        f"sent {counters.sent}  ",
        ("ok ", "green"),
        f"{counters.ok}  ",
        ("failed ", "red" if counters.failed else "green"),
        f"{counters.failed}  in flight {counters.in_flight}  ",
        ("HTTP error answers (the client retries them): ", "dim"),
        errors,
    )
    return Group(
        header,
        fleet_table(samples, names),
        Panel(reasons, title="last scaling reason", expand=True),
        requests,
        Text(note, style="dim"),
    )


def summary_table(summary: Summary, names: FleetNames, duration_s: float) -> Table:
    table = Table(title=f"tokenfleet demo summary ({duration_s:.0f}s of replay)", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    failed = f"{summary.num_failed}" + (f" {summary.failures}" if summary.failures else "")
    moves = summary.moves
    served = ", ".join(f"{names.resource(fleet)} {n}" for fleet, n in summary.served_by_fleet.items())
    rows: list[tuple[str, str | Text]] = [
        ("requests served", f"{summary.num_ok} of {summary.num_sent} ({served})"),
        ("failed requests", Text(failed, style="red bold" if summary.num_failed else "green")),
        ("TTFT p50 / p95", f"{_seconds(summary.ttft_p50_s)} / {_seconds(summary.ttft_p95_s)}"),
        (
            "  sent to a warm fleet",
            f"{_seconds(summary.warm_ttft_p50_s)} / {_seconds(summary.warm_ttft_p95_s)} "
            "(the rest waited for a worker to start)",
        ),
        ("latency p95", _seconds(summary.latency_p95_s)),
        ("scale-ups / scale-downs", f"{moves.ups} / {moves.downs} ({names.sim})"),
        ("scaled to zero", "yes" if moves.reached_zero else "no"),
        (
            "woke from zero",
            f"{moves.woke_from_zero}x; {summary.num_cold_ok} request(s) sent at zero answered",
        ),
        ("late request answered", "yes" if summary.is_late_ok else "no"),
    ]
    for fleet, cost in summary.costs.items():
        peak = ", ".join(f"{v} {n}" for v, n in cost.peak_pods.items())
        rows.append(
            (
                f"{names.resource(fleet)}: GPU-hours, cost",
                f"{cost.gpu_hours:.4f} GPU-h, ${cost.cost:.4f} vs peak provisioning ({peak}) "
                f"{cost.peak_gpu_hours:.4f} GPU-h, ${cost.peak_cost:.4f}: {cost.saving:.0%} saved",
            )
        )
    for what, value in rows:
        table.add_row(what, value)
    return table
