"""Performance models: how long one engine step takes, and how many tokens of KV cache a replica holds.

A step computes `num_tokens` new tokens (one per decoding sequence plus any prefill chunk) while
attending over `context_tokens` (the summed context lengths of the batch).

GPU models are derived from the hardware and the model shape (a roofline):

    weight_bytes  = num_params * bytes_per_param
    kv_bytes/tok  = 2 (K and V) * num_layers * num_kv_heads * head_dim * bytes_per_param
    memory time   = (weight_bytes + kv_bytes/tok * context_tokens) / (bandwidth * bandwidth_efficiency)
    compute time  = (2 * num_params * num_tokens + 4 * num_layers * hidden * context_tokens_attended)
                    / (peak_flops * flops_efficiency)
    step seconds  = max(memory time, compute time) + overhead
    KV capacity   = (memory * memory_fraction - weight_bytes) / kv_bytes/tok

Decode steps are memory-bound (weights and KV are read once per step), prefill steps compute-bound.
The attention FLOP term uses `num_tokens * mean context` as the attended pairs, a fair approximation
for chunked prefill mixed with decode. Efficiencies are typical measured fractions (MFU ~0.5 for
prefill, ~0.8 of peak bandwidth for decode kernels).

The CPU model is a straight line fitted to the engine benchmark (`results/engine.json`) when it
exists, `step = base + per_token * num_tokens + per_context_token * context_tokens`, otherwise the
worker's sim-backend defaults (a ~100M-parameter fp32 Llama on 2 cores).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Hardware:
    name: str
    memory_bytes: float
    bandwidth_bytes_per_s: float
    peak_flops: float  # dense bf16
    hourly_cost: float


@dataclass(frozen=True)
class ModelShape:
    name: str
    num_params: float
    num_layers: int
    hidden: int
    num_kv_heads: int
    head_dim: int
    bytes_per_param: int = 2

    @property
    def weight_bytes(self) -> float:
        return self.num_params * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        return 2.0 * self.num_layers * self.num_kv_heads * self.head_dim * self.bytes_per_param


H100 = Hardware("h100", 80e9, 3.35e12, 989e12, hourly_cost=4.0)
L40S = Hardware("l40s", 48e9, 0.864e12, 362e12, hourly_cost=1.4)
LLAMA_3_8B = ModelShape("llama-3-8b", 8.0e9, 32, 4096, 8, 128)


class PerfModel:
    """Step time and KV capacity of one replica; subclasses give the step-time formula."""

    name: str = "model"
    kv_capacity_tokens: int = 0

    def step_seconds(self, num_tokens: int, context_tokens: int) -> float:
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kv_capacity_tokens": self.kv_capacity_tokens}


class RooflineModel(PerfModel):
    def __init__(
        self,
        hardware: Hardware,
        model: ModelShape,
        *,
        overhead_s: float = 0.002,
        bandwidth_efficiency: float = 0.8,
        flops_efficiency: float = 0.5,
        memory_fraction: float = 0.9,
    ) -> None:
        free = hardware.memory_bytes * memory_fraction - model.weight_bytes
        if free <= 0:
            raise ValueError(f"{model.name} does not fit in {hardware.name} memory")
        self.name = f"{hardware.name}/{model.name}"
        self.hardware = hardware
        self.model = model
        self.overhead_s = overhead_s
        self.kv_capacity_tokens = int(free / model.kv_bytes_per_token)
        self._bandwidth = hardware.bandwidth_bytes_per_s * bandwidth_efficiency
        self._flops = hardware.peak_flops * flops_efficiency

    def step_seconds(self, num_tokens: int, context_tokens: int) -> float:
        m = self.model
        memory = (m.weight_bytes + m.kv_bytes_per_token * context_tokens) / self._bandwidth
        # Attention pairs: each new token attends over its sequence; approximate with the batch mean.
        attention = 4.0 * m.num_layers * m.hidden * context_tokens
        compute = (2.0 * m.num_params * num_tokens + attention) / self._flops
        return max(memory, compute) + self.overhead_s

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "formula": "max((weights + kv_per_token*context)/(bw*0.8), (2*params*tokens + 4*L*h*context)"
            "/(peak*0.5)) + overhead",
            "weight_gb": self.model.weight_bytes / 1e9,
            "kv_bytes_per_token": self.model.kv_bytes_per_token,
            "overhead_s": self.overhead_s,
        }


class LinearModel(PerfModel):
    def __init__(
        self,
        name: str,
        base_s: float,
        per_token_s: float,
        per_context_token_s: float,
        kv_capacity_tokens: int,
    ) -> None:
        self.name = name
        self.base_s = base_s
        self.per_token_s = per_token_s
        self.per_context_token_s = per_context_token_s
        self.kv_capacity_tokens = kv_capacity_tokens

    def step_seconds(self, num_tokens: int, context_tokens: int) -> float:
        return self.base_s + self.per_token_s * num_tokens + self.per_context_token_s * context_tokens

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "formula": "base + per_token*tokens + per_context_token*context",
            "base_s": self.base_s,
            "per_token_s": self.per_token_s,
            "per_context_token_s": self.per_context_token_s,
        }


# The worker's sim-backend defaults: ~25 ms a step plus 1.5 ms per batched token on 2 CPU cores.
CPU_DEFAULTS = (0.025, 0.0015, 2e-6)
CPU_KV_CAPACITY_TOKENS = 65_536


@dataclass(frozen=True)
class StepSample:
    num_tokens: int
    context_tokens: int
    step_seconds: float


def fit_linear(samples: Sequence[StepSample]) -> tuple[float, float, float]:
    """Least squares for (base, per_token, per_context_token), clamped to be non-negative."""
    if len(samples) < 3:
        raise ValueError("need at least 3 step samples to fit the CPU model")
    # Normal equations for three unknowns, solved by Cramer's rule: no numpy needed.
    rows = [(1.0, float(s.num_tokens), float(s.context_tokens), s.step_seconds) for s in samples]
    ata = [[sum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
    atb = [sum(r[i] * r[3] for r in rows) for i in range(3)]

    def det(m: list[list[float]]) -> float:
        return (
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        )

    d = det(ata)
    if abs(d) < 1e-12:
        raise ValueError("step samples do not vary enough in tokens and context to fit")
    solution = []
    for col in range(3):
        m = [row[:] for row in ata]
        for i in range(3):
            m[i][col] = atb[i]
        solution.append(max(0.0, det(m) / d))
    return solution[0], solution[1], solution[2]


def _step_sample(item: dict[str, Any]) -> StepSample | None:
    seconds = item.get("step_seconds", item.get("step_s"))
    if not isinstance(seconds, int | float):
        return None
    if "num_tokens" in item or "batch_tokens" in item:
        tokens = int(item.get("num_tokens", item.get("batch_tokens", 0)))
        return StepSample(tokens, int(item.get("context_tokens", 0)), float(seconds))
    if "batch_size" in item:
        # A decode measurement: one new token per sequence, each attending over `context`.
        batch = int(item["batch_size"])
        return StepSample(batch, batch * int(item.get("context", 0)), float(seconds))
    return None


def load_step_samples(path: Path) -> list[StepSample]:
    """Every step measurement found anywhere in the engine benchmark's JSON.

    A measurement is an object with `step_s` (or `step_seconds`) and either `num_tokens`/`batch_tokens`
    with `context_tokens`, or a decode run's `batch_size` and per-sequence `context`.
    """
    samples: list[StepSample] = []
    stack: list[Any] = [json.loads(path.read_text(encoding="utf-8"))]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            sample = _step_sample(item)
            if sample is not None:
                samples.append(sample)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return samples


def cpu_model(engine_results: Path | None = None) -> tuple[LinearModel, str]:
    """The CPU model and where its numbers came from."""
    if engine_results is not None and engine_results.exists():
        try:
            base, per_token, per_context = fit_linear(load_step_samples(engine_results))
            return LinearModel("cpu", base, per_token, per_context, CPU_KV_CAPACITY_TOKENS), str(
                engine_results
            )
        except (ValueError, OSError, AttributeError) as err:
            source = f"defaults ({engine_results} unusable: {err})"
    else:
        source = "defaults (no engine benchmark results)"
    return LinearModel("cpu", *CPU_DEFAULTS, CPU_KV_CAPACITY_TOKENS), source


def gpu_model(name: str) -> RooflineModel:
    hardware = {"h100": H100, "l40s": L40S}.get(name)
    if hardware is None:
        raise ValueError(f"unknown accelerator {name!r}; known: h100, l40s")
    return RooflineModel(hardware, LLAMA_3_8B)
