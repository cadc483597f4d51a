"""Scheduler: token budget, chunked prefill, admission by blocks, preemption, FCFS and deadlines."""

from __future__ import annotations

import pytest

from tokenfleet_worker.batch import SamplingParams
from tokenfleet_worker.config import EngineConfig
from tokenfleet_worker.kv_cache import BlockManager
from tokenfleet_worker.scheduler import Scheduler, SchedulerOutput
from tokenfleet_worker.sequence import SeqStatus, Sequence

pytestmark = pytest.mark.unit
BS = 4


def make(
    *, num_blocks: int = 64, max_num_seqs: int = 8, max_batched_tokens: int = 64, prefix: bool = True
) -> Scheduler:
    config = EngineConfig(
        max_num_seqs=max_num_seqs, max_batched_tokens=max_batched_tokens, block_size=BS, max_model_len=256
    )
    return Scheduler(config, BlockManager(num_blocks, BS, enable_prefix_caching=prefix))


def seq(seq_id: int, prompt_len: int, *, deadline: float | None = None, first_token: int = 0) -> Sequence:
    tokens = tuple(range(first_token, first_token + prompt_len))
    return Sequence(seq_id, f"r{seq_id}", tokens, SamplingParams(), arrival_time=0.0, deadline=deadline)


def run_step(s: Scheduler, now: float = 0.0, token: int = 7) -> SchedulerOutput:
    """Schedule, pretend the runner ran, and append a sampled token where one was due."""
    out = s.schedule(now)
    s.on_step_done(out)
    for sq, item in zip(out.scheduled, out.batch.seqs, strict=True):
        if item.needs_sample:
            sq.token_ids.append(token)
    return out


def chunk_sizes(out: SchedulerOutput) -> dict[int, int]:
    return {item.seq_id: len(item.token_ids) for item in out.batch.seqs}


def test_short_prompts_are_prefilled_together_then_decode() -> None:
    s = make()
    s.add(seq(0, 5))
    s.add(seq(1, 3))
    first = run_step(s)
    assert chunk_sizes(first) == {0: 5, 1: 3}
    assert all(item.needs_sample for item in first.batch.seqs)
    second = run_step(s)
    assert chunk_sizes(second) == {0: 1, 1: 1}
    assert second.batch.seqs[0].start_pos == 5


def test_long_prompt_is_chunked_and_decodes_keep_running() -> None:
    s = make(max_batched_tokens=8)
    s.add(seq(0, 3))
    run_step(s)  # seq 0 is now decoding
    s.add(seq(1, 20, first_token=100))
    sizes = [chunk_sizes(run_step(s)) for _ in range(4)]
    assert sizes == [{0: 1, 1: 7}, {0: 1, 1: 7}, {0: 1, 1: 6}, {0: 1, 1: 1}]
    # The chunk that completes the prompt samples; earlier chunks do not.
    out = s.schedule(0.0)
    assert all(item.needs_sample for item in out.batch.seqs)


def test_chunk_positions_are_contiguous() -> None:
    s = make(max_batched_tokens=6)
    s.add(seq(0, 14))
    starts = []
    for _ in range(3):
        out = run_step(s)
        item = out.batch.seqs[0]
        starts.append((item.start_pos, len(item.token_ids), item.needs_sample))
    assert starts == [(0, 6, False), (6, 6, False), (12, 2, True)]
    assert out.batch.seqs[0].block_table == tuple(s.running[0].block_table)


def test_budget_limits_tokens_per_step() -> None:
    s = make(max_batched_tokens=10)
    for i in range(4):
        s.add(seq(i, 4, first_token=10 * i))
    out = run_step(s)
    assert out.batch.num_tokens <= 10
    assert chunk_sizes(out) == {0: 4, 1: 4, 2: 2}


def test_max_num_seqs_caps_running() -> None:
    s = make(max_num_seqs=2)
    for i in range(3):
        s.add(seq(i, 2, first_token=10 * i))
    run_step(s)
    assert [q.seq_id for q in s.running] == [0, 1]
    assert [q.seq_id for q in s.waiting] == [2]


def test_admission_waits_for_free_blocks_and_keeps_fcfs() -> None:
    s = make(num_blocks=4)
    s.add(seq(0, 12))  # 3 blocks
    s.add(seq(1, 8, first_token=50))  # 2 blocks: does not fit yet
    s.add(seq(2, 2, first_token=90))  # 1 block: would fit, but must not overtake seq 1
    run_step(s)
    assert [q.seq_id for q in s.running] == [0]
    assert [q.seq_id for q in s.waiting] == [1, 2]
    s.finish(s.running[0], "stop")
    run_step(s)
    assert [q.seq_id for q in s.running] == [1, 2]


