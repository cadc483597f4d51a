"""Sampling: greedy, temperature, top-k, top-p, seeds that ignore batch composition, logprobs."""

from __future__ import annotations

import math

import pytest
import torch

from tokenfleet_worker.batch import SamplingParams, ScheduledSeq
from tokenfleet_worker.sampling import derive_seed, filtered_probs, sample

pytestmark = pytest.mark.unit


def seq(seq_id: int, num_generated: int = 0, **params: object) -> ScheduledSeq:
    return ScheduledSeq(seq_id, (1,), 0, (0,), True, SamplingParams(**params), num_generated)  # type: ignore[arg-type]


def random_logits(rows: int, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def test_greedy_takes_argmax_and_top_k_one_is_greedy() -> None:
    logits = random_logits(3)
    tokens = sample(
        logits, [seq(0, temperature=0.0), seq(1, temperature=1.0, top_k=1), seq(2, temperature=0.0)]
    )
    assert [t.token_id for t in tokens] == logits.argmax(-1).tolist()
    assert [t.seq_id for t in tokens] == [0, 1, 2]
    assert all(t.logprob is None for t in tokens)


def test_top_k_and_top_p_keep_only_the_allowed_tokens() -> None:
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    for step in range(200):
        token = sample(logits, [seq(0, step, temperature=1.0, top_k=2, seed=1)])[0].token_id
        assert token in (0, 1)
    # softmax([5, 4, 3, ...]) puts ~0.64 on token 0 and ~0.24 on token 1: top_p 0.8 keeps exactly those two.
    probs, ids = filtered_probs(logits, [SamplingParams(top_p=0.8)])
    kept = ids[0][probs[0] > 0].tolist()
    assert kept == [0, 1]


def test_top_p_always_keeps_the_most_likely_token() -> None:
    probs, ids = filtered_probs(torch.tensor([[0.0, 9.0, 1.0]]), [SamplingParams(top_p=0.01)])
    assert ids[0][probs[0] > 0].tolist() == [1]


def test_temperature_sampling_follows_the_distribution() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    counts = [0, 0, 0]
    # Unseeded rows share the global stream: one batched call draws all 1500 samples.
    for token in sample(logits.expand(1500, 3), [seq(row, temperature=1.0) for row in range(1500)]):
        counts[token.token_id] += 1
    assert counts[0] / 1500 == pytest.approx(0.7, abs=0.05)
    assert counts[2] / 1500 == pytest.approx(0.1, abs=0.03)


def test_low_temperature_concentrates_on_argmax() -> None:
    logits = torch.tensor([[1.0, 1.5, 0.5]])
    picks = {sample(logits, [seq(0, step, temperature=0.01, seed=3)])[0].token_id for step in range(50)}
    assert picks == {1}


def test_seeded_tokens_do_not_depend_on_batch_composition() -> None:
    logits = random_logits(4, vocab=1000, seed=9)
    target_logits = logits[2:3]
    alone = [
        sample(target_logits, [seq(7, step, temperature=0.9, top_p=0.95, seed=1234)])[0].token_id
        for step in range(20)
    ]
    in_batch = []
    for step in range(20):
        batch = [
            seq(1, step, temperature=1.0),
            seq(2, 5, temperature=0.0),
            seq(7, step, temperature=0.9, top_p=0.95, seed=1234),
            seq(4, step, temperature=1.3, top_k=10, seed=99),
        ]
        in_batch.append(sample(logits[[0, 1, 2, 3]], batch)[2].token_id)
    assert alone == in_batch
    assert len(set(alone)) > 1  # the step index changes the stream


def test_different_seeds_differ_and_unseeded_rows_still_sample() -> None:
    logits = random_logits(1, vocab=1000)
    first = [sample(logits, [seq(0, s, temperature=1.0, seed=1)])[0].token_id for s in range(10)]
    second = [sample(logits, [seq(0, s, temperature=1.0, seed=2)])[0].token_id for s in range(10)]
    assert first != second
    assert derive_seed(1, 0) != derive_seed(0, 1)


def test_logprobs_of_raw_distribution() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    tokens = sample(logits, [seq(0, temperature=0.0, logprobs=2), seq(1, temperature=0.0, logprobs=0)])
    assert tokens[0].token_id == 0
    assert tokens[0].logprob == pytest.approx(math.log(0.5), abs=1e-5)
    assert [t for t, _ in tokens[0].top_logprobs] == [0, 1]
    assert tokens[0].top_logprobs[1][1] == pytest.approx(math.log(0.3), abs=1e-5)
    assert tokens[1].logprob == pytest.approx(math.log(0.8), abs=1e-5)
    assert tokens[1].top_logprobs == ()


def test_top_logprobs_beyond_vocab_are_clamped() -> None:
    tokens = sample(torch.zeros(1, 3), [seq(0, temperature=0.0, logprobs=20)])
    assert len(tokens[0].top_logprobs) == 3


def test_row_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 logit rows for 1 sequences"):
        sample(torch.zeros(2, 3), [seq(0)])
