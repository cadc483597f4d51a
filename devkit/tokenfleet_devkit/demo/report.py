"""The demo's artefacts under results/demo/: a JSON report and a PNG of load vs replicas over time."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenfleet_devkit.demo.accounting import FleetSample, RequestResult, Summary

RATE_BIN_S = 2.0


def summary_dict(summary: Summary) -> dict[str, Any]:
    data = dataclasses.asdict(summary)
    data["is_success"] = summary.is_success
    for fleet, cost in summary.costs.items():
        data["costs"][fleet]["saving"] = round(cost.saving, 4)
    return data


def write_json(
    path: Path,
    summary: Summary,
    results: Sequence[RequestResult],
    timelines: Mapping[str, Sequence[FleetSample]],
    context: Mapping[str, Any],
) -> None:
    report = {
        **context,
        "summary": summary_dict(summary),
        "timeline": {fleet: [dataclasses.asdict(s) for s in samples] for fleet, samples in timelines.items()},
        "requests": [dataclasses.asdict(r) for r in sorted(results, key=lambda r: r.index)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")


def request_rate(results: Sequence[RequestResult], end_s: float) -> tuple[list[float], list[float]]:
    """Requests sent per second, in bins of RATE_BIN_S: (bin starts, rates)."""
    count = int(end_s // RATE_BIN_S) + 1
    bins = [0] * count
    for r in results:
        bins[min(count - 1, max(0, int(r.sent_s // RATE_BIN_S)))] += 1
    return [i * RATE_BIN_S for i in range(count)], [n / RATE_BIN_S for n in bins]


def write_plot(
    path: Path,
    results: Sequence[RequestResult],
    samples: Sequence[FleetSample],
    end_s: float,
    title: str,
    note: str = "",
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts, rates = request_rate(results, end_s)
    fig, (load_ax, rep_ax) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    load_ax.bar(starts, rates, width=RATE_BIN_S, align="edge", color="tab:gray", label="requests/s sent")
    failed = [r.sent_s for r in results if not r.is_ok]
    if failed:
        load_ax.scatter(failed, [0] * len(failed), color="tab:red", marker="x", label="failed")
    load_ax.set_ylabel("requests / s")
    load_ax.legend(loc="upper right")
    load_ax.set_title(title)
    times = [s.t_s for s in samples]
    rep_ax.step(times, [s.total_desired for s in samples], where="post", label="desired", color="tab:blue")
    rep_ax.step(times, [s.total_ready for s in samples], where="post", label="ready", color="tab:green")
    variants = sorted({v for s in samples for v in s.pods})
    for variant in variants:
        rep_ax.step(
            times,
            [s.pods.get(variant, 0) for s in samples],
            where="post",
            linestyle=":",
            label=f"{variant} pods",
        )
    rep_ax.set_ylabel("worker replicas")
    rep_ax.set_xlabel("seconds since the replay started")
    rep_ax.legend(loc="upper right")
    fig.tight_layout(rect=(0, 0.06 if note else 0, 1, 1))
    if note:
        fig.text(0.01, 0.01, textwrap.fill(note, 150), fontsize=7, color="dimgray")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
