"""Load a Hugging Face safetensors checkpoint (single file or sharded via its index) into DecoderModel.

Checkpoint names map onto our parameters, fusing q/k/v and gate/up into single matrices. Every
parameter row range must be written exactly once: missing tensors, unexpected tensors and shape
mismatches are reported by name before the model is used.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from tokenfleet_worker.hf_config import ModelConfig, load_model_config
from tokenfleet_worker.model import DecoderModel

log = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Buffers some older checkpoints carry; they are recomputed from the config.
IGNORED_NAME = re.compile(r".*rotary_emb\.inv_freq$")
LAYER_NAME = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


class CheckpointError(ValueError):
    """The checkpoint's tensors do not match the model its config describes."""


@dataclass(frozen=True)
class Target:
    """Where one checkpoint tensor goes: a parameter and the row range inside it."""

    param: str
    row_start: int
    num_rows: int | None  # None: the whole parameter


def fused_targets(config: ModelConfig) -> dict[str, tuple[str, int, int]]:
    """Per-layer checkpoint suffix -> (our suffix, first row, number of rows) for fused matrices."""
    q, kv, inter = config.q_size, config.kv_size, config.intermediate_size
    return {
        "self_attn.q_proj.weight": ("self_attn.qkv_proj.weight", 0, q),
        "self_attn.k_proj.weight": ("self_attn.qkv_proj.weight", q, kv),
        "self_attn.v_proj.weight": ("self_attn.qkv_proj.weight", q + kv, kv),
        "self_attn.q_proj.bias": ("self_attn.qkv_proj.bias", 0, q),
        "self_attn.k_proj.bias": ("self_attn.qkv_proj.bias", q, kv),
        "self_attn.v_proj.bias": ("self_attn.qkv_proj.bias", q + kv, kv),
        "mlp.gate_proj.weight": ("mlp.gate_up_proj.weight", 0, inter),
        "mlp.up_proj.weight": ("mlp.gate_up_proj.weight", inter, inter),
    }


def map_name(name: str, config: ModelConfig) -> Target | None:
    """Our target for a checkpoint tensor name; None for names we do not know."""
    if name == "lm_head.weight":
        return Target("lm_head.weight", 0, None)
    match = LAYER_NAME.match(name)
    if match:
        layer, suffix = match.groups()
        fused = fused_targets(config).get(suffix)
        if fused is not None:
            our_suffix, row_start, num_rows = fused
            return Target(f"layers.{layer}.{our_suffix}", row_start, num_rows)
        return Target(f"layers.{layer}.{suffix}", 0, None)
    if name.startswith("model."):
        return Target(name.removeprefix("model."), 0, None)
    return None


def checkpoint_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a checkpoint, from the shard index when there is one."""
    index_path = model_dir / INDEX_FILE
    if index_path.exists():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CheckpointError(f"{index_path} is not a valid safetensors index: {error}") from None
        files = [model_dir / name for name in dict.fromkeys(weight_map.values())]
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise CheckpointError(f"shards listed in {INDEX_FILE} are missing: {', '.join(missing)}")
        return files
    if (model_dir / SINGLE_FILE).exists():
        return [model_dir / SINGLE_FILE]
    others = sorted(model_dir.glob("*.safetensors"))
    if others:
        return others
    raise CheckpointError(f"no safetensors weights in {model_dir} (expected {SINGLE_FILE} or {INDEX_FILE})")


def load_weights(model: DecoderModel, model_dir: Path) -> None:
    """Copy every checkpoint tensor into `model`; raise CheckpointError on any mismatch."""
    params = dict(model.named_parameters())
    rows_written: dict[str, int] = dict.fromkeys(params, 0)
    unexpected: list[str] = []
    read_device = str(next(iter(params.values())).device)
    for path in checkpoint_files(model_dir):
        with safe_open(str(path), framework="pt", device=read_device) as shard:
            for name in shard.keys():  # noqa: SIM118 -- safe_open is not a mapping
                if IGNORED_NAME.match(name):
                    continue
                if name == "lm_head.weight" and model.lm_head is None:
                    log.info("event=lm_head_ignored reason=tie_word_embeddings")
                    continue
                target = map_name(name, model.config)
                if target is None or target.param not in params:
                    unexpected.append(name)
                    continue
                copy_into(params[target.param], target, shard.get_tensor(name), name)
                rows_written[target.param] += (
                    params[target.param].shape[0] if target.num_rows is None else (target.num_rows)
                )
    if unexpected:
        raise CheckpointError(f"unexpected tensors in checkpoint: {summarise(unexpected)}")
    incomplete = [name for name, rows in rows_written.items() if rows != params[name].shape[0]]
    if incomplete:
        raise CheckpointError(f"tensors missing from checkpoint for: {summarise(incomplete)}")


def copy_into(param: torch.nn.Parameter, target: Target, tensor: torch.Tensor, name: str) -> None:
    if target.num_rows is None:
        destination = param.data
    else:
        destination = param.data.narrow(0, target.row_start, target.num_rows)
    if tuple(tensor.shape) != tuple(destination.shape):
        raise CheckpointError(
            f"shape mismatch for {name}: checkpoint has {tuple(tensor.shape)}, "
            f"config expects {tuple(destination.shape)}"
        )
    destination.copy_(tensor)


def summarise(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    aliases = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
    }
    if dtype not in aliases:
        raise ValueError(f"unsupported dtype {dtype!r}; choose one of {', '.join(aliases)}")
    return aliases[dtype]


def load_model(
    model_dir: Path, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32"
) -> DecoderModel:
    """Build the model described by `model_dir`/config.json and load its weights, ready for inference."""
    started = time.monotonic()
    model_dir = Path(model_dir)
    config = load_model_config(model_dir)
    torch_dtype = parse_dtype(dtype)
    target_device = torch.device(device)
    model = DecoderModel(config, dtype=torch_dtype, device=target_device)
    load_weights(model, model_dir)
    model.eval()
    num_params = sum(p.numel() for p in model.parameters())
    log.info(
        "event=model_loaded dir=%s arch=%s params=%d device=%s dtype=%s seconds=%.2f",
        model_dir,
        config.architecture,
        num_params,
        target_device,
        torch_dtype,
        time.monotonic() - started,
    )
    return model
