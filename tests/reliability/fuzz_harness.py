"""What every fuzzed reply must satisfy, the tally of cases tried, and the servers and raw clients the
fuzz tests drive.

The invariant: a reply is a 200 answer (JSON, or server-sent events that each parse and end with
[DONE]) or a 4xx whose body is `{"error": {"message", "type", "code"}}`; never a 5xx, never a hang.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from tests.reliability.report import REPORT_ENV
from tests.worker.server_harness import running_server

# Examples per fuzz test are sized for CI (about a minute per file); raise this for a deeper run.
FUZZ_SCALE = float(os.environ.get("TOKENFLEET_FUZZ_SCALE", "1"))
MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 1.0
REPLY_TIMEOUT_S = 20.0  # a reply slower than this counts as a hang


def examples(count: int) -> int:
    return max(1, round(count * FUZZ_SCALE))


# Shared by both fuzz files: no example database (CI starts clean anyway), no per-example deadline
# (a loaded CI machine is slow), and big bodies are the point, not a health problem.
FUZZ_SETTINGS = settings(
    max_examples=examples(80),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def error_problem(body: bytes) -> str | None:
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"error reply without an OpenAI error body: {body[:200]!r}"
    if not isinstance(error, dict):
        return f"'error' is not an object: {error!r}"
    for key in ("message", "type", "code"):
        if not isinstance(error.get(key), str) or not error[key]:
            return f"error.{key} missing or empty: {error!r}"
    return None


def stream_problem(body: bytes) -> str | None:
    events = [e for e in body.decode("utf-8").split("\n\n") if e.strip()]
    if not events or events[-1].strip() != "data: [DONE]":
        return f"stream does not end with [DONE]: {body[-200:]!r}"
    for event in events[:-1]:
        if not event.startswith("data: "):
            return f"not an SSE data event: {event[:200]!r}"
        payload = json.loads(event.removeprefix("data: "))
        if "error" in payload:
            return f"error event in a stream: {payload!r}"
    return None


def reply_problem(status: int, content_type: str, body: bytes) -> str | None:
    """Why a reply breaks the invariant, or None when it holds."""
    if status >= 500:
        return f"status {status}: {body[:300]!r}"
    if status >= 400:
        return error_problem(body)
    if status != 200:
        return f"unexpected status {status}"
    try:
        if content_type.startswith("text/event-stream"):
            return stream_problem(body)
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        return f"200 with an unreadable body ({e}): {body[:200]!r}"
    return None if isinstance(answer, dict) and "choices" in answer else f"200 without choices: {answer!r}"


@dataclass
class FuzzTally:
    """Cases tried against one server, by status, and the failures found."""

    target: str
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def cases(self) -> int:
        return sum(self.statuses.values())

    def check(self, label: str, response: httpx.Response) -> str | None:
        content_type = response.headers.get("content-type", "")
        return self.check_reply(label, response.status_code, content_type, response.content)

    def check_reply(self, label: str, status: int, content_type: str, body: bytes) -> str | None:
        self.statuses[status] += 1
        problem = reply_problem(status, content_type, body)
        if problem is not None:
            self.failures.append(f"{label}: {problem}")
        return problem

    def record(self) -> dict[str, Any]:
        return {
            "scenario": f"fuzz-{self.target}",
            "cases": self.cases,
            "failures": len(self.failures),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "seconds": round(time.monotonic() - self.started, 2),
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }

    def report(self) -> dict[str, Any]:
        """Print the figures; with $TOKENFLEET_RELIABILITY_REPORT set, append this target's line and a
        "fuzz" line totalling every target reported so far in this session (readers keep the last
        line of a scenario, so the session's last "fuzz" line carries all of it)."""
        record = self.record()
        print(f"\nfuzz {self.target}: {record['cases']} cases, {record['failures']} failures, {record}")
        _SESSION_CASES[self.target] = (record["cases"], record["failures"])
        total = {
            "scenario": "fuzz",
            "cases": sum(c for c, _ in _SESSION_CASES.values()),
            "failures": sum(f for _, f in _SESSION_CASES.values()),
            "targets": {t: c for t, (c, _) in sorted(_SESSION_CASES.items())},
            "time": record["time"],
        }
        target = os.environ.get(REPORT_ENV)
        if target:
            out = Path(target)
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n" + json.dumps(total, sort_keys=True) + "\n")
        return record


_SESSION_CASES: dict[str, tuple[int, int]] = {}  # target -> (cases, failures), this pytest session


def post(client: httpx.Client, path: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(path, content=body, headers={"content-type": "application/json", **headers})


@dataclass
class InProcessWorker:
    """A worker app under uvicorn in a thread, so the test chooses its body limits."""

    url: str
    app: FastAPI


@contextmanager
def running_worker(model_dir: Path, tmp_path: Path, **settings: Any) -> Iterator[InProcessWorker]:
    with running_server(
        model_dir,
        tmp_path,
        served_model_name=["fuzz-model"],
        max_body_bytes=MAX_BODY_BYTES,
        body_timeout_s=BODY_TIMEOUT_S,
        start_timeout_s=60.0,
        profile={"base_s": 0.0002, "per_token_s": 0.0, "per_context_token_s": 0.0},
        **settings,
    ) as server:
        yield InProcessWorker(server.base_url, server.app)


def open_partial_request(
    url: str, path: str, *, body_sent: bytes, body_length: int, headers: dict[str, str] | None = None
) -> socket.socket:
    """A connection that announces `body_length` bytes of body and sends only `body_sent` (slowloris)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {body_length}\r\n\r\n"
    )
    sock.sendall(head.encode() + body_sent)
    return sock


def open_partial_headers(url: str) -> socket.socket:
    """A connection that never finishes its request headers."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    return sock


def read_reply(sock: socket.socket, timeout_s: float) -> tuple[int, bytes]:
    """Status and body of the raw HTTP reply on `sock` (the body by its Content-Length)."""
    sock.settimeout(timeout_s)
    data = b""
    with sock:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a reply: {data!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"
        )
        while len(body) < length and (chunk := sock.recv(65536)):
            body += chunk
    return int(lines[0].split(" ", 2)[1]), body
