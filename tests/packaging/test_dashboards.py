"""The dashboards are importable Grafana JSON built from the metric contract, and committed up to date."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tokenfleet_common import metric_names
from tokenfleet_devkit.packaging import dashboard_model, fleet_gauges, sync
from tokenfleet_devkit.packaging.dashboards import DASHBOARDS

pytestmark = pytest.mark.unit

DASHBOARD_DIR = sync.REPO / "dashboards"
KNOWN_METRICS = {v for k, v in vars(metric_names).items() if k.isupper() and k != "PREFIX"} | set(
    fleet_gauges.ALL
)


def committed(name: str) -> dict[str, Any]:
    return dict(json.loads((DASHBOARD_DIR / name).read_text()))


def metric_base(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_committed_json_matches_its_builder(name: str) -> None:
    assert (DASHBOARD_DIR / name).read_text() == sync.dashboard_text(DASHBOARDS[name]), (
        "dashboards/ is stale: run `python -m tokenfleet_devkit.packaging.sync`"
    )


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_is_importable_with_a_datasource_variable(name: str) -> None:
    board = committed(name)
    assert board["uid"].startswith("tokenfleet-") and len(board["uid"]) <= 40
    assert board["schemaVersion"] >= 39
    assert "tokenfleet" in board["tags"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert {"namespace", "deployment"} <= set(variables)
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}"
            assert var["query"]["query"].startswith("label_values(")
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 6
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"]), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
        assert panel["description"], f"panel {panel['title']!r} needs a description"
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24


def test_uids_and_titles_are_distinct() -> None:
    boards = [committed(n) for n in DASHBOARDS]
    assert len({b["uid"] for b in boards}) == len(boards)
    assert len({b["title"] for b in boards}) == len(boards)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_query_uses_known_metrics_and_selects_the_fleet(name: str) -> None:
    board = committed(name)
    exprs = [e for _, e in dashboard_model.panel_queries(board)]
    exprs += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    for expr in exprs:
        names = set(re.findall(r"\b(tokenfleet_[a-z_]+)\b", expr))
        assert names, expr
        unknown = {n for n in names if metric_base(n) not in KNOWN_METRICS}
        assert not unknown, f"{unknown} in {expr}"
        assert "$namespace" in expr and "$deployment" in expr, f"query ignores the fleet variables: {expr}"


def test_the_overview_covers_the_issue_list() -> None:
    titles = {p["title"] for p in committed("fleet-overview.json")["panels"]}
    for wanted in (
        "Desired vs ready replicas",
        "Queue depth",
        "KV-cache utilisation",
        "Tokens per second",
        "Cost per million tokens",
        "Hourly cost",
        "Time to first token",
        "Inter-token latency",
        "Scaling state",
    ):
        assert wanted in titles
    annotations = committed("fleet-overview.json")["annotations"]["list"]
    assert any(metric_names.OPERATOR_DECISIONS in a.get("expr", "") for a in annotations)


def test_layout_wraps_rows_inside_the_grid() -> None:
    panel = dashboard_model.Panel("p", "d", (dashboard_model.Query("x"),))
    placed = dashboard_model.layout([("row", [panel, panel, panel])])
    grids = [p["gridPos"] for p in placed if p["type"] != "row"]
    assert [(g["x"], g["y"]) for g in grids] == [(0, 1), (12, 1), (0, 9)]


def test_sync_check_reports_nothing_stale() -> None:
    assert sync.stale_files() == []


def test_committed_files_are_plain_json(tmp_path: Path) -> None:
    for name in DASHBOARDS:
        json.loads((DASHBOARD_DIR / name).read_text())
