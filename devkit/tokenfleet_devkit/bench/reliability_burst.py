"""Open-loop load against an OpenAI endpoint, with every answer sorted into what it means.

Requests leave on a fixed schedule (`rate_rps`), whatever the server does, so an overloaded
server cannot slow the client down and hide its own queueing. Each answer is one of:
- completed: 200 with a whole answer (non-streaming: a finish reason; streaming: `[DONE]` and no
  error event);
- rejected: 429 (counted apart when it lacks Retry-After) or 503, refused before any work;
- unreached: the connection could not be made, so the request never left the client (reported, not
  judged: on a starved machine the client's own stalled event loop times its connects out too);
- failed: anything else (an accepted request that was lost, cut short or timed out).
`accepted = completed + failed`. A cap on open requests keeps the client itself bounded; a request
that would pass it is not sent and counted as such.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

# Generous: on a loaded machine a client's own event loop can stall for seconds, and a short
# connect timeout would then blame the server for a connection the kernel had long accepted.
CONNECT_TIMEOUT_S = 60.0
LAG_PROBE_S = 0.1


@dataclass
class BurstCounts:
    sent: int = 0
    completed: int = 0
    failed: int = 0
    rejected_429: int = 0
    rejected_429_without_retry_after: int = 0
    rejected_503: int = 0
    unreached: int = 0  # connect failed or timed out: never sent, so neither accepted nor refused
    not_sent: int = 0  # the client's own cap on open requests was reached
    send_window_s: float = 0.0  # first send to last: longer than planned when the client falls behind
    max_loop_lag_s: float = 0.0  # the client's own event-loop stalls: large ones mean a starved machine
    failures: Counter[str] = field(default_factory=Counter)
    completed_latency_s: list[float] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.completed + self.failed

    @property
    def rejected(self) -> int:
        return self.rejected_429 + self.rejected_503

    def as_dict(self) -> dict[str, Any]:
        latencies = sorted(self.completed_latency_s)
        p50 = latencies[len(latencies) // 2] if latencies else None
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "completed": self.completed,
            "failed": self.failed,
            "rejected_429": self.rejected_429,
            "rejected_429_without_retry_after": self.rejected_429_without_retry_after,
            "rejected_503": self.rejected_503,
            "unreached": self.unreached,
            "not_sent": self.not_sent,
            "sent_per_second": self.sent / self.send_window_s if self.send_window_s > 0 else None,
            "client_max_loop_lag_s": round(self.max_loop_lag_s, 3),
            "failures": dict(self.failures),
            "completed_latency_p50_s": p50,
            "completed_latency_p99_s": p99,
        }


@dataclass(frozen=True)
class RequestShape:
    model: str
    max_tokens: int = 32
    stream_every: int = 2  # every n-th request streams (0: none)


def _body(shape: RequestShape, i: int, is_stream: bool) -> dict[str, Any]:
    return {
        "model": shape.model,
        "prompt": f"overload request {i}: tell me about queues",
        "max_tokens": shape.max_tokens,
        "stream": is_stream,
    }


def _is_whole_answer(data: Any) -> bool:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    return choices[0].get("finish_reason") is not None


COMPLETED, REFUSED, UNREACHED = "completed", "refused", "unreached"  # or a failure's reason


def _refusal(counts: BurstCounts, response: httpx.Response) -> str | None:
    """Count a clean refusal (REFUSED), or None when the status is not one."""
    if response.status_code == 429:
        counts.rejected_429 += 1
        if not response.headers.get("retry-after"):
            counts.rejected_429_without_retry_after += 1
        return REFUSED
    if response.status_code == 503:
        counts.rejected_503 += 1
        return REFUSED
    return None


async def _plain(client: httpx.AsyncClient, url: str, body: dict[str, Any], counts: BurstCounts) -> str:
    response = await client.post(url, json=body)
    if response.status_code != 200:
        return _refusal(counts, response) or f"status {response.status_code}"
    return COMPLETED if _is_whole_answer(response.json()) else "incomplete answer"


async def _streamed(client: httpx.AsyncClient, url: str, body: dict[str, Any], counts: BurstCounts) -> str:
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return _refusal(counts, response) or f"status {response.status_code}"
        is_done = has_error = False
        async for line in response.aiter_lines():
            payload = line[5:].strip() if line.startswith("data:") else ""
            if payload == "[DONE]":
                is_done = True
            elif payload.startswith("{") and "error" in json.loads(payload):
                has_error = True
    if has_error:
        return "stream error event"
    return COMPLETED if is_done else "stream without [DONE]"


async def _one(
    client: httpx.AsyncClient, base_url: str, shape: RequestShape, i: int, counts: BurstCounts
) -> None:
    is_stream = shape.stream_every > 0 and i % shape.stream_every == 0
    started = time.monotonic()
    counts.sent += 1
    try:
        send = _streamed if is_stream else _plain
        outcome = await send(client, base_url + "/v1/completions", _body(shape, i, is_stream), counts)
    except (httpx.ConnectError, httpx.ConnectTimeout):
        outcome = UNREACHED
    except (httpx.HTTPError, ValueError) as e:
        outcome = type(e).__name__
    if outcome == UNREACHED:
        counts.unreached += 1
    elif outcome == COMPLETED:
        counts.completed += 1
        counts.completed_latency_s.append(time.monotonic() - started)
    elif outcome != REFUSED:
        counts.failed += 1
        counts.failures[outcome] += 1


async def run_burst(
    base_url: str,
    shape: RequestShape,
    rate_rps: float,
    duration_s: float,
    max_open: int = 2000,
    timeout_s: float = 120.0,
) -> BurstCounts:
    """Send `rate_rps` requests a second for `duration_s`, then wait (bounded) for every answer."""
    counts = BurstCounts()
    total = max(1, round(rate_rps * duration_s))
    # A fresh connection per request: a kept-alive one can meet the server closing it as idle, a
    # client-side race that would be miscounted as a request the server lost.
    limits = httpx.Limits(max_connections=max_open, max_keepalive_connections=0)
    open_requests: set[asyncio.Task[None]] = set()
    timeout = httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S)
    probe = asyncio.ensure_future(_probe_loop_lag(counts))
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        started = time.monotonic()
        for i in range(total):
            delay = started + i / rate_rps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(open_requests) >= max_open:
                counts.not_sent += 1
                continue
            task = asyncio.ensure_future(_one(client, base_url, shape, i, counts))
            open_requests.add(task)
            task.add_done_callback(open_requests.discard)
        counts.send_window_s = time.monotonic() - started
        if open_requests:
            await asyncio.wait(set(open_requests), timeout=timeout_s + 10)
        for task in list(open_requests):  # bounded: anything still open is a failure, not a hang
            task.cancel()
            counts.failed += 1
            counts.failures["client gave up"] += 1
    probe.cancel()
    return counts


async def _probe_loop_lag(counts: BurstCounts) -> None:
    while True:
        before = time.monotonic()
        await asyncio.sleep(LAG_PROBE_S)
        counts.max_loop_lag_s = max(counts.max_loop_lag_s, time.monotonic() - before - LAG_PROBE_S)


async def measure_capacity(base_url: str, shape: RequestShape, concurrency: int, duration_s: float) -> float:
    """Completed requests per second with `concurrency` closed-loop clients: the fleet's capacity."""
    counts = BurstCounts()
    deadline = time.monotonic() + duration_s
    plain = RequestShape(shape.model, shape.max_tokens, stream_every=0)

    async def client_loop(client: httpx.AsyncClient, k: int) -> None:
        i = k
        while time.monotonic() < deadline:
            await _one(client, base_url, plain, i, counts)
            i += concurrency

    async with httpx.AsyncClient(timeout=60.0) as client:
        started = time.monotonic()
        await asyncio.gather(*(client_loop(client, k) for k in range(concurrency)))
        elapsed = time.monotonic() - started
    if counts.failed:
        raise RuntimeError(f"capacity probe: {counts.failed} request(s) failed: {dict(counts.failures)}")
    return counts.completed / elapsed
