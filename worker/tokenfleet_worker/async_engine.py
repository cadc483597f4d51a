"""Runs the engine's step loop in its own thread so the HTTP event loop never waits on a step.

The event loop hands requests and aborts to the thread through a locked command list; the thread
runs steps and passes each request's outputs back to its asyncio queue with call_soon_threadsafe.
After every iteration it publishes an immutable EngineStats snapshot that /load and /metrics read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tokenfleet_worker.batch import SamplingParams
from tokenfleet_worker.engine import Engine, RequestError
from tokenfleet_worker.outputs import EngineStats, RequestOutput

log = logging.getLogger("tokenfleet_worker.engine")


class EngineDraining(Exception):
    """The worker is shutting down and takes no new requests (HTTP 503)."""


class EngineOverloaded(Exception):
    """The waiting queue is at its bound (HTTP 429)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class SubRequest:
    """One sequence to generate: a prompt, its sampling, and which choice it fills."""

    prompt_token_ids: list[int]
    sampling: SamplingParams
    index: int = 0


@dataclass
class RequestStream:
    request_id: str
    num_open: int  # sequences that have not finished yet
    queue: asyncio.Queue[RequestOutput] = field(default_factory=asyncio.Queue)

    @property
    def is_finished(self) -> bool:
        return self.num_open == 0

    async def outputs(self) -> AsyncIterator[RequestOutput]:
        while self.num_open > 0:
            output = await self.queue.get()
            if output.finished:
                self.num_open -= 1
            yield output


@dataclass(frozen=True)
class _Add:
    request_id: str
    subrequests: tuple[SubRequest, ...]
    arrival_time: float
    deadline: float | None


