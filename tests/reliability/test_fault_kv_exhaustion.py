"""KV cache exhausted inside a real torch worker by concurrent long requests: the scheduler preempts
(and later recomputes) sequences instead of failing or crashing, every request finishes in full, and
the worker still serves afterwards.

(The scheduler's preemption rules alone: tests/worker/test_scheduler.py; preempted-equals-unpreempted
output: tests/worker/test_engine.py::test_batched_chunked_prefix_cached_preempted_equals_one_at_a_time.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.reliability import report
from tests.router.conftest import MODEL
from tests.router.processes import metric_value, running, start_worker

pytestmark = pytest.mark.slow

KV_CACHE = "128KiB"  # 16 blocks of 16 tokens for the tiny model: room for about 2 of these requests
NUM_REQUESTS = 6
MAX_TOKENS = 96
PROMPT = " ".join(f"word{i}" for i in range(5))  # ~30 tokens: many are admitted, then all grow


def test_kv_exhaustion_preempts_and_every_request_finishes(model_dir: Path, log_dir: Path) -> None:
    figures = report.ScenarioFigures("kv_cache_exhausted")
    worker = start_worker(model_dir, log_dir, "--kv-cache-bytes", KV_CACHE, backend="torch")
    with running(worker), ThreadPoolExecutor(NUM_REQUESTS) as pool:
        worker.wait_ready()
        total_blocks = metric_value(
            httpx.get(worker.url + "/metrics").text, "tokenfleet_kv_cache_blocks_total"
        )
        client = openai.OpenAI(base_url=worker.url + "/v1", api_key="none", max_retries=0, timeout=120)

        def long_request(i: int) -> openai.types.Completion:
            return client.completions.create(
                model=MODEL,
                prompt=f"{i} {PROMPT}",
                max_tokens=MAX_TOKENS,
                temperature=0,
                extra_body={"ignore_eos": True},  # every sequence grows to its full length
            )

        answers = list(pool.map(long_request, range(NUM_REQUESTS), timeout=180))
        figures.faults_injected += 1
        usage = [a.usage for a in answers]
        assert all(u is not None for u in usage)
        needed_blocks = sum(-(-(u.prompt_tokens + u.completion_tokens) // 16) for u in usage if u)
        assert needed_blocks > 2 * total_blocks, "the requests would not exhaust the cache"
        assert [a.choices[0].finish_reason for a in answers] == ["length"] * NUM_REQUESTS
        assert all(u and u.completion_tokens == MAX_TOKENS for u in usage)

        metrics = httpx.get(worker.url + "/metrics").text
        preemptions = metric_value(metrics, "tokenfleet_preemptions_total")
        assert preemptions >= 1, "the cache was never exhausted"
        assert worker.process.poll() is None
        again = client.completions.create(model=MODEL, prompt="still serving", max_tokens=4)
        assert again.choices[0].finish_reason in ("length", "stop")
        load = httpx.get(worker.url + "/load").json()
        assert (load["running"], load["waiting"], load["free_blocks"]) == (0, 0, load["total_blocks"])
        figures.faults_survived += 1
        figures.count("completed", NUM_REQUESTS + 1)
        figures.details = {
            "kv_blocks": total_blocks,
            "blocks_needed": needed_blocks,
            "preemptions": preemptions,
        }
    report.write(figures)
