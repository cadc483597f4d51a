"""Operator-wide settings: one frozen value built at startup from the command line and passed whole."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_WORKER_IMAGE = "ghcr.io/tokenfleet/worker:0.1.0"
DEFAULT_ROUTER_IMAGE = "ghcr.io/tokenfleet/router:0.1.0"
WORKER_PORT = 8000
ROUTER_PORT = 8080


@dataclass(frozen=True)
class OperatorSettings:
    worker_image: str = DEFAULT_WORKER_IMAGE
    router_image: str = DEFAULT_ROUTER_IMAGE
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    is_standalone: bool = False
    peering_name: str = "tokenfleet"
    metrics_port: int = 9090
    kubeconfig: str | None = None
    scrape_timeout_seconds: float = 2.0
    image_pull_policy: str = "IfNotPresent"
