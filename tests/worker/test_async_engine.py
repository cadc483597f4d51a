"""The step thread: outputs reach asyncio queues, a failing runner fails requests instead of hanging
them, and the queue bound and draining are enforced at submission."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tokenfleet_worker.async_engine import (
    AsyncEngine,
    EngineDraining,
    EngineOverloaded,
    RequestStream,
    SubRequest,
)
from tokenfleet_worker.batch import SampledToken, SamplingParams, StepBatch
from tokenfleet_worker.config import EngineConfig
from tokenfleet_worker.engine import Engine
from tokenfleet_worker.logs import format_event
from tokenfleet_worker.outputs import RequestOutput
from tokenfleet_worker.sim import SimProfile, SimRunner, printable_token_ids
from tokenfleet_worker.tokenizer import TokenizerBundle, load_tokenizer_bundle

from .model_dir_helpers import write_sim_model_dir


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> TokenizerBundle:
    return load_tokenizer_bundle(write_sim_model_dir(tmp_path_factory.mktemp("async")))


class BrokenRunner:
    block_size = 16
    num_blocks = 64

    def execute(self, batch: StepBatch) -> list[SampledToken]:
        raise RuntimeError("device lost")


def sim_engine(bundle: TokenizerBundle, **config: int) -> Engine:
    profile = SimProfile(base_s=0.005, per_token_s=0.0, per_context_token_s=0.0)
    runner = SimRunner(
        num_blocks=64, block_size=16, vocab=printable_token_ids(bundle.tokenizer), profile=profile
    )
    return Engine(EngineConfig(**config), runner, bundle)  # type: ignore[arg-type]


async def test_outputs_stream_back_to_the_event_loop(bundle: TokenizerBundle) -> None:
    engine = AsyncEngine(sim_engine(bundle))
    engine.start()
    try:
        subs = [SubRequest([1, 2, 3], SamplingParams(max_tokens=5), index=i) for i in range(2)]
        stream = engine.submit("r", subs)
        outputs = [o async for o in stream.outputs()]
        assert sorted(o.index for o in outputs if o.finished) == [0, 1]
        assert sum(len(o.token_ids) for o in outputs) == 10
        engine.release(stream)
        assert engine.num_in_flight == 0
    finally:
        engine.stop()


async def test_a_failing_runner_fails_requests_instead_of_hanging(bundle: TokenizerBundle) -> None:
    engine = AsyncEngine(Engine(EngineConfig(), BrokenRunner(), bundle))
    engine.start()
    try:
        stream = engine.submit("r", [SubRequest([1, 2], SamplingParams(max_tokens=3))])
        outputs = await asyncio.wait_for(_collect(stream), timeout=5)
        assert outputs[-1].finished
        assert outputs[-1].error is not None and "device lost" in outputs[-1].error
        assert not outputs[-1].is_client_error
        assert engine.last_error is not None
    finally:
        engine.stop()


async def test_queue_bound_and_draining(bundle: TokenizerBundle) -> None:
    engine = AsyncEngine(sim_engine(bundle, max_waiting=2))
    engine.start()
    try:
        with pytest.raises(EngineOverloaded):
            engine.submit("big", [SubRequest([1], SamplingParams()) for _ in range(3)])
        stream = engine.submit("ok", [SubRequest([1], SamplingParams(max_tokens=4))])
        drained = asyncio.ensure_future(engine.drain(5.0))
        await asyncio.sleep(0)
        with pytest.raises(EngineDraining):
            engine.submit("late", [SubRequest([1], SamplingParams())])
        outputs = await _collect(stream)
        engine.release(stream)
        assert outputs[-1].finish_reason == "length"
        assert await drained == 0
    finally:
        engine.stop()


class GatedRunner:
    """A sim runner whose first step waits for `gate`: a step that takes as long as the test likes."""

    def __init__(self, inner: SimRunner) -> None:
        self.inner = inner
        self.block_size, self.num_blocks = inner.block_size, inner.num_blocks
        self.gate = threading.Event()
        self.in_step = threading.Event()

    def execute(self, batch: StepBatch) -> list[SampledToken]:
        self.in_step.set()
        self.gate.wait(5)
        return self.inner.execute(batch)


async def test_requests_handed_over_during_a_step_count_as_waiting(bundle: TokenizerBundle) -> None:
    # The last step's stats miss what arrived during the step in progress; a long prefill step
    # would hide a burst from the queue gauge, the router's load report and the queue bound.
    profile = SimProfile(base_s=0.001, per_token_s=0.0, per_context_token_s=0.0)
    vocab = printable_token_ids(bundle.tokenizer)
    runner = GatedRunner(SimRunner(num_blocks=64, block_size=16, vocab=vocab, profile=profile))
    engine = AsyncEngine(Engine(EngineConfig(max_waiting=3), runner, bundle))  # type: ignore[arg-type]
    engine.start()
    try:
        first = engine.submit("first", [SubRequest([1, 2, 3], SamplingParams(max_tokens=2))])
        assert await asyncio.to_thread(runner.in_step.wait, 5)
        later = [
            engine.submit(f"r{i}", [SubRequest([1] * 40, SamplingParams(max_tokens=2))]) for i in range(2)
        ]
        stats = engine.current_stats()
        assert engine.stats.num_waiting == 0  # the stale view
        assert stats.num_waiting == 2
        assert stats.prefill_tokens_waiting >= 80
        assert stats.load_report(draining=False, ready=True).waiting == 2
        with pytest.raises(EngineOverloaded):  # 2 waiting + 2 more would pass the bound of 3
            engine.submit("over", [SubRequest([1], SamplingParams()) for _ in range(2)])
        runner.gate.set()
        for stream in (first, *later):
            assert (await asyncio.wait_for(_collect(stream), 5))[-1].finished
            engine.release(stream)
        assert engine.current_stats().num_waiting == 0
        assert engine.current_stats().prefill_tokens_waiting == 0
    finally:
        runner.gate.set()
        engine.stop()


async def _collect(stream: RequestStream) -> list[RequestOutput]:
    return [o async for o in stream.outputs()]


@pytest.mark.unit
def test_log_lines_are_key_value(tmp_path: Path) -> None:
    line = format_event("request_finished", request_id="cmpl-1", status=200, note='has "quotes" and space')
    assert line == 'event=request_finished request_id=cmpl-1 status=200 note="has \\"quotes\\" and space"'
