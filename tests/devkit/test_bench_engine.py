"""The engine benchmark: its workloads and statistics, and a `--smoke` run end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tokenfleet_devkit.bench.engine_workload import (
    mixed_requests,
    percentile,
    trace_requests,
    with_arrivals,
)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([3.0], 95, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
    ],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


@pytest.mark.unit
def test_mixed_requests_are_seeded_and_in_range() -> None:
    requests = mixed_requests(50, vocab_size=100, first_id=5, seed=3)
    assert requests == mixed_requests(50, vocab_size=100, first_id=5, seed=3)
    assert all(16 <= len(r.prompt_ids) <= 256 and 16 <= r.output_len <= 256 for r in requests)
    assert all(5 <= t < 100 for r in requests for t in r.prompt_ids)
    assert len({r.request_id for r in requests}) == 50


@pytest.mark.unit
def test_arrivals_are_increasing_at_about_the_rate() -> None:
    timed = with_arrivals(mixed_requests(400, vocab_size=50, first_id=1), rate_per_s=4.0)
    arrivals = [r.arrival_s for r in timed]
    assert arrivals == sorted(arrivals) and arrivals[0] == 0.0
    assert arrivals[-1] / 399 == pytest.approx(0.25, rel=0.2)


def test_trace_requests_fit_the_context() -> None:
    requests, scale = trace_requests(20, vocab_size=300, first_id=5, max_len=512)
    assert len(requests) == 20 and 0 < scale <= 1.0
    assert all(len(r.prompt_ids) + r.output_len <= 512 for r in requests)


def test_smoke_run_writes_results(tmp_path: Path) -> None:
    from tokenfleet_devkit.bench.engine import main

    assert main(["--smoke", "--results", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "engine.json").read_text())
    mixed = results["offline"]["mixed"]
    assert mixed["tokenfleet"]["output_tokens"] > 0
    assert mixed["transformers"]["output_tokens"] == mixed["tokenfleet"]["output_tokens"]
    assert mixed["ratio_vs_transformers"] > 0
    assert "skipped" in mixed["vllm"]
    assert results["online"]["ttft_p50_s"] > 0 and results["online"]["itl_p95_s"] > 0
    assert results["roofline"][0]["batch_size"] == 1 and results["roofline"][0]["fraction_of_bound"] > 0
    step_target = results["decode_step_target"]
    assert step_target["target_s"] > 0 and step_target["long_prompt_tokens"] == 256
    for mode in ("off", "on"):  # both runs finished the long prompt and timed the decoders' gaps
        assert step_target[mode]["long_ttft_s"] > 0 and step_target[mode]["itl_max_s"] > 0
    admission = results["admission"]
    assert admission["requests"] == 6 and admission["target_s"] > 0
    for policy in ("fcfs", "shortest-prompt-first"):
        by_length = sorted(admission[policy]["ttft_by_prompt_tokens"])
        assert len(by_length) == 6 and all(ttft > 0 for _, ttft in by_length)
    # Shortest first: the shortest prompt's first token comes before the longest one's.
    by_length = sorted(admission["shortest-prompt-first"]["ttft_by_prompt_tokens"])
    assert by_length[0][1] < by_length[-1][1]


def test_decode_roofline_measures_eager_and_static_decode(tmp_path: Path) -> None:
    from tokenfleet_devkit.bench.engine_roofline import decode_roofline
    from tokenfleet_worker.make_model import make_model
    from tokenfleet_worker.runner import TorchRunner

    model_dir = make_model(tmp_path / "tiny", preset="tiny")
    runner = TorchRunner(model_dir, kv_cache_bytes=16 * 1024**2, decode_graphs=True)
    rows = [
        decode_roofline(runner, 2, context=20, bandwidth=1e10, steps=3, mode=mode)
        for mode in ("eager", "graphs", "lookahead")
    ]
    assert [row["mode"] for row in rows] == ["eager", "graphs", "lookahead"]
    assert all(row["step_s"] > 0 and row["fraction_of_bound"] > 0 for row in rows)
    graphs = runner.decode_graphs
    assert graphs is not None and len(graphs.entries) == 1
    # The steps feed back their tokens, so the guessed steps are the steps asked for.
    assert graphs.lookahead_used >= 2 and not graphs.lookahead and not graphs.paged_kernel
    with pytest.raises(ValueError, match="mode must be one of"):
        decode_roofline(runner, 1, context=8, bandwidth=1e10, mode="fast")
    plain = TorchRunner(model_dir, kv_cache_bytes=16 * 1024**2)
    with pytest.raises(ValueError, match="without decode graphs"):
        decode_roofline(plain, 1, context=8, bandwidth=1e10, mode="graphs")


def test_step_profile_splits_host_and_replay_time(tmp_path: Path) -> None:
    import json

    from tokenfleet_devkit.bench import engine_step_profile
    from tokenfleet_worker.make_model import make_model

    model_dir = make_model(tmp_path / "tiny", preset="tiny")
    args = ["--device", "cpu", "--modes", "graphs", "--batches", "1,3", "--context", "20"]
    args += ["--kv-cache-bytes", str(16 * 1024**2), "--out", str(tmp_path)]
    assert engine_step_profile.main([str(model_dir), *args]) == 0
    rows = json.loads((tmp_path / "step_profile.json").read_text())["rows"]
    assert [(row["mode"], row["batch_size"], row["bucket"]) for row in rows] == [
        # 20 + 3 rounds of 30 roofline steps: up to 110 positions, 7 blocks of 16, bucketed to 8
        ("graphs", 1, [1, 8]),
        ("graphs", 3, [3, 8]),
    ]
    assert all(row["replay_ms"] > 0 and row["pack_ms"] > 0 and row["sample_ms"] > 0 for row in rows)


def test_decode_step_time_is_the_best_rounds_mean(tmp_path: Path) -> None:
    """A round slowed by a noisy neighbour does not count: the best round's mean is the step time."""
    from tokenfleet_devkit.bench.engine_roofline import timed_decode_steps
    from tokenfleet_worker.make_model import make_model
    from tokenfleet_worker.runner import TorchRunner

    runner = TorchRunner(make_model(tmp_path / "tiny", preset="tiny"), kv_cache_bytes=16 * 1024**2)
    real_execute = runner.execute
    calls = [0]
    # 2 prefills + 1 warm-up step come first; then rounds of 3 steps. Slow only the first round.
    slow_calls = range(3, 6)

    def execute(batch):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] - 1 in slow_calls:
            time.sleep(0.2)
        return real_execute(batch)

    runner.execute = execute  # type: ignore[method-assign]
    step_s = timed_decode_steps(runner, 2, context=8, steps=3, repeats=3)
    assert calls[0] == 2 + 1 + 9
    assert step_s < 0.1