class AsyncEngine:
    def __init__(self, engine: Engine, *, idle_wait_s: float = 0.05) -> None:
        self.engine = engine
        self.config = engine.config
        self.tokenizer = engine.tokenizer
        self._idle_wait_s = idle_wait_s
        self._lock = threading.Lock()
        self._commands: list[_Add | str] = []  # a str is a request id to abort
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: dict[str, RequestStream] = {}
        # Sequences (and their prompt tokens) handed over since the last step's stats were taken: a
        # step can take most of a second (a long prefill), and what arrived meanwhile is queued too.
        self._num_pending = 0
        self._pending_prompt_tokens = 0
        self._applied = (0, 0)  # handed to the engine, in no published stats yet
        self._published_in_step = False
        self.stats: EngineStats = engine.stats()  # as of the last step's scheduling or end
        engine.on_scheduled = self._on_scheduled
        self.is_draining = False
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the step thread; call from the event loop that will consume the outputs."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="engine-step-loop", daemon=True)
        self._thread.start()

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def current_stats(self) -> EngineStats:
        """The last step's stats with the sequences handed over since then counted as waiting: what the
        queue gauges, the admission bound and the router's load report read."""
        with self._lock:
            stats, pending, tokens = self.stats, self._num_pending, self._pending_prompt_tokens
        return dataclasses.replace(
            stats,
            num_waiting=stats.num_waiting + pending,
            prefill_tokens_waiting=stats.prefill_tokens_waiting + tokens,
        )

    @property
    def num_in_flight(self) -> int:
        return len(self._streams)

    async def drain(self, timeout_s: float) -> int:
        """Refuse new requests and let in-flight ones finish; abort what is left after the timeout.

        Returns how many requests had to be aborted.
        """
        self.is_draining = True
        deadline = time.monotonic() + timeout_s
        while self._streams and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        leftover = list(self._streams)
        for request_id in leftover:
            self.abort(request_id)
        return len(leftover)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- requests (event loop side) --------------------------------------------------------------

    def submit(
        self, request_id: str, subrequests: list[SubRequest], *, timeout_s: float | None = None
    ) -> RequestStream:
        if self.is_draining:
            raise EngineDraining("the worker is draining and accepts no new requests")
        if not self.is_running:
            raise EngineDraining("the engine is not running")
        if request_id in self._streams:
            raise RequestError(f"request id {request_id!r} is already in flight")
        waiting = self.current_stats().num_waiting
        if waiting + len(subrequests) > self.config.max_waiting:
            raise EngineOverloaded(
                f"the worker's queue is full ({waiting} waiting, bound {self.config.max_waiting})",
                retry_after_s=1,
            )
        now = time.monotonic()
        stream = RequestStream(request_id, num_open=len(subrequests))
        self._streams[request_id] = stream
        deadline = None if timeout_s is None else now + timeout_s
        with self._lock:
            self._commands.append(_Add(request_id, tuple(subrequests), now, deadline))
            self._num_pending += len(subrequests)
            self._pending_prompt_tokens += sum(len(sub.prompt_token_ids) for sub in subrequests)
        self._wake.set()
        return stream

    def abort(self, request_id: str) -> None:
        with self._lock:
            self._commands.append(request_id)
        self._wake.set()

    def release(self, stream: RequestStream) -> None:
        """The HTTP side is done with the stream: abort what is unfinished (client went away)."""
        if self._streams.get(stream.request_id) is stream:
            del self._streams[stream.request_id]
            if not stream.is_finished:
                self.abort(stream.request_id)

    # -- step loop (engine thread) ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            outputs, self._applied = self._apply_commands()
            self._published_in_step = False
            if self.engine.has_unfinished():
                try:
                    outputs.extend(self.engine.step())
                except Exception as err:  # a failed step must not strand the requests waiting on it
                    log.exception("event=engine_step_failed")
                    self.last_error = f"{type(err).__name__}: {err}"
                    outputs.extend(self._fail_all(self.last_error))
            # One stats pass a step: the one taken when its batch was chosen stands while the next
            # step will take another; the state a finished or idle engine rests in is taken here.
            if not (self._published_in_step and self.engine.has_unfinished()):
                self._publish_stats()
            self._dispatch(outputs)
            # Idle, or nothing schedulable this instant: wait for a command instead of spinning.
            if not self.engine.has_unfinished() or self.engine.last_batch_size == 0:
                self._wake.wait(self._idle_wait_s)
                self._wake.clear()

    def _on_scheduled(self) -> None:
        self._publish_stats()
        self._published_in_step = True

    def _publish_stats(self) -> None:
        """Engine thread: new stats, which hold the sequences applied so far (no longer pending)."""
        stats = self.engine.stats()
        num_seqs, num_tokens = self._applied
        self._applied = (0, 0)
        with self._lock:
            self.stats = stats
            self._num_pending -= num_seqs
            self._pending_prompt_tokens -= num_tokens

    def _apply_commands(self) -> tuple[list[RequestOutput], tuple[int, int]]:
        """Hands the queued commands to the engine; returns their outputs (errors, aborts) and the
        sequences and prompt tokens added."""
        with self._lock:
            commands, self._commands = self._commands, []
        outputs: list[RequestOutput] = []
        num_seqs = num_tokens = 0
        for command in commands:
            if isinstance(command, str):
                outputs.extend(self.engine.abort(command))
                continue
            for sub in command.subrequests:
                try:
                    self.engine.add_request(
                        command.request_id,
                        sub.prompt_token_ids,
                        sub.sampling,
                        index=sub.index,
                        arrival_time=command.arrival_time,
                        deadline=command.deadline,
                    )
                except RequestError as err:
                    outputs.append(_error_output(command.request_id, sub, str(err)))
                num_seqs += 1
                num_tokens += len(sub.prompt_token_ids)
        return outputs, (num_seqs, num_tokens)

    def _fail_all(self, message: str) -> list[RequestOutput]:
        return [dataclasses.replace(output, error=message) for output in self.engine.abort_all()]

    def _dispatch(self, outputs: list[RequestOutput]) -> None:
        if not outputs or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._deliver, outputs)

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        for output in outputs:
            stream = self._streams.get(output.request_id)
            if stream is not None:
                stream.queue.put_nowait(output)


def _error_output(request_id: str, sub: SubRequest, message: str) -> RequestOutput:
    return RequestOutput(
        request_id=request_id,
        index=sub.index,
        text="",
        token_ids=(),
        num_prompt_tokens=len(sub.prompt_token_ids),
        num_output_tokens=0,
        finished=True,
        finish_reason="abort",
        error=message,
        is_client_error=True,
    )