def test_preempts_newest_when_blocks_run_out_and_recomputes_it() -> None:
    s = make(num_blocks=4, max_batched_tokens=64)
    s.add(seq(0, 4))
    s.add(seq(1, 4, first_token=50))
    s.add(seq(2, 4, first_token=90))
    s.add(seq(3, 4, first_token=130))
    run_step(s)  # four prompts fill the four blocks; each sampled a 5th token
    out = run_step(s)  # each needs a second block: the two newest make room for the two oldest
    assert out.num_preempted == 2
    assert [q.seq_id for q in s.running] == [0, 1]
    assert chunk_sizes(out) == {0: 1, 1: 1}
    assert [q.seq_id for q in s.waiting] == [2, 3]  # FCFS order kept
    preempted = s.waiting[0]
    assert preempted.num_computed_tokens == 0 and preempted.block_table == []
    assert preempted.num_preemptions == 1
    assert preempted.num_tokens == 5  # prompt plus the token generated before preemption
    assert s.num_preemptions == 2


def test_preempted_sequence_resumes_with_all_its_tokens() -> None:
    s = make(num_blocks=3, max_batched_tokens=64, prefix=False)
    s.add(seq(0, 4))
    s.add(seq(1, 4, first_token=50))
    run_step(s)
    run_step(s)  # seq 1 preempted: seq 0 takes the last block
    assert [q.seq_id for q in s.waiting] == [1]
    s.finish(s.running[0], "stop")
    out = run_step(s)
    assert chunk_sizes(out) == {1: 5}
    assert out.batch.seqs[0].token_ids == (50, 51, 52, 53, 7)


def test_a_lone_sequence_that_cannot_grow_preempts_itself() -> None:
    s = make(num_blocks=1)
    s.add(seq(0, 4))
    run_step(s)
    out = s.schedule(0.0)
    assert out.num_preempted == 1
    assert out.batch.seqs == ()
    assert s.waiting[0].status is SeqStatus.WAITING


def test_no_admission_in_a_step_that_preempted() -> None:
    s = make(num_blocks=3)
    s.add(seq(0, 4))
    s.add(seq(1, 4, first_token=50))
    run_step(s)
    s.add(seq(2, 1, first_token=90))
    out = run_step(s)
    assert out.num_preempted == 1
    assert 2 not in chunk_sizes(out)


def test_expired_requests_finish_with_reason_deadline() -> None:
    s = make()
    s.add(seq(0, 4, deadline=5.0))
    s.add(seq(1, 4, first_token=50, deadline=100.0))
    run_step(s, now=1.0)
    s.add(seq(2, 4, first_token=90, deadline=5.0))
    out = s.schedule(now=6.0)
    assert {q.seq_id for q in out.expired} == {0, 2}
    assert all(q.finish_reason == "deadline" and q.is_finished for q in out.expired)
    assert [q.seq_id for q in s.running] == [1]
    assert s.block_manager.num_free_blocks == 64 - 2


def test_finish_frees_blocks() -> None:
    s = make(num_blocks=8)
    s.add(seq(0, 8))
    run_step(s)
    s.finish(s.running[0], "stop")
    assert s.block_manager.num_free_blocks == 8
    assert s.num_unfinished == 0


def test_decode_step_target_cuts_the_prefill_chunk_beside_decodes() -> None:
    config = EngineConfig(
        max_num_seqs=8, max_batched_tokens=64, block_size=BS, max_model_len=256, decode_step_target_s=0.03
    )
    s = Scheduler(config, BlockManager(64, BS))
    for tokens in (1, 2, 4, 8, 16, 32, 64, 3):  # steps cost 10 ms + 1 ms a token: 20 tokens fit 30 ms
        s.step_times.observe(tokens, 0.01 + 0.001 * tokens)
    s.add(seq(0, 40))
    assert chunk_sizes(run_step(s)) == {0: 40}  # nothing decoding yet: the whole prompt at once
    s.add(seq(1, 60, first_token=100))
    cut = run_step(s)
    assert chunk_sizes(cut) == {0: 1, 1: 19}  # one decode + 19 prompt tokens = the 20 that fit
    assert chunk_sizes(run_step(s)) == {0: 1, 1: 19}
    plain = make(max_batched_tokens=64)
    plain.add(seq(0, 40))
    run_step(plain)
    plain.add(seq(1, 60, first_token=100))
    assert chunk_sizes(run_step(plain)) == {0: 1, 1: 60}


def test_shortest_prompt_first_admits_a_short_prompt_ahead_of_a_queued_long_one() -> None:
    config = EngineConfig(
        max_num_seqs=1,
        max_batched_tokens=64,
        block_size=BS,
        max_model_len=256,
        scheduling_policy="shortest-prompt-first",
    )
    s = Scheduler(config, BlockManager(64, BS))
    s.add(seq(0, 8))  # running first: admission order never preempts what runs
    run_step(s)
    s.add(seq(1, 40))
    s.add(seq(2, 4, first_token=100))
    assert [q.seq_id for q in s.waiting] == [2, 1]
    s.finish(s.running[0], "stop")
    assert chunk_sizes(run_step(s)) == {2: 4}


def test_fcfs_admits_in_arrival_order() -> None:
    s = make(max_num_seqs=1)
    s.add(seq(1, 40))
    s.add(seq(2, 4, first_token=100))
    assert [q.seq_id for q in s.waiting] == [1, 2]
    assert chunk_sizes(run_step(s)) == {1: 40}
