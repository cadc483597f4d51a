"""A small PromQL client over Prometheus' HTTP API, and Grafana variable substitution for tests."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

# Grafana's built-in interval variables, as a dashboard would resolve them for a short time range.
GRAFANA_BUILTINS = {"__rate_interval": "30s", "__interval": "5s", "__range": "5m"}


class PromQLError(RuntimeError):
    """Prometheus refused or failed a query; the message carries its error type and text."""


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Replace `$name` and `${name}` as Grafana does, built-ins included; unknown names are an error."""
    values = {**GRAFANA_BUILTINS, **variables}

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"dashboard variable ${name} has no value")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)


def parse_label_values(query: str) -> tuple[str, str]:
    """Grafana's `label_values(series, label)` variable query as (series selector, label name)."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    if not match:
        raise ValueError(f"not a label_values(series, label) query: {query!r}")
    return match.group(1), match.group(2)


class PrometheusClient:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, params: Mapping[str, str | float]) -> Any:
        response = self.http.get(path, params=dict(params))
        try:
            body = response.json()
        except ValueError:
            raise PromQLError(f"{path}: HTTP {response.status_code}: {response.text[:200]}") from None
        if body.get("status") != "success":
            raise PromQLError(f"{path}: {body.get('errorType', 'error')}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result's series (vector) or one scalar as a single-item list."""
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        return list(data["result"])

    def label_values(self, label: str, series: str) -> list[str]:
        return list(self._get(f"/api/v1/label/{label}/values", {"match[]": series}))

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/targets", {"state": "active"})["activeTargets"])

    def is_ready(self) -> bool:
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False
