"""Perfect-foresight provisioning: the replicas each minute's load needs, computed from the future.

A request's demand on a replica, at full batching efficiency:
    busy seconds = prompt / prefill_rate + output * decode_step(B) / B
    KV token-seconds = (prompt + output / 2) * output * decode_step(B)
with prefill_rate = max_batched_tokens / step(max_batched_tokens) and B a reference decode batch. A
minute needs ceil(max(busy / 60, KV token-seconds / 60 / kv_capacity) / utilisation) replicas, capped
at the smallest static fleet that meets the SLO. The utilisation (which may exceed 1, since prefix-cache
hits and batching beyond the reference make real work smaller) is searched like every baseline's
threshold: the cheapest value meeting the SLO. Its replicas start without cold start.

One utilisation for every minute plans a small minute's load like a large one's, though a replica or two
carry a few long requests far below full efficiency (the ServeGen trace, 1-4 replicas: tokenfleet ran on
13% fewer hours than that plan). So a second plan reads each minute's need from hindsight itself: the
trace from two minutes before it (whose long requests still hold the replicas) to its end, run on 1,
2, ... fresh replicas, gives the requests of that minute each fleet size leaves out of the SLO
(`misses[m][n - 1]`, runs.minute_misses), and the plan takes per minute the size minimising
    replicas + miss_cost * misses
with `miss_cost` (replica-minutes one missed request is worth) searched like the utilisation. Long
requests outlive any such window (ServeGen's outputs reach 98,000 tokens), so where no miss cost meets
the SLO in the full run, the plan closest to it is repaired: the minutes that missed most in the full
run get a replica more, and the repaired plan runs again (`repair`). The full run, which carries
backlogs and caches across every minute, decides whether a plan meets the SLO; the oracle is the
cheapest plan found that does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tokenfleet_devkit.sim.perf_model import PerfModel
from tokenfleet_devkit.sim.request import SimRequest

REFERENCE_BATCH = 64
REFERENCE_CONTEXT = 2048


def _rates(perf: PerfModel, max_batched_tokens: int) -> tuple[float, float]:
    """Prefill tokens per second in full chunks, and the decode step at the reference batch."""
    prefill_rate = max_batched_tokens / perf.step_seconds(max_batched_tokens, max_batched_tokens)
    return prefill_rate, perf.step_seconds(REFERENCE_BATCH, REFERENCE_BATCH * REFERENCE_CONTEXT)


def demand_per_minute(
    requests: Sequence[SimRequest], perf: PerfModel, max_batched_tokens: int, horizon_s: float
) -> list[float]:
    """Replicas of full-efficiency work arriving in each minute (fractional)."""
    minutes = max(1, math.ceil(horizon_s / 60.0))
    prefill_rate, decode_step = _rates(perf, max_batched_tokens)
    busy = [0.0] * minutes
    kv = [0.0] * minutes
    for r in requests:
        m = min(int(r.arrival // 60.0), minutes - 1)
        busy[m] += r.prompt_tokens / prefill_rate + r.output_tokens * decode_step / REFERENCE_BATCH
        kv[m] += (r.prompt_tokens + r.output_tokens / 2) * r.output_tokens * decode_step
    capacity = max(perf.kv_capacity_tokens, 1)
    return [max(b / 60.0, k / 60.0 / capacity) for b, k in zip(busy, kv, strict=True)]


def full_load_tokens_per_second(
    requests: Sequence[SimRequest], perf: PerfModel, max_batched_tokens: int
) -> float:
    """Prompt + output tokens a second one replica processes at full efficiency on these requests (the
    same busy-time formula as the demand), or what its KV cache allows, whichever is less: what a
    benchmark of the workload on that accelerator would report."""
    prefill_rate, decode_step = _rates(perf, max_batched_tokens)
    tokens = sum(r.prompt_tokens + r.output_tokens for r in requests)
    busy = sum(
        r.prompt_tokens / prefill_rate + r.output_tokens * decode_step / REFERENCE_BATCH for r in requests
    )
    kv = sum((r.prompt_tokens + r.output_tokens / 2) * r.output_tokens * decode_step for r in requests)
    seconds = max(busy, kv / max(perf.kv_capacity_tokens, 1))
    return tokens / seconds if seconds > 0 else 0.0


def plan(demand: Sequence[float], utilisation: float, cap: int | None = None) -> list[int]:
    """Replicas per minute; `cap` (the smallest static fleet meeting the SLO) bounds it, since with
    perfect foresight no minute ever needs more than a fleet that serves the whole trace."""
    if utilisation <= 0:
        raise ValueError("utilisation must be positive")
    need = [max(1, math.ceil(d / utilisation - 1e-9)) for d in demand]
    return need if cap is None else [min(n, cap) for n in need]


def plan_by_misses(misses: Sequence[Sequence[int]], miss_cost: float, cap: int | None = None) -> list[int]:
    """Replicas per minute minimising `replicas + miss_cost * misses`, from each minute's misses on 1, 2,
    ... replicas (a row ends at the first size that misses none, or at the cap). Fewer replicas win
    ties; more capacity is taken never to miss more (a running minimum), so the plan grows with
    `miss_cost`."""
    if miss_cost <= 0:
        raise ValueError("miss_cost must be positive")
    plan = []
    for row in misses:
        best, best_cost, fewest = 1, math.inf, math.inf
        for n, missed in enumerate(row, start=1):
            fewest = min(fewest, missed)
            cost = n + miss_cost * fewest
            if cost < best_cost - 1e-9:
                best, best_cost = n, cost
        plan.append(best if cap is None else min(best, cap))
    return plan


def repair(plan: Sequence[int], missed: Sequence[int], allowed: int, cap: int) -> list[int]:
    """One round of hindsight repair from a full run of `plan`: a replica more for the minutes whose
    requests missed the SLO most, until the misses left in minutes not raised fit within `allowed`.
    Optimistic (a raised minute may still miss, as backlogs and long requests carry over), so the
    caller runs the repaired plan and repairs again."""
    out = list(plan)
    excess = sum(missed) - allowed
    for m in sorted(range(len(out)), key=lambda k: -missed[k]):
        if excess <= 0 or missed[m] == 0:
            break
        if out[m] < cap:
            out[m] += 1
            excess -= missed[m]
    return out
