"""Pure parts of the proxy; its I/O is tested against real workers in test_app.py."""

from __future__ import annotations

import json

import pytest

from tokenfleet_router.proxy import error_event, split_events

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("buffer", "events", "rest"),
    [
        (b"", b"", b""),
        (b"data: {", b"", b"data: {"),
        (b"data: 1\n\n", b"data: 1\n\n", b""),
        (b"data: 1\n\ndata: 2\n\ndata: 3", b"data: 1\n\ndata: 2\n\n", b"data: 3"),
        (b"data: 1\r\n\r\ndata: 2", b"data: 1\r\n\r\n", b"data: 2"),
        (b"data: 1\n", b"", b"data: 1\n"),
    ],
)
def test_split_events(buffer: bytes, events: bytes, rest: bytes) -> None:
    assert split_events(buffer) == (events, rest)


def test_error_event_is_one_openai_shaped_sse_event() -> None:
    event = error_event("worker died")
    assert event.startswith(b"data: ") and event.endswith(b"\n\n") and event.count(b"\n\n") == 1
    body = json.loads(event[len(b"data: ") :])
    assert body["error"]["message"] == "worker died"
    assert set(body["error"]) >= {"message", "type", "code"}
