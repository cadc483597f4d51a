"""Grafana dashboard JSON, built from small pure functions (no I/O).

Every query goes through the `$datasource` variable, so a dashboard imports into any Grafana with a
Prometheus datasource. Fleet metrics carry the target labels `namespace`, `infdep`, `variant` and
`pod` (set by the file-SD config or the chart's PodMonitor); `FLEET` selects on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39  # Grafana 10.4 / 11.x
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
FLEET = 'namespace=~"$namespace", infdep=~"$deployment"'
PANEL_WIDTH, PANEL_HEIGHT, GRID_COLUMNS = 12, 8, 24

Json = dict[str, Any]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | state-timeline
    width: int = PANEL_WIDTH
    extra_defaults: Json = field(default_factory=dict)


@dataclass(frozen=True)
class Annotation:
    name: str
    expr: str
    title: str
    color: str = "orange"


def quantile(q: float, histogram: str, by: str = "", selector: str = FLEET) -> str:
    """A histogram quantile over the dashboard's rate interval, optionally grouped by `by`."""
    group = f"le, {by}" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({group}) "
        f"(rate({histogram}_bucket{{{selector}}}[$__rate_interval])))"
    )


def datasource_variable() -> Json:
    return {
        "name": "datasource",
        "label": "Datasource",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
    }


def query_variable(name: str, label: str, metric: str, label_name: str, selector: str = "") -> Json:
    """A multi-value variable listing the values of `label_name` on `metric` (with an All option)."""
    series = f"{metric}{{{selector}}}" if selector else metric
    query = f"label_values({series}, {label_name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values", "qryType": 1},
        "definition": query,
        "current": {},
        "hide": 0,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "refresh": 2,  # on time-range change: fleets come and go
        "sort": 1,
        "options": [],
        "regex": "",
    }


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> Json:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": q.expr,
            "legendFormat": q.legend or "__auto",
            "range": True,
        }
        for i, q in enumerate(panel.queries)
    ]
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit, **panel.extra_defaults}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
    }


def _row_json(title: str, panel_id: int, y: int) -> Json:
    return {
        "id": panel_id,
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y},
    }


def layout(rows: list[tuple[str, list[Panel]]]) -> list[Json]:
    """Place panels left to right, wrapping at the grid width, with a row header per group."""
    out: list[Json] = []
    panel_id, y = 1, 0
    for title, panels in rows:
        out.append(_row_json(title, panel_id, y))
        panel_id, y, x = panel_id + 1, y + 1, 0
        for panel in panels:
            if x + panel.width > GRID_COLUMNS:
                x, y = 0, y + PANEL_HEIGHT
            out.append(_panel_json(panel, panel_id, x, y))
            panel_id, x = panel_id + 1, x + panel.width
        y += PANEL_HEIGHT
    return out


def annotation_json(annotation: Annotation) -> Json:
    return {
        "name": annotation.name,
        "datasource": DATASOURCE,
        "enable": True,
        "expr": annotation.expr,
        "iconColor": annotation.color,
        "titleFormat": annotation.title,
        "step": "30s",
        "useValueForTime": False,
    }


def builtin_annotation() -> Json:
    return {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[Json],
    rows: list[tuple[str, list[Panel]]],
    annotations: tuple[Annotation, ...] = (),
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tokenfleet", "llm-inference"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [
            {
                "title": "tokenfleet dashboards",
                "type": "dashboards",
                "tags": ["tokenfleet"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": variables},
        "annotations": {"list": [builtin_annotation(), *(annotation_json(a) for a in annotations)]},
        "panels": layout(rows),
    }


def panel_queries(board: Json) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel: what the end-to-end test executes."""
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]
