"""Requests for the engine benchmark and the statistics it reports (pure: no torch, no I/O but the trace).

Two length mixes: the Azure 2023 code trace (long prompts, short answers; lengths scaled to fit the
model's context) and a mixed set with input and output lengths drawn uniformly from 16-256 tokens.
Prompts are random token ids that avoid the special tokens; every request generates exactly its
output length (end-of-sequence is ignored), so all systems do the same work.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from tokenfleet_devkit.traces import TraceMissing, load_azure_code


@dataclass(frozen=True)
class BenchRequest:
    request_id: str
    prompt_ids: tuple[int, ...]
    output_len: int
    arrival_s: float = 0.0  # offset from the start of the run; 0 for offline runs


def random_prompt(rng: random.Random, length: int, first_id: int, vocab_size: int) -> tuple[int, ...]:
    return tuple(rng.randrange(first_id, vocab_size) for _ in range(length))


def mixed_requests(
    num: int, *, vocab_size: int, first_id: int, seed: int = 0, low: int = 16, high: int = 256
) -> list[BenchRequest]:
    rng = random.Random(seed)
    return [
        BenchRequest(
            f"mixed-{i}",
            random_prompt(rng, rng.randint(low, high), first_id, vocab_size),
            rng.randint(low, high),
        )
        for i in range(num)
    ]


def trace_requests(
    num: int, *, vocab_size: int, first_id: int, max_len: int, seed: int = 0
) -> tuple[list[BenchRequest], float]:
    """`num` requests sampled from the Azure code trace, and the factor its prompt lengths were scaled by.

    Raises TraceMissing when the trace is not on disk.
    """
    records = load_azure_code()
    rng = random.Random(seed)
    picked = rng.sample(records, min(num, len(records)))
    longest = max(r.prompt_tokens + r.output_tokens for r in picked)
    scale = min(1.0, max_len / longest)
    requests = []
    for i, record in enumerate(picked):
        prompt_len = max(1, int(record.prompt_tokens * scale))
        output_len = max(1, min(record.output_tokens, max_len - prompt_len))
        requests.append(
            BenchRequest(f"trace-{i}", random_prompt(rng, prompt_len, first_id, vocab_size), output_len)
        )
    return requests, scale


def with_arrivals(requests: list[BenchRequest], rate_per_s: float, seed: int = 0) -> list[BenchRequest]:
    """Poisson arrivals at a fixed mean rate."""
    rng = random.Random(seed)
    now = 0.0
    timed = []
    for request in requests:
        timed.append(replace(request, arrival_s=now))
        now += rng.expovariate(rate_per_s)
    return timed


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, q in [0, 100]; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


__all__ = [
    "BenchRequest",
    "TraceMissing",
    "mixed_requests",
    "percentile",
    "trace_requests",
    "with_arrivals",
]
