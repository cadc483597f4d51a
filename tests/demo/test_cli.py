"""`tokenfleet demo`: option checks, and a short demo run end to end on a local cluster of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tokenfleet_devkit.cluster import control_plane
from tokenfleet_devkit.demo.cli import DEMO_NAMESPACE, build_parser, choices_from, main

E2E_CLUSTER = "tokenfleet-demo-e2e"


@pytest.mark.unit
def test_defaults_fit_the_five_minute_budget() -> None:
    choices = choices_from(build_parser().parse_args([]))
    options = choices.workload_options
    assert options.burst_s + options.quiet_s <= 180
    assert choices.namespace == DEMO_NAMESPACE and choices.args.trace == "azure-code"


@pytest.mark.unit
def test_reuse_gets_a_fresh_namespace_and_options_reach_the_workload() -> None:
    args = build_parser().parse_args(
        [
            "--reuse-cluster",
            "--duration",
            "60",
            "--quiet",
            "20",
            "--speedup",
            "2",
            "--strategy",
            "round-robin",
        ]
    )
    choices = choices_from(args)
    assert choices.namespace.startswith("demo-") and choices.namespace != choices_from(args).namespace
    assert (choices.workload_options.burst_s, choices.workload_options.speedup) == (40, 2)


@pytest.mark.unit
def test_a_duration_without_room_for_a_burst_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--duration", "30", "--quiet", "25"]) == 2
    assert "at least 10 seconds of burst" in capsys.readouterr().out


@pytest.mark.unit
def test_unknown_trace_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--trace", "nope"])


@pytest.mark.e2e
@pytest.mark.slow
def test_short_demo_serves_everything_and_scales_up_down_and_from_zero(tmp_path: Path) -> None:
    """Its own cluster, so other tests' fleets and leftovers on the shared one cannot disturb it; the
    demo moves its pod network aside when another local cluster uses the same addresses."""
    paths = control_plane.Paths.default(E2E_CLUSTER)
    command = [
        sys.executable,
        "-m",
        "tokenfleet_devkit.demo.cli",
        "--cluster-name",
        E2E_CLUSTER,
        "--duration",
        "60",
        "--quiet",
        "35",
        "--results-dir",
        str(tmp_path),
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=480)
    finally:
        if control_plane.is_running(paths):  # the demo tears down itself; this only guards a timeout
            control_plane.down(say=lambda line: None, paths=paths)
    output = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, output
    report = json.loads((tmp_path / "report.json").read_text())
    summary = report["summary"]
    assert summary["num_failed"] == 0 and summary["failures"] == {}, output
    assert summary["num_ok"] == summary["num_sent"] == report["planned_requests"]
    assert summary["moves"]["ups"] >= 1 and summary["moves"]["downs"] >= 1, summary["moves"]
    assert summary["moves"]["reached_zero"] and summary["moves"]["woke_from_zero"] >= 2
    assert summary["num_cold_ok"] >= 1 and summary["is_late_ok"]
    assert summary["ttft_p50_s"] is not None and summary["costs"]["sim"]["saving"] > 0
    events = report["operator_events"]["code"]
    assert events.get("ScaledUp", 0) >= 1 and events.get("ScaledDown", 0) >= 1, events
    assert report["installed_with"] == "helm", report["installed_with"]
    assert summary["served_by_fleet"].get("torch", 0) >= 1, "no request reached the torch-backend worker"
    assert (tmp_path / "load_vs_replicas.png").read_bytes()[:4] == b"\x89PNG"
    assert "cluster down" in proc.stdout and not control_plane.is_running(paths)
