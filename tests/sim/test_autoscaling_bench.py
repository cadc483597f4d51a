"""The benchmark's smoke mode and the `tokenfleet sim` entry, on the real traces when they are present."""

import json
from pathlib import Path

import pytest

from tokenfleet_devkit import traces
from tokenfleet_devkit.bench import autoscaling
from tokenfleet_devkit.sim import cli


def _require(name: str) -> None:
    try:
        traces.trace_path(name)
    except traces.TraceMissing as err:
        pytest.skip(str(err))


def test_smoke_benchmark_writes_json_and_plots(tmp_path: Path) -> None:
    _require(traces.AZURE_CODE)
    assert autoscaling.main(["--smoke", "--trace", "azure-code", "--results", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "autoscaling.json").read_text())
    scenario = report["scenarios"]["azure-code"]
    assert set(scenario["policies"]) == {
        "static-peak",
        "hpa-rps",
        "keda-waiting",
        "knative-kpa",
        "tokenfleet",
        "oracle",
        "oracle-cold-start",
    }
    for summary in scenario["policies"].values():
        assert summary["requests"] == scenario["requests"] > 0
        assert summary["completed"] + sum(summary["rejected"].values()) == summary["requests"]
    assert scenario["targets"] and all("met" in t for t in scenario["targets"])
    assert (tmp_path / "autoscaling_azure-code_replicas.png").stat().st_size > 0
    assert (tmp_path / "autoscaling_azure-code_cost_slo.png").stat().st_size > 0


def test_missing_traces_are_skipped_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKENFLEET_TRACES", str(tmp_path / "absent"))
    assert autoscaling.main(["--smoke", "--no-plots", "--results", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "autoscaling.json").read_text())
    assert all("skipped" in s for s in report["scenarios"].values())
    assert cli.main(["--minutes", "1"]) == 0
    assert "skipping" in capsys.readouterr().err


def test_sim_cli_runs_a_trace_excerpt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _require(traces.AZURE_CODE)
    out = tmp_path / "run.json"
    code = cli.main(
        [
            "--trace",
            "azure-code",
            "--policy",
            "static",
            "--replicas",
            "2",
            "--minutes",
            "3",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    assert "slo_attainment" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["summary"]["completed"] > 0
    assert data["timeline"][0]["ready"] == {"h100": 2}


def test_sim_cli_refuses_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--minutes", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err
    assert cli.main(["--decode-step-target-ms", "0"]) == 2
    assert "--decode-step-target-ms must be positive" in capsys.readouterr().err


def test_sim_cli_shortest_prompt_first_keeps_more_of_a_burst_in_the_slo(tmp_path: Path) -> None:
    # Two static replicas against the Azure trace's first burst at 4x: the same work either way, but
    # short prompts first puts more requests within the TTFT target.
    _require(traces.AZURE_CODE)
    attainment: dict[str, float] = {}
    for policy in ("fcfs", "shortest-prompt-first"):
        out = tmp_path / f"{policy}.json"
        args = ["--policy", "static", "--replicas", "2", "--minutes", "4", "--rate-scale", "4"]
        assert cli.main([*args, "--scheduling-policy", policy, "--json", str(out)]) == 0
        attainment[policy] = json.loads(out.read_text())["summary"]["slo_attainment"]
    assert attainment["shortest-prompt-first"] > attainment["fcfs"] + 0.05


def test_an_unknown_trace_name_is_refused_with_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It used to run nothing and report every target met.
    with pytest.raises(SystemExit) as exit_info:
        autoscaling.main(["--smoke", "--trace", "mooncake", "--results", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "mooncake-conversation" in capsys.readouterr().err
    assert not (tmp_path / "autoscaling.json").exists()
