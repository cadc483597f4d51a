"""Alert rules: valid for promtool, firing when they should (promtool's rule unit tests), and the
chart's PrometheusRule copy identical to the plain rules file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenfleet_common import metric_names
from tokenfleet_devkit.packaging import fleet_gauges, sync

pytestmark = pytest.mark.unit

RULES = sync.ALERTS
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
KNOWN = {v for k, v in vars(metric_names).items() if k.isupper() and k != "PREFIX"} | set(fleet_gauges.ALL)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_issue_alerts_exist_and_use_known_metrics() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    alerts = {r["alert"] for r in rules if "alert" in r}
    assert {
        "TokenfleetFleetAtMaxReplicas",
        "TokenfleetBudgetCapReached",
        "TokenfleetMetricsStale",
        "TokenfleetTTFTSLOBurn",
    } <= alerts
    recorded = {r["record"] for r in rules if "record" in r}
    for rule in rules:
        names = set(re.findall(r"\b(tokenfleet_[a-z_]+)\b", rule["expr"]))
        bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
        assert bases <= KNOWN | recorded, f"{bases - KNOWN} in {rule.get('alert') or rule.get('record')}"
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_chart_copy_is_identical() -> None:
    copy = sync.CHART / "files" / RULES.name
    assert copy.read_text() == RULES.read_text(), "run `python -m tokenfleet_devkit.packaging.sync`"


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


FLEET = {"namespace": "prod", "infdep": "chat"}


def unit_tests() -> list[dict[str, Any]]:
    slow_ttft = [
        series(f"{metric_names.TTFT}_bucket", {**FLEET, "le": le}, f"0+{n}x120")
        for le, n in (("0.5", 0), ("1", 1), ("5", 10), ("+Inf", 10))
    ]
    return [
        {  # 8 of 8 replicas wanted for 20 minutes: fires; a fleet below its cap does not.
            "interval": "1m",
            "input_series": [
                series(fleet_gauges.DESIRED_REPLICAS, {**FLEET, "variant": "h100"}, "5x20"),
                series(fleet_gauges.DESIRED_REPLICAS, {**FLEET, "variant": "l40s"}, "3x20"),
                series(fleet_gauges.MAX_REPLICAS, FLEET, "8x20"),
                series(
                    fleet_gauges.DESIRED_REPLICAS,
                    {"namespace": "prod", "infdep": "small", "variant": "a"},
                    "1x20",
                ),
                series(fleet_gauges.MAX_REPLICAS, {"namespace": "prod", "infdep": "small"}, "8x20"),
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "TokenfleetFleetAtMaxReplicas", "exp_alerts": []},
                {
                    "eval_time": "20m",
                    "alertname": "TokenfleetFleetAtMaxReplicas",
                    "exp_alerts": [{"exp_labels": {**FLEET, "severity": "warning"}}],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                series(fleet_gauges.HOURLY_COST, FLEET, "20 40x20"),
                series(fleet_gauges.HOURLY_BUDGET, FLEET, "40x21"),
                series(
                    fleet_gauges.CONDITION,
                    {**FLEET, "type": "MetricsStale", "reason": "ScrapeFailed"},
                    "0x3 1x10",
                ),
            ],
            "alert_rule_test": [
                {
                    "eval_time": "15m",
                    "alertname": "TokenfleetBudgetCapReached",
                    "exp_alerts": [{"exp_labels": {**FLEET, "severity": "warning"}}],
                },
                {"eval_time": "5m", "alertname": "TokenfleetMetricsStale", "exp_alerts": []},
                {
                    "eval_time": "10m",
                    "alertname": "TokenfleetMetricsStale",
                    "exp_alerts": [{"exp_labels": {**FLEET, "severity": "critical"}}],
                },
            ],
        },
        {  # p95 TTFT ~ 4.5 s against a 1 s target, sustained for over an hour: the SLO burns.
            "interval": "1m",
            "input_series": [*slow_ttft, series(fleet_gauges.TTFT_TARGET, FLEET, "1x120")],
            "alert_rule_test": [
                {
                    "eval_time": "90m",
                    "alertname": "TokenfleetTTFTSLOBurn",
                    "exp_alerts": [{"exp_labels": {**FLEET, "severity": "critical"}}],
                },
            ],
        },
    ]


def test_alerts_fire_on_scripted_series(tmp_path: Path) -> None:
    # promtool compares annotations verbatim; these tests are about expressions, `for` and labels.
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    spec = {"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": unit_tests()}
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
