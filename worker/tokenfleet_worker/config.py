"""Worker settings: one frozen config per concern, each built by a pure function.

`build_worker_config` merges command-line values (None when not given), `TOKENFLEET_WORKER_*`
environment variables and defaults, in that order of precedence, and validates them.
`build_engine_config` then fixes what depends on the loaded model and the KV-cache size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenfleet_worker.admission import FCFS, POLICIES, check_policy

ENV_PREFIX = "TOKENFLEET_WORKER_"
BACKENDS = ("torch", "sim")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class EngineConfig:
    max_num_seqs: int = 64
    max_batched_tokens: int = 2048  # token budget of one step (prefill chunks + decodes)
    block_size: int = 16
    max_model_len: int = 2048  # prompt + output tokens of one sequence
    max_waiting: int = 256  # queued requests before new ones get 429
    enable_prefix_caching: bool = True
    # Target seconds of a step that carries decodes: prefill chunks are cut to keep it (step_budget.py).
    decode_step_target_s: float | None = None
    scheduling_policy: str = FCFS  # the waiting queue's admission order (admission.py)

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_batched_tokens", "block_size", "max_model_len", "max_waiting"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.decode_step_target_s is not None and self.decode_step_target_s <= 0:
            raise ValueError(f"decode_step_target_s must be positive, got {self.decode_step_target_s}")
        check_policy(self.scheduling_policy)


@dataclass(frozen=True)
class WorkerConfig:
    model: Path
    served_model_names: tuple[str, ...]
    backend: str = "torch"
    host: str = "0.0.0.0"
    port: int = 8000
    device: str = "cpu"
    dtype: str = "float32"
    max_num_seqs: int = 64
    max_batched_tokens: int = 2048
    decode_step_target_ms: float | None = None  # None: prefill chunks fill max_batched_tokens
    scheduling_policy: str = FCFS
    block_size: int = 16
    max_model_len: int | None = None  # None: the model's own limit
    max_waiting: int = 256
    enable_prefix_caching: bool = True
    kv_cache_bytes: int | None = None
    gpu_memory_utilization: float = 0.9
    decode_graphs: bool | None = None  # torch backend: decode steps replayed as CUDA graphs; None: on CUDA
    paged_attention: bool | None = None  # with decode_graphs: the Triton kernel; None: where Triton runs
    fused_kernels: bool = False  # with paged_attention: fused Triton norm/rope/cache/activation
    lookahead_decode: bool = False  # with decode_graphs: launch greedy decode steps ahead
    cpu_kernels: bool | None = None  # torch on CPU: the C decode kernels; None: wherever they build
    drain_timeout_s: float = 30.0
    sim_profile: Path | None = None
    sim_num_blocks: int = 2048
    max_body_bytes: int = 4 * 1024 * 1024
    log_level: str = "info"

    def decode_path(self, triton_available: bool) -> tuple[bool, bool]:
        """(decode graphs, paged kernel) after defaults: both on a CUDA device where Triton runs, as
        eager decoding reaches only 4-6% of the GPU's memory bandwidth (engine bench, H200)."""
        cuda = self.device.startswith("cuda")
        graphs = cuda if self.decode_graphs is None else self.decode_graphs
        paged = graphs and cuda and triton_available if self.paged_attention is None else self.paged_attention
        return graphs, paged


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_bytes(text: str) -> int:
    """'2GiB', '512MB', '1048576' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _BYTE_UNITS:
        raise ValueError(f"not a byte size: {text!r} (use e.g. 536870912, 512MiB or 2GB)")
    return int(float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()])


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "model": Path,
    "backend": str,
    "host": str,
    "port": int,
    "device": str,
    "dtype": str,
    "max_num_seqs": int,
    "max_batched_tokens": int,
    "decode_step_target_ms": float,
    "scheduling_policy": str,
    "block_size": int,
    "max_model_len": int,
    "max_waiting": int,
    "enable_prefix_caching": _parse_bool,
    "kv_cache_bytes": parse_bytes,
    "gpu_memory_utilization": float,
    "decode_graphs": _parse_bool,
    "paged_attention": _parse_bool,
    "fused_kernels": _parse_bool,
    "lookahead_decode": _parse_bool,
    "cpu_kernels": _parse_bool,
    "drain_timeout_s": float,
    "sim_profile": Path,
    "sim_num_blocks": int,
    "max_body_bytes": parse_bytes,
    "log_level": str,
}


def _pick(name: str, args: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    value = args.get(name)
    if value is not None:
        return _PARSERS[name](value) if isinstance(value, str) else value
    env_value = env.get(ENV_PREFIX + name.upper())
    if env_value not in (None, ""):
        try:
            return _PARSERS[name](env_value)
        except ValueError as err:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}: {err}") from None
    return None


def build_worker_config(args: Mapping[str, Any], env: Mapping[str, str]) -> WorkerConfig:
    """Merge CLI values over environment over defaults; raise ValueError naming the bad setting."""
    values = {name: _pick(name, args, env) for name in _PARSERS}
    if values["model"] is None:
        raise ValueError(f"--model is required (a local Hugging Face model directory, or {ENV_PREFIX}MODEL)")
    names = args.get("served_model_name") or env.get(ENV_PREFIX + "SERVED_MODEL_NAME")
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    served = tuple(names) if names else (values["model"].name or str(values["model"]),)
    given = {k: v for k, v in values.items() if v is not None}
    config = WorkerConfig(served_model_names=served, **given)
    _validate(config)
    return config


def _validate(config: WorkerConfig) -> None:
    if config.backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
    if config.dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    if not 0 <= config.port < 65536:
        raise ValueError(f"--port must be in 0..65535, got {config.port}")
    if not 0.0 < config.gpu_memory_utilization <= 1.0:
        raise ValueError("--gpu-memory-utilization must be in (0, 1]")
    if config.drain_timeout_s < 0:
        raise ValueError("--drain-timeout must not be negative")
    if config.kv_cache_bytes is not None and config.kv_cache_bytes <= 0:
        raise ValueError("--kv-cache-bytes must be positive")
    for name in ("max_num_seqs", "max_batched_tokens", "block_size", "max_waiting", "sim_num_blocks"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if config.max_model_len is not None and config.max_model_len < 2:
        raise ValueError("--max-model-len must be at least 2")
    if config.decode_step_target_ms is not None and config.decode_step_target_ms <= 0:
        raise ValueError("--decode-step-target-ms must be positive")
    if config.scheduling_policy not in POLICIES:
        raise ValueError(f"--scheduling-policy must be one of {', '.join(POLICIES)}")


def build_engine_config(
    worker: WorkerConfig, *, model_max_len: int, num_blocks: int, block_size: int
) -> EngineConfig:
    """The engine's limits: the context is capped by the model, the CLI and what the KV cache holds."""
    cache_tokens = num_blocks * block_size
    max_model_len = min(model_max_len, cache_tokens)
    if worker.max_model_len is not None:
        if worker.max_model_len > model_max_len:
            raise ValueError(
                f"--max-model-len {worker.max_model_len} exceeds the model's limit of {model_max_len}"
            )
        max_model_len = min(max_model_len, worker.max_model_len)
    return EngineConfig(
        max_num_seqs=worker.max_num_seqs,
        max_batched_tokens=worker.max_batched_tokens,
        block_size=block_size,
        max_model_len=max_model_len,
        max_waiting=worker.max_waiting,
        enable_prefix_caching=worker.enable_prefix_caching,
        decode_step_target_s=None
        if worker.decode_step_target_ms is None
        else worker.decode_step_target_ms / 1000,
        scheduling_policy=worker.scheduling_policy,
    )
