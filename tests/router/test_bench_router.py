"""The fleet model behind `tokenfleet bench router` (devkit/tokenfleet_devkit/bench/router_fleet.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tokenfleet_devkit.bench.router import at_load, percentile, summarize
from tokenfleet_devkit.bench.router_fleet import FleetModel, ideal_hit_tokens, simulate, ttft_floor_seconds
from tokenfleet_devkit.traces import TraceRecord


def conversations(num: int, turns: int, seed: int = 0) -> list[TraceRecord]:
    """Multi-turn chats: each turn's prompt is the previous prompt plus two new 512-token blocks."""
    rng = random.Random(seed)
    records = []
    next_block = 1
    for c in range(num):
        blocks: list[int] = [0]  # a system prompt every conversation shares
        for turn in range(turns):
            blocks += [next_block, next_block + 1]
            next_block += 2
            arrival = c * 0.5 + turn * 20.0 + 5 * rng.random()
            records.append(TraceRecord(arrival, 512 * len(blocks), 20, tuple(blocks)))
    return sorted(records, key=lambda r: r.arrival_s)


@pytest.mark.unit
def test_ideal_hit_tokens_counts_leading_blocks_seen_before() -> None:
    records = [
        TraceRecord(0, 1024, 1, (1, 2)),
        TraceRecord(1, 1536, 1, (1, 2, 3)),
        TraceRecord(2, 512, 1, (9,)),
    ]
    assert ideal_hit_tokens(records) == 1024


@pytest.mark.unit
def test_every_request_is_served_and_prefix_affinity_finds_the_cache() -> None:
    model = FleetModel(num_workers=4, cache_blocks=200)
    records = at_load(conversations(41, 4), model, 0.5)
    runs = {name: simulate(records, name, model) for name in ("round-robin", "least-load", "prefix-affinity")}
    for run in runs.values():
        assert all(r.finish_s is not None and not r.is_rejected for r in run.requests)
        assert all(r.first_token_s is not None and r.first_token_s >= r.arrival_s for r in run.requests)
    hits = {name: summarize(run, records)["prefix_hit_rate"] for name, run in runs.items()}
    ideal = ideal_hit_tokens(records) / sum(r.prompt_tokens for r in records)
    assert hits["prefix-affinity"] > 0.8 * ideal
    assert hits["prefix-affinity"] > 1.5 * hits["round-robin"]


@pytest.mark.unit
def test_no_request_beats_its_no_contention_floor() -> None:
    model = FleetModel(num_workers=2, cache_blocks=200)
    records = at_load(conversations(21, 3), model, 0.8)
    floors = ttft_floor_seconds(records, model)
    # A later conversation's first turn: only the shared system-prompt block can be cached, so
    # 1024 tokens are left to prefill, in one step.
    first = next(i for i, r in enumerate(records) if len(r.hash_ids) == 3 and i > 0)
    assert floors[first] == pytest.approx(model.base_s + 1024 * model.per_token_s)
    run = simulate(records, "prefix-affinity", model)
    for request, floor in zip(run.requests, floors, strict=True):
        assert request.first_token_s is not None
        assert request.first_token_s - request.arrival_s >= floor - 1e-9


@pytest.mark.unit
def test_overload_is_refused_not_hung() -> None:
    model = FleetModel(num_workers=1, max_num_seqs=2, hold_timeout_s=1.0)
    burst = [TraceRecord(0.0, 20_000, 50) for _ in range(60)]
    run = simulate(burst, "least-load", model)
    assert any(r.is_rejected for r in run.requests)
    assert all(r.is_rejected or r.finish_s is not None for r in run.requests)


@pytest.mark.unit
def test_at_load_scales_time_only() -> None:
    model = FleetModel(num_workers=2)
    records = conversations(5, 2)
    half, full = at_load(records, model, 0.5), at_load(records, model, 1.0)
    assert [r.hash_ids for r in half] == [r.hash_ids for r in records]
    assert half[-1].arrival_s == pytest.approx(2 * full[-1].arrival_s)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([], 95) is None


@pytest.mark.slow
def test_smoke_run_writes_results(tmp_path: Path) -> None:
    from tokenfleet_devkit.bench.router import main
    from tokenfleet_devkit.traces import MOONCAKE_CONVERSATION, TraceMissing, trace_path

    try:
        trace_path(MOONCAKE_CONVERSATION)
    except TraceMissing as e:
        pytest.skip(str(e))
    assert main(["--smoke", "--no-overhead", "--requests", "200", "--results", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "router.json").read_text())
    assert "mooncake 200" in results["scaling"]
    at80 = results["results"]["mooncake"]["0.8"]
    assert set(at80) == {"round-robin", "least-load", "prefix-affinity"}
    assert at80["prefix-affinity"]["prefix_hit_rate"] > at80["round-robin"]["prefix_hit_rate"]
    assert {t["target"] for t in results["targets"]} >= {"prefix-affinity hit rate >= 85% of ideal"}
    floor = results["ttft_floor_s"]["mooncake"]
    assert 0 < floor["p95"] <= at80["prefix-affinity"]["ttft_s"]["p95"]


def test_requests_must_be_positive() -> None:
    from tokenfleet_devkit.bench.router import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--requests", "0", "--no-overhead"])
    assert exit_info.value.code == 2
