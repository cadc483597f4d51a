"""The engine benchmark's report: its tables and the targets it checks."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tokenfleet_worker.admission import FCFS, SHORTEST_PROMPT_FIRST

TARGET_VS_TRANSFORMERS = 4.0
TARGET_VS_VLLM = 1.0
TARGET_BATCH1_CPU = 0.75
TARGET_BATCH32_GPU = 0.5


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
    for name, row in results["offline"].items():
        if row.get("ratios_vs_vllm"):
            pairs = ", ".join(fmt(r) for r in row["ratios_vs_vllm"])
            console.print(f"{name} vs vLLM, alternating pairs: {pairs} (the table shows their median)")
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
    for column in ("batch", "mode", "step ms", "bound ms", "fraction", "tok/s"):
        roofline.add_column(column, justify="right")
    for row in results["roofline"]:
        if "error" in row:
            roofline.add_row(str(row["batch_size"]), row["mode"], "[red]failed", "-", "-", "-")
            continue
        roofline.add_row(
            str(row["batch_size"]),
            row["mode"],
            fmt(row["step_s"] * 1e3),
            fmt(row["bound_step_s"] * 1e3),
            fmt(row["fraction_of_bound"]),
            fmt(row["output_tokens_per_s"], ".1f"),
        )
    console.print(roofline)
    step_target = results.get("decode_step_target")
    if step_target:
        console.print(step_target_table(step_target))
    admission = results.get("admission")
    if admission:
        console.print(admission_table(admission))


def step_target_table(runs: dict[str, Any]) -> Table:
    table = Table(
        title=f"a {runs['long_prompt_tokens']}-token prompt arriving mid-decode (chunks of up to "
        f"{runs['max_batched_tokens']} tokens; target {runs['target_s'] * 1e3:.0f} ms)"
    )
    for column in ("decode-step target", "ITL p50 ms", "ITL p95 ms", "ITL max ms", "long prompt TTFT ms"):
        table.add_column(column, justify="right")
    for mode in ("off", "on"):
        row = runs[mode]
        table.add_row(
            mode,
            *(
                fmt(row[k] and row[k] * 1e3, ".0f")
                for k in ("itl_p50_s", "itl_p95_s", "itl_max_s", "long_ttft_s")
            ),
        )
    return table


def admission_table(runs: dict[str, Any]) -> Table:
    table = Table(
        title=f"a burst of {runs['requests']} prompts ({runs['prompt_tokens']} tokens, {runs['source']}) "
        f"arriving at once; target: FCFS's median TTFT, {runs['target_s'] * 1e3:.0f} ms"
    )
    for column in ("admission order", "TTFT p50 ms", "TTFT p90 ms", "TTFT max ms", "last done ms", "within"):
        table.add_column(column, justify="right")
    for policy in (FCFS, SHORTEST_PROMPT_FIRST):
        row = runs[policy]
        table.add_row(
            policy,
            *(fmt(row[k] * 1e3, ".0f") for k in ("ttft_p50_s", "ttft_p90_s", "ttft_max_s", "makespan_s")),
            f"{row['within_target']:.0%}",
        )
    return table


def target_checks(results: dict[str, Any], on_cuda: bool) -> list[tuple[str, bool | None]]:
    mixed = results["offline"].get("mixed", {})
    checks: list[tuple[str, bool | None]] = []
    vs_hf = mixed.get("ratio_vs_transformers")
    checks.append(
        (f">= {TARGET_VS_TRANSFORMERS}x transformers (mixed)", None if vs_hf is None else vs_hf >= 4.0)
    )
    vs_vllm = mixed.get("ratio_vs_vllm")
    checks.append((f">= {TARGET_VS_VLLM}x vLLM CPU (mixed)", None if vs_vllm is None else vs_vllm >= 1.0))
    by_batch: dict[int, float] = {}
    for row in results["roofline"]:  # the best mode measured at each batch size
        if "error" in row:
            continue
        by_batch[row["batch_size"]] = max(row["fraction_of_bound"], by_batch.get(row["batch_size"], 0.0))
    if on_cuda and 32 in by_batch:
        checks.append(
            (f">= {TARGET_BATCH32_GPU:.0%} of bound at batch 32", by_batch[32] >= TARGET_BATCH32_GPU)
        )
    elif 1 in by_batch:
        checks.append((f">= {TARGET_BATCH1_CPU:.0%} of bound at batch 1", by_batch[1] >= TARGET_BATCH1_CPU))
    return checks
