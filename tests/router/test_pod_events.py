from __future__ import annotations

from typing import Any

import pytest

from tokenfleet_router.pod_events import PodSet, WatchExpired, apply_event, pod_endpoint, state_from_list
from tokenfleet_router.types import Endpoint

pytestmark = pytest.mark.unit
PORT = 8000


def pod(
    name: str = "w-1",
    ip: str | None = "10.0.0.5",
    phase: str = "Running",
    ready: str = "True",
    deleting: bool = False,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    version: str = "7",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "resourceVersion": version, "labels": labels or {}}
    if annotations is not None:
        metadata["annotations"] = annotations
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": metadata, "status": status}


@pytest.mark.parametrize(
    ("name", "obj", "url"),
    [
        ("running and ready", pod(), "http://10.0.0.5:8000"),
        ("not ready", pod(ready="False"), None),
        ("pending", pod(phase="Pending"), None),
        ("no IP yet", pod(ip=None), None),
        ("being deleted (draining)", pod(deleting=True), None),
        ("port from annotation", pod(annotations={"tokenfleet.io/port": "9001"}), "http://10.0.0.5:9001"),
        ("port from label", pod(labels={"tokenfleet.io/port": "9002"}), "http://10.0.0.5:9002"),
        ("bad port ignored", pod(annotations={"tokenfleet.io/port": "http"}), "http://10.0.0.5:8000"),
        ("IPv6", pod(ip="fd00::5"), "http://[fd00::5]:8000"),
        (
            "no conditions",
            {"metadata": {"name": "x"}, "status": {"phase": "Running", "podIP": "1.2.3.4"}},
            None,
        ),
        ("empty object", {}, None),
    ],
)
def test_pod_endpoint(name: str, obj: dict[str, Any], url: str | None) -> None:
    endpoint = pod_endpoint(obj, PORT)
    assert (endpoint.url if endpoint else None) == url, name


def test_list_then_events() -> None:
    state = state_from_list([pod("a", "10.0.0.1"), pod("b", "10.0.0.2", ready="False")], "10", PORT)
    assert set(state.endpoints) == {"a"} and state.resource_version == "10"

    state = apply_event(state, {"type": "MODIFIED", "object": pod("b", "10.0.0.2", version="11")}, PORT)
    assert set(state.endpoints) == {"a", "b"} and state.resource_version == "11"

    # a pod turning unready or starting to drain leaves at once
    state = apply_event(
        state, {"type": "MODIFIED", "object": pod("a", "10.0.0.1", ready="False", version="12")}, PORT
    )
    assert set(state.endpoints) == {"b"}
    state = apply_event(
        state, {"type": "MODIFIED", "object": pod("b", "10.0.0.2", deleting=True, version="13")}, PORT
    )
    assert state.endpoints == {}

    state = apply_event(state, {"type": "ADDED", "object": pod("c", "10.0.0.3", version="14")}, PORT)
    state = apply_event(state, {"type": "DELETED", "object": pod("c", "10.0.0.3", version="15")}, PORT)
    assert state == PodSet({}, "15")


def test_pod_ip_change_updates_endpoint() -> None:
    state = state_from_list([pod("a", "10.0.0.1")], "1", PORT)
    state = apply_event(state, {"type": "MODIFIED", "object": pod("a", "10.0.0.9", version="2")}, PORT)
    assert state.endpoints["a"] == Endpoint("a", "http://10.0.0.9:8000")


def test_bookmark_only_moves_the_resource_version() -> None:
    state = state_from_list([pod("a")], "1", PORT)
    after = apply_event(state, {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "99"}}}, PORT)
    assert after.endpoints == state.endpoints and after.resource_version == "99"


def test_expired_watch_and_other_errors() -> None:
    state = PodSet({}, "1")
    with pytest.raises(WatchExpired):
        apply_event(state, {"type": "ERROR", "object": {"code": 410, "message": "too old"}}, PORT)
    with pytest.raises(ValueError, match="forbidden"):
        apply_event(state, {"type": "ERROR", "object": {"code": 403, "message": "forbidden"}}, PORT)


def test_input_state_is_not_mutated() -> None:
    state = state_from_list([pod("a")], "1", PORT)
    apply_event(state, {"type": "DELETED", "object": pod("a")}, PORT)
    assert set(state.endpoints) == {"a"}
