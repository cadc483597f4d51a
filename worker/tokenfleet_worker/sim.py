"""`--backend sim`: a Runner with no model compute, for tests and large fleet simulations.

A step takes `base_s + per_token_s * batched_tokens + per_context_token_s * sum(context lengths)`
seconds, slept for real so latency, queueing and throughput behave like a real worker. Sampled
tokens are pseudo-random printable tokens of the real tokenizer: deterministic per request when it
sets `seed`, and per sequence otherwise. Everything else (scheduler, KV blocks, engine, server,
metrics) is the same code the torch backend runs.

The defaults approximate a ~100M-parameter fp32 Llama on a 2-core CPU: about 25 ms a step plus
1.5 ms per batched token, so batch-32 decode gives roughly 400 output tokens/s.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from tokenfleet_worker.batch import SampledToken, StepBatch


@dataclass(frozen=True)
class SimProfile:
    base_s: float = 0.025
    per_token_s: float = 0.0015
    per_context_token_s: float = 2e-6

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"sim profile: {f.name} must not be negative")

    def step_seconds(self, batch: StepBatch) -> float:
        context = sum(s.start_pos + len(s.token_ids) for s in batch.seqs)
        return self.base_s + self.per_token_s * batch.num_tokens + self.per_context_token_s * context

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimProfile:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"sim profile: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in data.items()})

    @classmethod
    def load(cls, path: Path) -> SimProfile:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read sim profile {path}: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"sim profile {path} must hold a JSON object")
        return cls.from_dict(data)


@dataclass(frozen=True)
class StepSample:
    """One measured engine step: what it computed and how long it took."""

    num_tokens: int
    num_context_tokens: int
    seconds: float


def fit_profile(samples: Sequence[StepSample]) -> SimProfile:
    """Least-squares fit of the three profile coefficients to measured steps (e.g. of a torch run).

    Coefficients that come out negative (noise on a term that barely matters) are refitted as zero.
    """
    if len(samples) < 3:
        raise ValueError("fitting a sim profile needs at least 3 measured steps")
    active = [0, 1, 2]
    while True:
        rows = [(1.0, float(s.num_tokens), float(s.num_context_tokens)) for s in samples]
        coef = _least_squares([[r[i] for i in active] for r in rows], [s.seconds for s in samples])
        full = [0.0, 0.0, 0.0]
        for i, c in zip(active, coef, strict=True):
            full[i] = c
        negative = [i for i in active if full[i] < 0]
        if not negative:
            return SimProfile(base_s=full[0], per_token_s=full[1], per_context_token_s=full[2])
        active = [i for i in active if i not in negative]
        if not active:
            return SimProfile(0.0, 0.0, 0.0)


def _least_squares(x: list[list[float]], y: list[float]) -> list[float]:
    """Solve the normal equations (X^T X) b = X^T y by Gaussian elimination; tiny systems only."""
    n = len(x[0])
    a = [[sum(r[i] * r[j] for r in x) for j in range(n)] for i in range(n)]
    b = [sum(r[i] * t for r, t in zip(x, y, strict=True)) for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-18:
            raise ValueError("the measured steps do not vary enough to fit a sim profile")
        a[col], a[pivot] = a[pivot], a[col]
        b[col], b[pivot] = b[pivot], b[col]
        for r in range(n):
            if r != col:
                factor = a[r][col] / a[col][col]
                a[r] = [v - factor * p for v, p in zip(a[r], a[col], strict=True)]
                b[r] -= factor * b[col]
    return [b[i] / a[i][i] for i in range(n)]


def printable_token_ids(tokenizer: Tokenizer) -> list[int]:
    """Ids of ordinary tokens that decode to non-empty printable ASCII, in id order."""
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    ids = []
    for token_id in range(tokenizer.get_vocab_size(with_added_tokens=True)):
        if tokenizer.id_to_token(token_id) in special:
            continue
        text = tokenizer.decode([token_id])
        if text and text.isascii() and text.isprintable():
            ids.append(token_id)
    if not ids:
        raise ValueError("the tokenizer has no printable tokens for the sim backend to emit")
    return ids


class SimRunner:
    def __init__(
        self,
        *,
        num_blocks: int,
        block_size: int,
        vocab: Sequence[int],
        profile: SimProfile | None = None,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not vocab:
            raise ValueError("SimRunner needs a non-empty vocabulary")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.vocab = list(vocab)
        self.profile = profile or SimProfile()
        self.seed = seed
        self._sleep = sleep
        self._uniform_logprob = -math.log(len(self.vocab))

    def execute(self, batch: StepBatch) -> list[SampledToken]:
        self._sleep(self.profile.step_seconds(batch))
        sampled = []
        for seq in batch.seqs:
            if not seq.needs_sample:
                continue
            # String seeds hash deterministically across processes, unlike hash() of a tuple.
            key = (
                f"req:{seq.sampling.seed}:{seq.num_generated}"
                if seq.sampling.seed is not None
                else f"seq:{self.seed}:{seq.seq_id}:{seq.num_generated}"
            )
            rng = random.Random(key)
            token_id = self.vocab[rng.randrange(len(self.vocab))]
            top: tuple[tuple[int, float], ...] = ()
            if seq.sampling.logprobs:
                top = tuple(
                    (self.vocab[rng.randrange(len(self.vocab))], self._uniform_logprob)
                    for _ in range(seq.sampling.logprobs)
                )
            sampled.append(SampledToken(seq.seq_id, token_id, self._uniform_logprob, top))
        return sampled
