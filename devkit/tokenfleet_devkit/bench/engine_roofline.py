"""Decode step time against the memory-bandwidth bound, and the bandwidth it is measured against.

A decode step must read every weight once plus each sequence's keys and values, so
(weights + KV bytes) / bandwidth is the fastest a step can be; the fraction of that bound a measured
step reaches says how much time goes to anything else (kernel launches, Python, host syncs).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from tokenfleet_worker import cpu_kernels
from tokenfleet_worker.batch import SamplingParams, ScheduledSeq, StepBatch
from tokenfleet_worker.runner import TorchRunner

MODES = ("eager", "graphs", "paged", "fused", "lookahead")
ROUNDS = 3  # rounds of decode steps timed; the best round's mean counts


def best_seconds(device: torch.device, work: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    work()  # warm-up: first-touch page faults and kernel selection
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


def memory_bandwidth(
    device: torch.device, size_bytes: int | None = None, repeats: int = 5
) -> dict[str, float]:
    """Best read bandwidth of a large reduction (decode's access pattern), of a copy (read + write)
    and, on a CPU with the worker's C kernels, of their one-row product over a 512 MiB weight.

    `bytes_per_s` is the highest: the stricter bound for the roofline. On the AVX-512 Xeon the
    product kernel, which prefetches, read 10-25% faster than torch's sum, so a bound from the sum
    alone let a batch-1 step reach "103% of the bound".
    """
    size = size_bytes or (2 * 1024**3 if device.type == "cuda" else 512 * 1024**2)
    values = torch.ones(size // 4, dtype=torch.float32, device=device)
    read = size / best_seconds(device, values.sum, repeats)
    found = {"read_bytes_per_s": read, "copy_bytes_per_s": copy_bandwidth(device, values, repeats)}
    if device.type == "cpu" and cpu_kernels.library() is not None:
        panels = values.view(-1, 4096, cpu_kernels.PANEL)  # any floats will do as a weight
        x = torch.ones(1, 4096)
        found["kernel_bytes_per_s"] = size / best_seconds(
            device, lambda: cpu_kernels.small_linear(x, panels, None), repeats
        )
    return {**found, "bytes_per_s": max(found.values())}


def copy_bandwidth(device: torch.device, values: torch.Tensor, repeats: int) -> float:
    """Bytes read and written per second copying `values` (its target freed on return)."""
    target = torch.empty_like(values)
    return (
        2
        * values.numel()
        * values.element_size()
        / best_seconds(device, lambda: target.copy_(values), repeats)
    )


def weight_bytes_per_step(runner: TorchRunner) -> int:
    """Bytes of weights one decode step reads: all but the embedding table, unless it is the lm head."""
    model = runner.model
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    if model.lm_head is not None:
        total -= model.embed_tokens.weight.numel() * model.embed_tokens.weight.element_size()
    return total


def decode_roofline(
    runner: TorchRunner,
    batch_size: int,
    *,
    context: int,
    bandwidth: float,
    steps: int = 10,
    mode: str = "eager",
) -> dict[str, Any]:
    """Steady decode step time at `batch_size` against (weights + KV read) / memory bandwidth.

    `mode`: "eager"; "graphs", the runner's decode graphs (it must have them) with gathered
    contexts; "paged", the decode graphs with the Triton paged-attention kernel; "fused", with the
    fused Triton kernels as well; "lookahead", the runner's own kernels with each step launched
    before it is asked for.
    """
    with decode_mode(runner, mode):
        step_s = timed_decode_steps(runner, batch_size, context=context, steps=steps)
    config = runner.config
    kv_bytes_per_token = 2 * config.num_layers * config.kv_size * runner.dtype.itemsize
    mean_context = context + steps * ROUNDS // 2
    bytes_per_step = weight_bytes_per_step(runner) + batch_size * mean_context * kv_bytes_per_token
    bound_s = bytes_per_step / bandwidth
    return {
        "batch_size": batch_size,
        "context": context,
        "mode": mode,
        "step_s": step_s,
        "output_tokens_per_s": batch_size / step_s,
        "bytes_per_step": bytes_per_step,
        "bound_step_s": bound_s,
        "fraction_of_bound": bound_s / step_s,
    }


@contextlib.contextmanager
def decode_mode(runner: TorchRunner, mode: str) -> Iterator[None]:
    """Run the runner's decode steps in `mode` (see `decode_roofline`) inside the block; restore after."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    graphs = runner.decode_graphs
    if mode != "eager" and graphs is None:
        raise ValueError("the runner was built without decode graphs")
    if graphs is None:
        yield
        return
    saved = (graphs.paged_kernel, graphs.fused_kernels, graphs.lookahead)
    if mode == "eager":
        runner.decode_graphs = None
    elif mode != "lookahead":
        graphs.paged_kernel, graphs.fused_kernels = mode in ("paged", "fused"), mode == "fused"
    graphs.lookahead = mode == "lookahead"
    try:
        yield
    finally:
        runner.decode_graphs = graphs
        graphs.paged_kernel, graphs.fused_kernels, graphs.lookahead = saved


def timed_decode_steps(
    runner: TorchRunner, batch_size: int, *, context: int, steps: int, repeats: int = ROUNDS
) -> float:
    """Seconds of a decode step of `batch_size` sequences at about `context` tokens each: the best of
    `repeats` rounds' means over `steps` steps. Best-of, as the bandwidth it is compared with is:
    on a shared VM noise only ever adds time, and a mean over one round against a best-of bound
    read the same build anywhere from 70% to 83% of the bound in one afternoon."""
    greedy = SamplingParams(temperature=0.0)
    blocks_per_seq = (context + steps * repeats + runner.block_size) // runner.block_size + 1
    if batch_size * blocks_per_seq > runner.num_blocks:
        raise ValueError(f"KV cache of {runner.num_blocks} blocks is too small for batch {batch_size}")
    tables = [tuple(range(i * blocks_per_seq, (i + 1) * blocks_per_seq)) for i in range(batch_size)]
    prompt = tuple(range(10, 10 + context))
    for seq_id, table in enumerate(tables):
        runner.execute(StepBatch((ScheduledSeq(seq_id, prompt, 0, table, True, greedy),)))

    last = [11] * batch_size

    def step(k: int) -> None:
        # Each step feeds back the tokens of the one before, as an engine does (lookahead relies on it).
        seqs = tuple(ScheduledSeq(i, (last[i],), context + k, t, True, greedy) for i, t in enumerate(tables))
        last[:] = [token.token_id for token in runner.execute(StepBatch(seqs))]

    step(0)  # warm-up (and, with graphs, the capture of this bucket)
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)
    best = float("inf")
    for round_index in range(repeats):
        started = time.perf_counter()
        for k in range(1, steps + 1):
            step(round_index * steps + k)
        if runner.device.type == "cuda":
            torch.cuda.synchronize(runner.device)
        best = min(best, (time.perf_counter() - started) / steps)
    return best
