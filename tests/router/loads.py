"""Tiny builders for the router's value types, shared by the unit tests."""

from __future__ import annotations

from typing import Any

from tokenfleet_router.types import Endpoint, WorkerLoad


def load(name: str, **fields: Any) -> WorkerLoad:
    values: dict[str, Any] = {"num_in_flight": 0, "tokens_in_flight": 0, **fields}
    return WorkerLoad(endpoint=Endpoint(name, f"http://{name}:8000"), **values)


def names(loads: list[WorkerLoad]) -> list[str]:
    return [w.name for w in loads]
