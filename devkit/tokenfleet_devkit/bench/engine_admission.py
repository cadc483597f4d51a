"""Admission order on the real engine: a burst of Azure code prompts arriving at once, admitted first
come first served and then shortest prompt first (spec.engine.schedulingPolicy); the same requests on
the same engine, so the work is identical and only who waits changes.

Reported per order: TTFT p50/p90/max, when the last request finished, and the share of requests whose
first token came within a target. The target is the FCFS run's median TTFT, so it scales with the
machine; FCFS keeps about half within it by construction, and the question is how many more the
other order keeps.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from tokenfleet_devkit.bench.engine_runs import make_engine
from tokenfleet_devkit.bench.engine_workload import BenchRequest, percentile, random_prompt
from tokenfleet_devkit.traces import TraceMissing, load_azure_code
from tokenfleet_worker.admission import FCFS, SHORTEST_PROMPT_FIRST
from tokenfleet_worker.batch import SamplingParams
from tokenfleet_worker.engine import Engine
from tokenfleet_worker.runner import TorchRunner

BURST = 16
SMOKE_BURST = 6
# The trace's prompt lengths are scaled by LENGTH_SCALE (its median ~1900 tokens becomes ~480) and the
# few longer than MAX_LEN cut: on 2 CPU cores the 100M model prefills a few hundred tokens a second
# in these steps, so a burst takes ~20-30 s per order.
LENGTH_SCALE = 0.25
MAX_LEN = 1024
OUTPUT_TOKENS = 8  # short answers, as in the code trace: the burst's cost is its prefill
MAX_BATCHED_TOKENS = 512  # chunks: a long prompt holds the step budget for several steps
# Without the trace: code-completion-like lengths, mostly short with a long tail.
FALLBACK_LENGTHS = (40, 900, 120, 60, 1000, 250, 80, 700, 30, 400, 150, 950)


def burst_requests(
    num: int, *, vocab_size: int, first_id: int, max_len: int
) -> tuple[list[BenchRequest], str]:
    """`num` requests with Azure code prompt lengths x`LENGTH_SCALE`, each cut to fit `max_len`.

    One fixed scale keeps the trace's spread of short and long prompts; scaling all to fit the
    longest sampled made nearly all of them tiny, and cutting alone made most of them equal."""
    rng = random.Random(0)
    longest = max_len - OUTPUT_TOKENS
    try:
        records = rng.sample(load_azure_code(), num)
        lengths = [max(1, min(int(r.prompt_tokens * LENGTH_SCALE), longest)) for r in records]
        source = f"Azure code trace, lengths x{LENGTH_SCALE:g} cut at {longest}"
    except TraceMissing:
        lengths = [min(FALLBACK_LENGTHS[i % len(FALLBACK_LENGTHS)], longest) for i in range(num)]
        source = "fixed lengths (trace not found)"
    return [
        BenchRequest(f"burst-{i}", random_prompt(rng, n, first_id, vocab_size), OUTPUT_TOKENS)
        for i, n in enumerate(lengths)
    ], source


def _burst(engine: Engine, requests: list[BenchRequest]) -> dict[str, Any]:
    """Every request added at once; each one's time to first token and the burst's makespan."""
    start = time.perf_counter()
    greedy = SamplingParams(max_tokens=OUTPUT_TOKENS, temperature=0.0, ignore_eos=True)
    for request in requests:
        engine.add_request(request.request_id, list(request.prompt_ids), greedy)
    first: dict[str, float] = {}
    while engine.has_unfinished():
        for out in engine.step():
            if out.token_ids and out.request_id not in first:
                first[out.request_id] = time.perf_counter() - start
    return {"ttfts_s": [first[r.request_id] for r in requests], "makespan_s": time.perf_counter() - start}


def _summary(run: dict[str, Any], target_s: float, requests: list[BenchRequest]) -> dict[str, Any]:
    ttfts: list[float] = run["ttfts_s"]
    return {
        "ttft_by_prompt_tokens": [[len(r.prompt_ids), t] for r, t in zip(requests, ttfts, strict=True)],
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p90_s": percentile(ttfts, 90),
        "ttft_max_s": max(ttfts),
        "makespan_s": run["makespan_s"],
        "within_target": sum(t <= target_s for t in ttfts) / len(ttfts),
    }


def admission_runs(
    runner: TorchRunner, model_dir: Path, vocab: int, first_id: int, *, smoke: bool
) -> dict[str, Any]:
    requests, source = burst_requests(
        SMOKE_BURST if smoke else BURST,
        vocab_size=vocab,
        first_id=first_id,
        max_len=min(MAX_LEN, runner.max_model_len),
    )
    runs = {
        policy: _burst(
            make_engine(runner, model_dir, 8, MAX_BATCHED_TOKENS, scheduling_policy=policy), requests
        )
        for policy in (FCFS, SHORTEST_PROMPT_FIRST)
    }
    target = percentile(runs[FCFS]["ttfts_s"], 50) or 0.0
    return {
        "requests": len(requests),
        "prompt_tokens": sum(len(r.prompt_ids) for r in requests),
        "source": source,
        "target_s": target,
        **{policy: _summary(run, target, requests) for policy, run in runs.items()},
    }
