"""Where a decode step's time goes: host work, graph replay, and the kernels inside it (GPU check).

`python -m tokenfleet_devkit.bench.engine_step_profile MODEL_DIR --modes paged,fused` prints, per
mode and batch size, the roofline step time (as `tokenfleet bench engine` measures it), the replay
time of the step's CUDA graph alone, the host parts timed apart (packing the batch, sampling), and
the kernels one step runs, largest first. Writes step_profile.json to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from tokenfleet_devkit.bench.engine_roofline import decode_mode, decode_roofline, memory_bandwidth
from tokenfleet_worker.batch import SamplingParams, ScheduledSeq
from tokenfleet_worker.decode_graphs import DecodeGraphs, GraphEntry
from tokenfleet_worker.runner import TorchRunner
from tokenfleet_worker.sampling import sample

REPEATS = 50


def mean_seconds(work: Callable[[], object], cuda: bool, repeats: int = REPEATS) -> float:
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def kernel_table(work: Callable[[], object], steps: int = 3) -> dict[str, Any]:
    """Kernels per step, their summed device time, and the 25 largest by time (microseconds)."""
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            work()
        torch.cuda.synchronize()
    per_name: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            per_name[event.name][0] += event.device_time / steps
            per_name[event.name][1] += 1 / steps
    top = sorted(per_name.items(), key=lambda item: -item[1][0])[:25]
    return {
        "kernels_per_step": sum(count for _, count in per_name.values()),
        "kernel_ms": sum(us for us, _ in per_name.values()) / 1e3,
        "top": [{"name": name[:100], "us": round(us, 2), "count": round(n, 1)} for name, (us, n) in top],
    }


def bucket_entry(graphs: DecodeGraphs, batch: int) -> tuple[tuple[int, int, bool, bool], GraphEntry]:
    """The entry the roofline just used for `batch` in the current mode (its longest context)."""
    keys = [key for key in graphs.entries if key[0] >= batch and key[2:] == graphs.kernel_flags()]
    key = min(keys, key=lambda k: (k[0], -k[1]))
    return key, graphs.entries[key]


@torch.inference_mode()
def profile_mode(
    runner: TorchRunner, mode: str, batch: int, context: int, bandwidth: float
) -> dict[str, Any]:
    row = decode_roofline(runner, batch, context=context, bandwidth=bandwidth, steps=30, mode=mode)
    graphs = runner.decode_graphs
    assert graphs is not None
    with decode_mode(runner, mode):
        key, entry = bucket_entry(graphs, batch)
    cuda = runner.device.type == "cuda"
    replay = entry.graph.replay if entry.graph is not None else lambda: graphs.forward(entry.packed, *key[2:])
    greedy = SamplingParams(temperature=0.0)
    table = (0,) * (context // runner.block_size + 1)
    seqs = tuple(ScheduledSeq(i, (11,), context, table, True, greedy) for i in range(batch))
    logits = graphs.forward(entry.packed, *key[2:])
    row |= {
        "bucket": list(key[:2]),
        "replay_ms": mean_seconds(replay, cuda) * 1e3,
        "pack_ms": mean_seconds(lambda: graphs.pack(seqs, *key[:2]), cuda) * 1e3,
        "sample_ms": mean_seconds(lambda: sample(logits[:batch], seqs), cuda) * 1e3,
    }
    if cuda:
        row["kernels"] = kernel_table(replay)
    return row


def print_row(row: dict[str, Any]) -> None:
    print(
        f"[{row['mode']}] batch {row['batch_size']} bucket {row['bucket']}: "
        f"step {row['step_s'] * 1e3:.3f} ms, bound {row['bound_step_s'] * 1e3:.3f} ms "
        f"({row['fraction_of_bound']:.1%}); replay {row['replay_ms']:.3f} ms; "
        f"pack {row['pack_ms']:.3f} ms; sample {row['sample_ms']:.3f} ms",
        flush=True,
    )
    kernels = row.get("kernels")
    if kernels:
        print(f"    {kernels['kernels_per_step']:.0f} kernels, {kernels['kernel_ms']:.3f} ms of kernel time")
        for kernel in kernels["top"][:20]:
            print(f"    {kernel['us']:8.2f} us  x{kernel['count']:5.1f}  {kernel['name']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--modes", default="paged,fused", help="roofline modes to profile (not eager)")
    parser.add_argument("--batches", default="1,32,128")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--kv-cache-bytes", type=int, default=16 * 1024**3)
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    modes = args.modes.split(",")
    runner = TorchRunner(
        args.model,
        device=args.device,
        dtype="bfloat16" if cuda else "float32",
        kv_cache_bytes=args.kv_cache_bytes,
        decode_graphs=True,
        paged_attention="paged" in modes or "fused" in modes,
        fused_kernels="fused" in modes,
    )
    bandwidth = memory_bandwidth(runner.device)["bytes_per_s"]
    print(f"bandwidth {bandwidth / 1e9:.0f} GB/s", flush=True)
    rows = []
    for mode in modes:
        for batch in (int(b) for b in args.batches.split(",")):
            rows.append(profile_mode(runner, mode, batch, args.context, bandwidth))
            print_row(rows[-1])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_profile.json").write_text(json.dumps({"bandwidth": bandwidth, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
