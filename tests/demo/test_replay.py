"""Prompts of exact lengths, and how the replayer classifies answers from a real local HTTP server:
a finished stream is served, an error status or a stream cut before its finish reason is a failure."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tokenfleet_devkit.demo.replay import PromptIds, Replayer
from tokenfleet_devkit.demo.workload import BURST, SIM_FLEET, PlannedRequest


@pytest.mark.unit
def test_prompt_ids_have_the_asked_length_and_differ_between_requests() -> None:
    prompts = PromptIds(list(range(100)))
    assert len(prompts.ids(0, 5)) == 5 and len(prompts.ids(3, 250)) == 250
    assert prompts.ids(0, 10) != prompts.ids(1, 10)
    assert prompts.ids(7, 10) == prompts.ids(7, 10)
    with pytest.raises(ValueError):
        PromptIds([])


def _chunk(text: str, finish: str | None) -> bytes:
    body = {
        "id": "c",
        "object": "text_completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class FakeWorker(BaseHTTPRequestHandler):
    """Answers by model name: `ok` streams to the end, `missing` is a 404, `cut` stops mid-stream."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = request["model"]
        if model == "missing":
            body = json.dumps(
                {"error": {"message": "no such model", "type": "not_found", "code": 404}}
            ).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(_chunk("a", None))
        if model == "ok":
            self.wfile.write(_chunk("b", "length"))
            self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def worker_address() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWorker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize(
    ("model", "expected_error", "status"),
    [("ok", None, None), ("missing", "NotFoundError", 404), ("cut", "StreamEndedEarly", None)],
)
def test_replayer_classifies_answers(
    worker_address: str, model: str, expected_error: str | None, status: int | None
) -> None:
    replayer = Replayer({SIM_FLEET: worker_address}, {SIM_FLEET: model}, PromptIds([5, 6, 7]), lambda f: True)

    async def go() -> None:
        request = PlannedRequest(0, 0.0, 4, 2, BURST, SIM_FLEET)
        await replayer.run((request,), time.monotonic(), deadline_s=20.0)
        await replayer.close()

    asyncio.run(go())
    (result,) = replayer.results
    assert result.error == expected_error and result.is_ok == (expected_error is None)
    assert result.is_cold and result.phase == BURST
    counters = replayer.counters
    assert (counters.sent, counters.ok + counters.failed, counters.in_flight) == (1, 1, 0)
    if status is not None:
        assert counters.http_errors[status] == 1
    if expected_error is None:
        assert result.ttft_s is not None and result.output_tokens == 2
