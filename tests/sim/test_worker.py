import pytest

from tokenfleet_devkit.sim.events import EventLoop
from tokenfleet_devkit.sim.perf_model import LinearModel
from tokenfleet_devkit.sim.request import REJECT_TOO_LARGE, SimRequest
from tokenfleet_devkit.sim.worker import EngineConfig, SimWorker, WorkerEvents

pytestmark = pytest.mark.unit

# 10 ms a step plus 1 ms per batched token; no context cost, so times are easy to check by hand.
PERF = LinearModel("test", 0.010, 0.001, 0.0, kv_capacity_tokens=10_000)


class Recorder(WorkerEvents):
    def __init__(self) -> None:
        self.done: list[SimRequest] = []

    def on_done(self, request: SimRequest, now: float) -> None:
        self.done.append(request)


def make_worker(engine: EngineConfig | None = None) -> tuple[SimWorker, EventLoop, Recorder]:
    loop = EventLoop()
    events = Recorder()
    worker = SimWorker("w", "v", PERF, engine or EngineConfig(max_batched_tokens=100), loop, events, 0.0)
    return worker, loop, events


def test_one_request_prefills_in_chunks_then_decodes_one_token_per_step() -> None:
    worker, loop, events = make_worker()
    request = SimRequest(1, 0.0, prompt_tokens=250, output_tokens=5)
    worker.submit(request, 0.0)
    loop.run()
    # Prefill: chunks of 100, 100, 50 tokens; the last step yields the first token.
    ttft = (0.010 + 0.100) * 2 + (0.010 + 0.050)
    assert request.first_token_time == pytest.approx(ttft)
    # Four more tokens, one 11 ms decode step each.
    assert request.finish_time == pytest.approx(ttft + 4 * 0.011)
    assert request.tpot == pytest.approx(0.011)
    assert events.done == [request]
    assert worker.is_empty and worker.kv_reserved == 0 and worker.kv_used == 0


def test_a_request_larger_than_the_kv_cache_is_rejected_with_a_reason() -> None:
    worker, loop, events = make_worker()
    request = SimRequest(1, 0.0, prompt_tokens=9_990, output_tokens=20)
    worker.submit(request, 0.0)
    loop.run()
    assert request.reject_reason == REJECT_TOO_LARGE
    assert events.done == [request] and worker.num_in_flight == 0


def test_kv_capacity_makes_later_requests_wait_until_memory_frees() -> None:
    worker, loop, _ = make_worker(EngineConfig(max_batched_tokens=10_000))
    first = SimRequest(1, 0.0, prompt_tokens=6_000, output_tokens=100)
    second = SimRequest(2, 0.0, prompt_tokens=6_000, output_tokens=100)
    worker.submit(first, 0.0)
    worker.submit(second, 0.0)
    assert len(worker.waiting) == 1  # the second does not fit beside the first
    loop.run()
    assert first.finish_time is not None and second.first_token_time is not None
    assert second.first_token_time > first.finish_time


def test_prefix_cache_hits_skip_prefill() -> None:
    worker, loop, _ = make_worker(EngineConfig(max_batched_tokens=10_000, prefix_block_tokens=512))
    first = SimRequest(1, 0.0, prompt_tokens=2048, output_tokens=2, hash_ids=(1, 2, 3, 4))
    worker.submit(first, 0.0)
    loop.run()
    second = SimRequest(2, loop.now, prompt_tokens=2100, output_tokens=2, hash_ids=(1, 2, 3, 4, 5))
    worker.submit(second, loop.now)
    loop.run()
    assert first.ttft == pytest.approx(0.010 + 2.048)
    assert second.ttft == pytest.approx(0.010 + 0.001 * (2100 - 2048))
    # The prompt counter counts as the real worker's does: whole prompts, hits included, at first token.
    assert worker.prompt_tokens_done == 2048 + 2100


def test_prompt_tokens_count_when_the_first_token_comes_not_chunk_by_chunk() -> None:
    # The real worker's tokenfleet_prompt_tokens_total moves by a whole prompt at its first token, so
    # an operator scraping mid-prefill sees none of it yet; the simulated snapshots must see the same.
    worker, loop, _ = make_worker(EngineConfig(max_batched_tokens=512))
    request = SimRequest(1, 0.0, prompt_tokens=2048, output_tokens=4)
    worker.submit(request, 0.0)
    loop.run_until(1.1)  # two 512-token chunks done (0.522 s each), the prompt not finished
    assert request.first_token_time is None
    assert worker.prompt_tokens_done == 0
    assert worker.prefill_tokens_waiting == 2048 - 2 * 512
    loop.run()
    assert worker.prompt_tokens_done == 2048
    assert worker.prefill_tokens_waiting == 0


