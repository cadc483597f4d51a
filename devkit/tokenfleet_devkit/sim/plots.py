"""PNG plots of a benchmark scenario (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenfleet_devkit.sim.runs import Run, Search


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def replicas_over_time(scenario: str, runs: Sequence[Run], path: Path) -> None:
    """Ready replicas per policy (top) and the arrival rate (bottom)."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=[3, 1])
    for run in runs:
        hours = [p.time / 3600.0 for p in run.result.timeline]
        top.step(
            hours, [sum(p.ready.values()) for p in run.result.timeline], where="post", label=run.policy, lw=1
        )
    if runs:
        timeline = runs[0].result.timeline
        bottom.plot(
            [p.time / 3600.0 for p in timeline], [p.arrivals_per_s for p in timeline], lw=0.6, color="gray"
        )
    top.set_ylabel("ready replicas")
    top.set_title(f"{scenario}: replicas over time (best setting per policy)")
    top.legend(fontsize=8, ncol=3)
    bottom.set_ylabel("arrivals/s")
    bottom.set_xlabel("hours")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cost_vs_slo(scenario: str, searches: Sequence[Search], path: Path) -> None:
    """Every setting tried: dollars against SLO attainment, the 99% line marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for found in searches:
        xs = [float(r.summary["dollars"]) for r in found.tried]
        ys = [100.0 * float(r.summary["slo_attainment"]) for r in found.tried]
        ax.scatter(xs, ys, label=found.policy, s=18)
    ax.axhline(99.0, color="red", lw=0.8, ls="--")
    ax.set_xlabel("dollars")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_title(f"{scenario}: cost vs SLO attainment (all settings searched)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
