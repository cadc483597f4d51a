"""The measured runs of the engine benchmark: our engine and transformers `generate`.

Each run takes the same `BenchRequest`s and returns a flat dict of numbers for the table and JSON.
Throughput counts only the output tokens the requests asked for, so a static batch padded to its
longest member gets no credit for the padding.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import torch

from tokenfleet_devkit.bench.engine_workload import BenchRequest, percentile
from tokenfleet_worker.admission import FCFS
from tokenfleet_worker.batch import SamplingParams
from tokenfleet_worker.config import EngineConfig
from tokenfleet_worker.engine import Engine
from tokenfleet_worker.runner import TorchRunner
from tokenfleet_worker.tokenizer import load_tokenizer_bundle


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency_stats(ttfts: list[float], gaps: list[float]) -> dict[str, float | None]:
    return {
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p95_s": percentile(ttfts, 95),
        "itl_p50_s": percentile(gaps, 50),
        "itl_p95_s": percentile(gaps, 95),
    }


def make_engine(
    runner: TorchRunner,
    model_dir: Path,
    max_num_seqs: int,
    max_batched_tokens: int,
    decode_step_target_s: float | None = None,
    scheduling_policy: str = FCFS,
) -> Engine:
    config = EngineConfig(
        decode_step_target_s=decode_step_target_s,
        scheduling_policy=scheduling_policy,
        max_num_seqs=max_num_seqs,
        max_batched_tokens=max_batched_tokens,
        block_size=runner.block_size,
        max_model_len=runner.max_model_len,
        max_waiting=1_000_000,
        enable_prefix_caching=False,  # random prompts share nothing; keep the work identical to the baselines
    )
    return Engine(config, runner, load_tokenizer_bundle(model_dir))


def run_engine(engine: Engine, requests: list[BenchRequest], *, online: bool) -> dict[str, Any]:
    """Drive `engine.step()` until every request finishes; arrivals are honoured when `online`."""
    pending = sorted(requests, key=lambda r: r.arrival_s)
    arrival: dict[str, float] = {}
    last_token: dict[str, float] = {}
    ttfts: list[float] = []
    gaps: list[float] = []
    num_output = 0
    start = time.perf_counter()
    while pending or engine.has_unfinished():
        now = time.perf_counter()
        while pending and (not online or start + pending[0].arrival_s <= now):
            request = pending.pop(0)
            sampling = SamplingParams(max_tokens=request.output_len, temperature=0.0, ignore_eos=True)
            engine.add_request(request.request_id, list(request.prompt_ids), sampling)
            arrival[request.request_id] = start + request.arrival_s if online else now
        if not engine.has_unfinished():
            time.sleep(max(0.0, start + pending[0].arrival_s - time.perf_counter()))
            continue
        outputs = engine.step()
        now = time.perf_counter()
        for output in outputs:
            if not output.token_ids:
                continue
            num_output += len(output.token_ids)
            previous = last_token.get(output.request_id)
            if previous is None:
                ttfts.append(now - arrival[output.request_id])
            else:
                gaps.append(now - previous)
            last_token[output.request_id] = now
    elapsed = time.perf_counter() - start
    expected = sum(r.output_len for r in requests)
    if num_output != expected:
        raise RuntimeError(f"engine produced {num_output} output tokens, expected {expected}")
    return {
        "output_tokens": num_output,
        "seconds": elapsed,
        "output_tokens_per_s": num_output / elapsed,
        **latency_stats(ttfts, gaps),
        "peak_rss_mib": peak_rss_mib(),
    }


def run_transformers(
    model_dir: Path, requests: list[BenchRequest], *, batch_size: int, device: str, dtype: torch.dtype
) -> dict[str, Any]:
    """Hugging Face `generate` with static batches: each batch runs until its longest request ends."""
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model = model.to(torch.device(device)).eval()
    pad_id = 0
    start = time.perf_counter()
    for first in range(0, len(requests), batch_size):
        batch = requests[first : first + batch_size]
        width = max(len(r.prompt_ids) for r in batch)
        # Left padding, as decoder-only generation needs.
        ids = torch.tensor([[pad_id] * (width - len(r.prompt_ids)) + list(r.prompt_ids) for r in batch])
        mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in batch])
        new_tokens = max(r.output_len for r in batch)
        with torch.inference_mode():
            model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
            )
    elapsed = time.perf_counter() - start
    num_output = sum(r.output_len for r in requests)
    return {
        "output_tokens": num_output,
        "seconds": elapsed,
        "output_tokens_per_s": num_output / elapsed,
        "batch_size": batch_size,
        "peak_rss_mib": peak_rss_mib(),
    }
