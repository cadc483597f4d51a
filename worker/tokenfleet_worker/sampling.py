"""Choose the next token of each sequence from its logits: greedy, temperature, top-k, top-p, seed.

Sampling uses the exponential-race form of categorical sampling (argmax of p / E with E ~ Exp(1)),
so a sequence's draw depends only on its own noise. With a seed, that noise comes from a generator
seeded by (seed, num_generated): the same request gives the same tokens whatever else is in the
batch. Logprobs, when asked for, are of the model's raw distribution (before temperature).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tokenfleet_worker.batch import SampledToken, SamplingParams, ScheduledSeq

MIN_TEMPERATURE = 1e-5
SEED_STRIDE = 1_000_003  # a prime, so (seed, step) pairs map to distinct generator seeds


def derive_seed(seed: int, num_generated: int) -> int:
    return (seed * SEED_STRIDE + num_generated) % (2**63 - 1)


def filtered_probs(
    logits: torch.Tensor, params: Sequence[SamplingParams]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (probabilities over tokens sorted by logit, the sort indices), after top-k and top-p."""
    device = logits.device
    temperatures = torch.tensor([max(p.temperature, MIN_TEMPERATURE) for p in params], device=device)
    sorted_logits, sorted_ids = (logits / temperatures[:, None]).sort(dim=-1, descending=True)
    vocab = logits.shape[-1]
    top_k = torch.tensor([p.top_k if 0 < p.top_k < vocab else vocab for p in params], device=device)
    ranks = torch.arange(vocab, device=device)[None, :]
    sorted_logits = sorted_logits.masked_fill(ranks >= top_k[:, None], float("-inf"))
    top_p = torch.tensor([p.top_p for p in params], device=device)
    if bool((top_p < 1.0).any()):
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        # The first token is always kept: its mass_before is 0.
        sorted_logits = sorted_logits.masked_fill(mass_before >= top_p[:, None], float("-inf"))
    return sorted_logits.softmax(dim=-1), sorted_ids


def exponential_noise(
    shape: tuple[int, int], seqs: Sequence[ScheduledSeq], device: torch.device
) -> torch.Tensor:
    noise = torch.empty(shape, device=device).exponential_()
    for row, seq in enumerate(seqs):
        if seq.sampling.seed is not None:
            # Seeded rows draw on the CPU so the same seed gives the same noise on every device.
            generator = torch.Generator().manual_seed(derive_seed(seq.sampling.seed, seq.num_generated))
            noise[row] = torch.empty(shape[1]).exponential_(generator=generator).to(device)
    return noise


def sample_random(logits: torch.Tensor, seqs: Sequence[ScheduledSeq]) -> torch.Tensor:
    probs, sorted_ids = filtered_probs(logits, [s.sampling for s in seqs])
    noise = exponential_noise((probs.shape[0], probs.shape[1]), seqs, logits.device)
    choice = (probs / noise).argmax(dim=-1, keepdim=True)
    return sorted_ids.gather(-1, choice).squeeze(-1)


def sample(logits: torch.Tensor, seqs: Sequence[ScheduledSeq]) -> list[SampledToken]:
    """One token per row of `logits` (float32 [len(seqs), vocab]), in the order of `seqs`."""
    if logits.shape[0] != len(seqs):
        raise ValueError(f"{logits.shape[0]} logit rows for {len(seqs)} sequences")
    if not seqs:
        return []
    token_ids = logits.argmax(dim=-1)
    random_rows = [row for row, seq in enumerate(seqs) if not seq.sampling.is_greedy]
    if random_rows:
        rows = torch.tensor(random_rows, device=logits.device)
        token_ids[rows] = sample_random(logits[rows], [seqs[row] for row in random_rows])
    ids = token_ids.tolist()
    logprob_rows = [row for row, seq in enumerate(seqs) if seq.sampling.logprobs is not None]
    logprobs: dict[int, tuple[float, tuple[tuple[int, float], ...]]] = {}
    if logprob_rows:
        rows = torch.tensor(logprob_rows, device=logits.device)
        all_logprobs = logits[rows].log_softmax(dim=-1)
        chosen = all_logprobs.gather(-1, token_ids[rows][:, None]).squeeze(-1).tolist()
        max_top = min(max(seqs[row].sampling.logprobs or 0 for row in logprob_rows), logits.shape[-1])
        top_values, top_ids = all_logprobs.topk(max_top, dim=-1) if max_top else (None, None)
        for i, row in enumerate(logprob_rows):
            count = seqs[row].sampling.logprobs or 0
            top: tuple[tuple[int, float], ...] = ()
            if count and top_values is not None and top_ids is not None:
                top = tuple(zip(top_ids[i, :count].tolist(), top_values[i, :count].tolist(), strict=True))
            logprobs[row] = (chosen[i], top)
    return [
        SampledToken(
            seq_id=seq.seq_id,
            token_id=ids[row],
            logprob=logprobs[row][0] if row in logprobs else None,
            top_logprobs=logprobs[row][1] if row in logprobs else (),
        )
        for row, seq in enumerate(seqs)
    ]
