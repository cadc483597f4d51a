"""Loaders for the public inference traces in `../shared/traces/` (override with `$TOKENFLEET_TRACES`).

Traces are read in place, never copied into the project. A missing trace raises `TraceMissing` whose
message says where it was looked for, so callers can skip cleanly. Every loader returns arrivals in
seconds from the trace's start, sorted.

Scaling (to fit a trace to the modelled fleet) is explicit and reported by the caller:
- `scale_rate(records, f)`: f < 1 keeps each request with probability f; f > 1 adds copies of each
  request (the fractional part by chance), each copy's arrival jittered by up to `jitter_s`, so
  minute-scale shape and burstiness are kept while the rate grows.
- `scale_lengths(records, f)`: multiplies prompt and output lengths.
"""

from __future__ import annotations

import bisect
import csv
import json
import os
import random
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

AZURE_CODE = "azure2023_AzureLLMInferenceTrace_code.csv"
MOONCAKE_CONVERSATION = "mooncake_fast25_conversation_trace.jsonl"
SERVEGEN_RATE = "servegen_m-large_aggregate_rate_10min.csv"
SERVEGEN_LENGTHS = "servegen_m-large_length_mixture.json"


class TraceMissing(FileNotFoundError):
    """A trace file is absent; the message names the path and the override variable."""


@dataclass(frozen=True)
class TraceRecord:
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class RatePoint:
    start_s: float
    rate_rps: float


def traces_dir() -> Path:
    override = os.environ.get("TOKENFLEET_TRACES")
    if override:
        return Path(override)
    # devkit/tokenfleet_devkit/traces.py -> the repo root's sibling `shared/traces`.
    return Path(__file__).resolve().parents[3] / "shared" / "traces"


def trace_path(name: str) -> Path:
    path = traces_dir() / name
    if not path.is_file():
        raise TraceMissing(f"trace {name} not found at {path} (set TOKENFLEET_TRACES to the traces folder)")
    return path


def _parse_azure_time(text: str) -> datetime:
    # Timestamps carry 7 fractional digits; datetime takes at most 6.
    head, _, fraction = text.strip().partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction or '0')[:6].ljust(6, '0')}")


def load_azure_code(path: Path | None = None) -> list[TraceRecord]:
    with (path or trace_path(AZURE_CODE)).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    times = [_parse_azure_time(r["TIMESTAMP"]) for r in rows]
    start = min(times)
    records = [
        TraceRecord(
            (t - start).total_seconds(), max(1, int(r["ContextTokens"])), max(1, int(r["GeneratedTokens"]))
        )
        for t, r in zip(times, rows, strict=True)
    ]
    return sorted(records, key=lambda r: r.arrival_s)


def load_mooncake(path: Path | None = None) -> list[TraceRecord]:
    records = []
    with (path or trace_path(MOONCAKE_CONVERSATION)).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                item = json.loads(line)
                records.append(
                    TraceRecord(
                        float(item["timestamp"]) / 1000.0,
                        max(1, int(item["input_length"])),
                        max(1, int(item["output_length"])),
                        tuple(int(h) for h in item.get("hash_ids", ())),
                    )
                )
    return sorted(records, key=lambda r: r.arrival_s)


def load_servegen_rate(path: Path | None = None) -> list[RatePoint]:
    with (path or trace_path(SERVEGEN_RATE)).open(newline="", encoding="utf-8") as f:
        return [RatePoint(float(r["timestamp_s"]), float(r["total_rate_rps"])) for r in csv.DictReader(f)]


class LengthSampler:
    """Draws (prompt, output) token counts from the ServeGen pmfs (independently, as published)."""

    def __init__(self, input_pmf: dict[int, float], output_pmf: dict[int, float]) -> None:
        self._inputs, self._input_cdf = self._cdf(input_pmf)
        self._outputs, self._output_cdf = self._cdf(output_pmf)

    @staticmethod
    def _cdf(pmf: dict[int, float]) -> tuple[list[int], list[float]]:
        values = sorted(pmf)
        total, cdf = 0.0, []
        for v in values:
            total += pmf[v]
            cdf.append(total)
        return values, [c / total for c in cdf]

    def sample(self, rng: random.Random) -> tuple[int, int]:
        i = min(bisect.bisect_left(self._input_cdf, rng.random()), len(self._inputs) - 1)
        o = min(bisect.bisect_left(self._output_cdf, rng.random()), len(self._outputs) - 1)
        return max(1, self._inputs[i]), max(1, self._outputs[o])

    @property
    def mean_lengths(self) -> tuple[float, float]:
        def mean(values: list[int], cdf: list[float]) -> float:
            prev, total = 0.0, 0.0
            for v, c in zip(values, cdf, strict=True):
                total += v * (c - prev)
                prev = c
            return total

        return mean(self._inputs, self._input_cdf), mean(self._outputs, self._output_cdf)


def load_servegen_lengths(path: Path | None = None) -> LengthSampler:
    data = json.loads((path or trace_path(SERVEGEN_LENGTHS)).read_text(encoding="utf-8"))
    fields = data["fields"]
    return LengthSampler(
        {int(k): float(v) for k, v in fields["input_tokens"].items()},
        {int(k): float(v) for k, v in fields["output_tokens"].items()},
    )


def servegen_requests(
    rate: list[RatePoint], lengths: LengthSampler, duration_s: float, rate_scale: float, seed: int = 0
) -> list[TraceRecord]:
    """Poisson arrivals following the 10-minute rate curve (times `rate_scale`), lengths from the mixture."""
    rng = random.Random(seed)
    records: list[TraceRecord] = []
    for i, point in enumerate(rate):
        if point.start_s >= duration_s:
            break
        end = min(rate[i + 1].start_s if i + 1 < len(rate) else point.start_s + 600.0, duration_s)
        lam = point.rate_rps * rate_scale
        t = point.start_s
        while lam > 0:
            t += rng.expovariate(lam)
            if t >= end:
                break
            prompt, output = lengths.sample(rng)
            records.append(TraceRecord(t, prompt, output))
    return records


def scale_rate(
    records: list[TraceRecord], factor: float, seed: int = 0, jitter_s: float = 1.0
) -> list[TraceRecord]:
    if factor <= 0:
        raise ValueError("rate scale must be positive")
    rng = random.Random(seed)
    out: list[TraceRecord] = []
    for r in records:
        copies = int(factor) + (1 if rng.random() < factor - int(factor) else 0)
        for c in range(copies):
            # The first copy keeps its time (so factor 1 is the identity); extra copies are jittered and
            # get their own prefix ids, since they are different users' prompts.
            if c == 0:
                out.append(r)
            else:
                hashes = tuple(h * 64 + c for h in r.hash_ids)
                out.append(
                    replace(r, arrival_s=max(0.0, r.arrival_s + rng.uniform(0, jitter_s)), hash_ids=hashes)
                )
    return sorted(out, key=lambda x: x.arrival_s)


def scale_lengths(records: list[TraceRecord], factor: float) -> list[TraceRecord]:
    return [
        replace(
            r,
            prompt_tokens=max(1, round(r.prompt_tokens * factor)),
            output_tokens=max(1, round(r.output_tokens * factor)),
        )
        for r in records
    ]
