"""TorchRunner: batched paged decoding equals one-at-a-time decoding; bad batches are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokenfleet_worker.batch import SamplingParams, ScheduledSeq, StepBatch
from tokenfleet_worker.make_model import make_model
from tokenfleet_worker.runner import TorchRunner, build_step_inputs, group_by_context, kv_bytes_per_block

BLOCK_SIZE = 4
BLOCKS_PER_SEQ = 16
GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("runner"), preset="tiny", seed=21)


@pytest.fixture(scope="module")
def runner(model_dir: Path) -> TorchRunner:
    return TorchRunner(model_dir, block_size=BLOCK_SIZE, kv_cache_bytes=4 * 1024**2)


def table_for(slot: int) -> tuple[int, ...]:
    # Interleave sequences' blocks so a wrong block table reads another sequence's keys.
    return tuple(slot + 8 * i for i in range(BLOCKS_PER_SEQ))


def generate(
    runner: TorchRunner,
    prompts: dict[int, list[int]],
    num_tokens: int,
    *,
    together: bool,
    sampling: SamplingParams = GREEDY,
    prefill_chunk: int = 1000,
) -> dict[int, list[int]]:
    """Prefill (in chunks) then decode every prompt, all in shared steps or one sequence at a time."""
    tokens = {seq_id: list(p) for seq_id, p in prompts.items()}
    computed = dict.fromkeys(prompts, 0)
    generated: dict[int, list[int]] = {seq_id: [] for seq_id in prompts}

    def step(seq_ids: list[int]) -> None:
        seqs = []
        for seq_id in seq_ids:
            start = computed[seq_id]
            chunk = tokens[seq_id][start : start + prefill_chunk]
            seqs.append(
                ScheduledSeq(
                    seq_id,
                    tuple(chunk),
                    start,
                    table_for(seq_id),
                    needs_sample=start + len(chunk) == len(tokens[seq_id]),
                    sampling=sampling,
                    num_generated=len(generated[seq_id]),
                )
            )
        for seq in seqs:
            computed[seq.seq_id] += len(seq.token_ids)
        for token in runner.execute(StepBatch(tuple(seqs))):
            tokens[token.seq_id].append(token.token_id)
            generated[token.seq_id].append(token.token_id)

    groups = [list(prompts)] if together else [[seq_id] for seq_id in prompts]
    for group in groups:
        while any(len(generated[s]) < num_tokens for s in group):
            step([s for s in group if len(generated[s]) < num_tokens])
    return generated


def prompts_of(lengths: dict[int, int], vocab: int) -> dict[int, list[int]]:
    gen = torch.Generator().manual_seed(0)
    return {seq_id: torch.randint(5, vocab, (n,), generator=gen).tolist() for seq_id, n in lengths.items()}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("contexts", "expected"),
    [
        ([5, 100, 128], [[5, 100, 128]]),
        ([300, 5, 129, 600, 260], [[5], [129], [260, 300], [600]]),
        ([1000], [[1000]]),
    ],
)
def test_decodes_are_grouped_by_context_length(contexts: list[int], expected: list[list[int]]) -> None:
    seqs = [ScheduledSeq(i, (1,), n - 1, (), True) for i, n in enumerate(contexts)]
    groups = group_by_context(seqs)
    assert [[s.start_pos + 1 for s in group] for group in groups] == expected


def test_exposes_sizes(runner: TorchRunner) -> None:
    assert runner.block_size == BLOCK_SIZE
    assert runner.num_blocks == 4 * 1024**2 // kv_bytes_per_block(runner.config, BLOCK_SIZE, torch.float32)
    assert runner.num_blocks >= 8 * BLOCKS_PER_SEQ
    assert runner.vocab_size == runner.config.vocab_size == 512
    assert runner.max_model_len == 2048
    assert runner.execute(StepBatch(())) == []


def test_batched_paged_decode_equals_one_at_a_time(runner: TorchRunner) -> None:
    prompts = prompts_of({0: 3, 1: 11, 2: 17, 3: 6, 4: 1}, runner.vocab_size)
    alone = generate(runner, prompts, 12, together=False)
    together = generate(runner, prompts, 12, together=True)
    chunked = generate(runner, prompts, 12, together=True, prefill_chunk=5)
    assert together == alone
    assert chunked == alone
    assert len({tuple(t) for t in alone.values()}) > 1


def test_packed_and_dense_weights_give_the_same_greedy_tokens(runner: TorchRunner, model_dir: Path) -> None:
    assert runner.packed_weights  # the CPU default
    dense = TorchRunner(model_dir, block_size=BLOCK_SIZE, kv_cache_bytes=4 * 1024**2, pack_weights=False)
    prompts = prompts_of({0: 5, 1: 17, 2: 9}, runner.vocab_size)
    expected = generate(dense, prompts, 8, together=True)
    assert generate(runner, prompts, 8, together=True) == expected


def test_packing_where_it_does_not_apply_is_an_error(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="pack_weights needs a CPU float32 model"):
        TorchRunner(model_dir, dtype="bfloat16", kv_cache_bytes=4 * 1024**2, pack_weights=True)


def test_seeded_sampling_is_reproducible_across_batch_composition(runner: TorchRunner) -> None:
    sampling = SamplingParams(temperature=1.0, top_p=0.9, seed=77)
    prompts = prompts_of({0: 9, 1: 4, 2: 14}, runner.vocab_size)
    alone = generate(runner, {1: prompts[1]}, 10, together=True, sampling=sampling)
    together = generate(runner, prompts, 10, together=True, sampling=sampling)
    assert together[1] == alone[1]
    assert generate(runner, {1: prompts[1]}, 10, together=True, sampling=sampling) == alone


def test_only_sequences_that_need_a_sample_get_one(runner: TorchRunner) -> None:
    batch = StepBatch(
        (
            ScheduledSeq(0, (5, 6, 7), 0, table_for(0), needs_sample=False),
            ScheduledSeq(
                1,
                (8, 9),
                0,
                table_for(1),
                needs_sample=True,
                sampling=SamplingParams(temperature=0.0, logprobs=3),
            ),
        )
    )
    (token,) = runner.execute(batch)
    assert token.seq_id == 1 and token.logprob is not None and len(token.top_logprobs) == 3


@pytest.mark.parametrize(
    ("seq", "message"),
    [
        (ScheduledSeq(0, (1, 2), 0, (10_000_000,), True), "block id outside"),
        (ScheduledSeq(0, (1, 2, 3, 4, 5), 0, (1,), True), "does not cover"),
        (ScheduledSeq(0, (1,), 2047 + 1, tuple(range(600)), True), "exceed 2048"),
        (ScheduledSeq(0, (), 0, (1,), True), "empty chunk"),
    ],
    ids=["block-range", "short-table", "past-context", "empty"],
)
def test_bad_batches_are_clear_errors(runner: TorchRunner, seq: ScheduledSeq, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runner.execute(StepBatch((seq,)))


def test_decode_with_short_block_table_is_an_error(runner: TorchRunner) -> None:
    with pytest.raises(ValueError, match="does not cover position 9"):
        runner.execute(StepBatch((ScheduledSeq(0, (1,), 9, (1, 2), True),)))


def test_too_small_kv_budget_is_an_error(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="too small for one block"):
        TorchRunner(model_dir, kv_cache_bytes=100)


@pytest.mark.gpu
def test_cuda_runner_greedy_matches_itself_batched(model_dir: Path) -> None:
    gpu = TorchRunner(
        model_dir, device="cuda", dtype="bfloat16", block_size=BLOCK_SIZE, kv_cache_bytes=64 * 1024**2
    )
    prompts = prompts_of({0: 3, 1: 11, 2: 17}, gpu.vocab_size)
    assert generate(gpu, prompts, 8, together=True) == generate(gpu, prompts, 8, together=False)


def test_prefix_blocks_shared_with_another_sequence_give_the_same_tokens(runner: TorchRunner) -> None:
    """A prefix-cache hit: B reuses A's full prefix blocks and computes only its own suffix."""
    vocab = runner.vocab_size
    prefix = prompts_of({0: 3 * BLOCK_SIZE}, vocab)[0]
    suffix_a, suffix_b = [7, 8, 9], [10, 11, 12, 13, 14]
    fresh = generate(runner, {5: prefix + suffix_b}, 6, together=True)[5]
    table_a = (100, 101, 102, 103, 104, 105)
    runner.execute(StepBatch((ScheduledSeq(1, tuple(prefix + suffix_a), 0, table_a, True, GREEDY),)))
    table_b = (*table_a[:3], 110, 111, 112, 113, 114)
    tokens = prefix + suffix_b
    generated: list[int] = []
    start = len(prefix)
    for _ in range(6):
        chunk = tuple(tokens[start:])
        (token,) = runner.execute(StepBatch((ScheduledSeq(2, chunk, start, table_b, True, GREEDY),)))
        start = len(tokens)
        tokens.append(token.token_id)
        generated.append(token.token_id)
    assert generated == fresh


@pytest.mark.unit
def test_paged_steps_attend_all_decodes_as_one_group() -> None:
    # Grouping by length only saves padding, which a paged kernel never reads.
    contexts = [300, 5, 129, 600]
    seqs = tuple(
        ScheduledSeq(i, (1,), n - 1, tuple(range(i * 160, i * 160 + 160)), True)
        for i, n in enumerate(contexts)
    )
    paged = build_step_inputs(StepBatch(seqs), BLOCK_SIZE, 4096, paged=True).meta.decode_groups
    assert len(paged) == 1 and paged[0].context_lens is not None and paged[0].block_tables is not None
    assert sorted(paged[0].context_lens.tolist()) == sorted(contexts)
    gathered = build_step_inputs(StepBatch(seqs), BLOCK_SIZE, 4096).meta.decode_groups
    assert len(gathered) == len(group_by_context(list(seqs))) > 1
    assert all(g.context_lens is None for g in gathered)