def test_an_arrival_joins_the_batch_after_the_step_in_progress() -> None:
    worker, loop, _ = make_worker()
    long = SimRequest(1, 0.0, prompt_tokens=10, output_tokens=1000)
    worker.submit(long, 0.0)
    loop.run_until(1.0)  # deep inside one long decode span
    late = SimRequest(2, 1.0, prompt_tokens=10, output_tokens=2)
    worker.submit(late, 1.0)
    loop.run()
    assert late.ttft is not None and late.ttft < 0.011 + 0.021 + 1e-9  # rest of a step, then its prefill
    # The long request kept decoding one token per step throughout.
    assert long.finish_time is not None and long.tpot is not None
    assert long.tpot == pytest.approx(0.011, rel=0.05)


def test_max_num_seqs_bounds_the_batch() -> None:
    worker, loop, _ = make_worker(EngineConfig(max_num_seqs=2, max_batched_tokens=1000))
    requests = [SimRequest(i, 0.0, prompt_tokens=5, output_tokens=50) for i in range(3)]
    for r in requests:
        worker.submit(r, 0.0)
    loop.run_until(0.016)  # after the first step, whose batch held only the first arrival
    assert worker.num_running == 2 and len(worker.waiting) == 1
    loop.run()
    assert all(r.finish_time is not None for r in requests)
    assert requests[2].first_token_time is not None and requests[0].finish_time is not None
    assert requests[2].first_token_time >= requests[0].finish_time


def test_decode_step_target_keeps_decodes_fast_beside_a_long_prompt() -> None:
    """The simulated worker runs the real engine's step budget: learned from its own steps, it cuts
    the chunks that share steps with decodes, so the decoding request's TPOT holds."""

    def run(target: float | None) -> tuple[SimRequest, SimRequest, SimWorker]:
        worker, loop, _ = make_worker(EngineConfig(max_batched_tokens=1000, decode_step_target_s=target))
        # Warm-up traffic of mixed sizes so the worker has steps to learn from.
        for i, prompt in enumerate((50, 400, 900, 120, 700, 30, 300, 600)):
            worker.submit(SimRequest(100 + i, loop.now, prompt_tokens=prompt, output_tokens=3), loop.now)
            loop.run()
        decoding = SimRequest(1, loop.now, prompt_tokens=10, output_tokens=40)
        worker.submit(decoding, loop.now)
        loop.run_until(loop.now + 0.1)
        long = SimRequest(2, loop.now, prompt_tokens=5000, output_tokens=2)
        worker.submit(long, loop.now)
        loop.run()
        return decoding, long, worker

    plain_decoding, plain_long, _ = run(None)
    decoding, long, worker = run(0.05)  # 40 tokens fit 50 ms at 10 ms + 1 ms a token
    assert worker.step_times.fit() == pytest.approx((0.010, 0.001))
    assert plain_decoding.tpot is not None and plain_decoding.tpot > 0.1  # 1000-token chunks: ~1 s steps
    assert decoding.tpot is not None and decoding.tpot < 0.05
    # The price: the long prompt's first token comes later, in 39-token chunks while the other decodes.
    assert long.ttft is not None and plain_long.ttft is not None and long.ttft > plain_long.ttft


@pytest.mark.parametrize(("policy", "short_first"), [("fcfs", False), ("shortest-prompt-first", True)])
def test_scheduling_policy_orders_the_waiting_queue(policy: str, short_first: bool) -> None:
    # One batch slot: the first request runs, a long and then a short one queue behind it.
    worker, loop, events = make_worker(EngineConfig(max_num_seqs=1, scheduling_policy=policy))
    running = SimRequest(1, 0.0, prompt_tokens=50, output_tokens=3)
    long = SimRequest(2, 0.0, prompt_tokens=900, output_tokens=3)
    short = SimRequest(3, 0.01, prompt_tokens=20, output_tokens=3)
    for request in (running, long, short):
        worker.submit(request, request.arrival)
    loop.run()
    assert events.done[0] is running
    assert (events.done[1] is short) is short_first
    assert short.ttft is not None and long.ttft is not None
    assert (short.ttft < long.ttft) is short_first


def test_unknown_scheduling_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="scheduling policy"):
        EngineConfig(scheduling_policy="random")


def test_a_full_prefix_cache_evicts_a_chain_tail_before_its_head() -> None:
    # Two 512-token blocks of cache; as in the engine, a chain's head outlives its tail.
    perf = LinearModel("tiny", 0.010, 0.001, 0.0, kv_capacity_tokens=1024)
    loop = EventLoop()
    worker = SimWorker("w", "v", perf, EngineConfig(max_batched_tokens=10_000), loop, Recorder(), 0.0)
    worker.submit(SimRequest(1, 0.0, prompt_tokens=600, output_tokens=1, hash_ids=(1, 2)), 0.0)
    loop.run()
    other = SimRequest(2, loop.now, prompt_tokens=300, output_tokens=1, hash_ids=(7,))
    worker.submit(other, loop.now)
    loop.run()
    again = SimRequest(3, loop.now, prompt_tokens=600, output_tokens=1, hash_ids=(1, 2))
    worker.submit(again, loop.now)
    loop.run()
    # Block 1 was still cached: only 600 - 512 tokens are prefilled again (all 600 had it gone).
    assert again.ttft == pytest.approx(0.010 + 0.001 * 88)
