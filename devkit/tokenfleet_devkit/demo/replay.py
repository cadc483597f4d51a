"""Send the planned requests through the fleets' routers with the `openai` SDK, on the planned clock.

Each request streams, so time to first token is measured where a user would see it. Prompts are token
ids cut from the tiny model's own tokenizer output (exact lengths, no tokenizer drift). The SDK's
transport is httpx2 (openai>=3), so the counting hook sits on an httpx2 client. The SDK retries
as a real client does (it honours Retry-After on 429); every HTTP error answer is counted, and a
request only counts as served when its stream ended with a finish reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import openai

from tokenfleet_devkit.demo.accounting import RequestResult
from tokenfleet_devkit.demo.workload import PlannedRequest

REQUEST_TIMEOUT_S = 120.0
MAX_RETRIES = 4
_CODE_TEXT = "".join(
    f"def step_{i}(state, x):\n    total = state.get('total', 0) + x * {i}\n"
    f"    return {{'total': total, 'count': state.get('count', 0) + 1}}\n\n"
    for i in range(120)
)


class PromptIds:
    """A pool of token ids to cut prompts of exact lengths from; different requests, different cuts."""

    def __init__(self, pool: list[int]) -> None:
        if not pool:
            raise ValueError("the prompt pool is empty")
        self.pool = pool

    @classmethod
    def from_model(cls, model_dir: Path) -> PromptIds:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        return cls(tokenizer.encode(_CODE_TEXT, add_special_tokens=False).ids)

    def ids(self, index: int, length: int) -> list[int]:
        start = (index * 97) % len(self.pool)
        repeated = self.pool[start:] + self.pool * (1 + length // len(self.pool))
        return repeated[:length]


@dataclass
class Counters:
    """Live client-side counts, read by the terminal view."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    in_flight: int = 0
    http_errors: Counter[int] = field(default_factory=Counter)  # status -> answers (retried ones too)
    per_fleet_ok: Counter[str] = field(default_factory=Counter)


class Replayer:
    def __init__(
        self,
        routers: Mapping[str, str],  # fleet -> router host:port
        models: Mapping[str, str],  # fleet -> served model name
        prompts: PromptIds,
        is_cold: Callable[[str], bool],
    ) -> None:
        self.models = models
        self.prompts = prompts
        self.is_cold = is_cold
        self.counters = Counters()
        self.results: list[RequestResult] = []
        self._http = httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=512, max_keepalive_connections=64),
            timeout=httpx2.Timeout(REQUEST_TIMEOUT_S, connect=5.0),
            event_hooks={"response": [self._count_response]},
        )
        self.clients = {
            fleet: openai.AsyncOpenAI(
                base_url=f"http://{address}/v1",
                api_key="demo",
                max_retries=MAX_RETRIES,
                timeout=REQUEST_TIMEOUT_S,
                http_client=self._http,
            )
            for fleet, address in routers.items()
        }

    async def _count_response(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self.counters.http_errors[response.status_code] += 1

    async def close(self) -> None:
        await self._http.aclose()

    async def close_after(self, task: asyncio.Task[None]) -> None:
        """Cancel the replay `task` if it is still sending (the caller stopped early), then close."""
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.close()

    async def _send(self, req: PlannedRequest, start: float) -> tuple[float | None, int, bool]:
        began = time.monotonic()
        ttft: float | None = None
        chunks = 0
        usage_tokens: int | None = None
        is_finished = False
        stream = await self.clients[req.fleet].completions.create(
            model=self.models[req.fleet],
            prompt=self.prompts.ids(req.index, req.prompt_tokens),
            max_tokens=req.max_tokens,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        async for chunk in stream:
            if chunk.usage is not None:
                usage_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if ttft is None:
                    ttft = time.monotonic() - began
                chunks += 1
                is_finished |= choice.finish_reason is not None
        return ttft, usage_tokens if usage_tokens is not None else chunks, is_finished

    async def one(self, req: PlannedRequest, start: float) -> None:
        await asyncio.sleep(max(0.0, start + req.at_s - time.monotonic()))
        is_cold = self.is_cold(req.fleet)
        sent_s = time.monotonic() - start
        self.counters.sent += 1
        self.counters.in_flight += 1
        error: str | None = None
        ttft: float | None = None
        tokens = 0
        try:
            ttft, tokens, is_finished = await self._send(req, start)
            if not is_finished:
                error = "StreamEndedEarly"
        except (openai.OpenAIError, httpx2.HTTPError) as err:
            error = type(err).__name__
        except asyncio.CancelledError:
            error = "NotAnsweredBeforeDeadline"
        finally:
            self.counters.in_flight -= 1
        latency = time.monotonic() - start - sent_s
        if error is None:
            self.counters.ok += 1
            self.counters.per_fleet_ok[req.fleet] += 1
        else:
            self.counters.failed += 1
        self.results.append(
            RequestResult(
                index=req.index,
                fleet=req.fleet,
                phase=req.phase,
                sent_s=sent_s,
                is_ok=error is None,
                error=error,
                ttft_s=ttft,
                latency_s=latency,
                output_tokens=tokens,
                is_cold=is_cold,
            )
        )

    async def run(self, requests: tuple[PlannedRequest, ...], start: float, deadline_s: float) -> None:
        """Send everything on schedule; whatever is unanswered `deadline_s` after `start` fails."""
        tasks = [asyncio.create_task(self.one(req, start)) for req in requests]
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, start + deadline_s - time.monotonic()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10.0)
