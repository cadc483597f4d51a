"""Read a Hugging Face checkpoint's config.json (+ generation_config.json) into one frozen config.

Covers the Llama family as written by Llama, Mistral and Qwen2 checkpoints, in both the legacy
layout (`rope_theta` + `rope_scaling`) and transformers 5's (`rope_parameters`). No torch here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}
SUPPORTED_ROPE_TYPES = ("default", "linear", "dynamic", "llama3")


class ModelConfigError(ValueError):
    """The checkpoint directory is missing files or describes a model we cannot run."""


@dataclass(frozen=True)
class RopeScaling:
    rope_type: str = "default"  # default | linear | dynamic | llama3
    factor: float = 1.0
    low_freq_factor: float = 1.0  # llama3 only
    high_freq_factor: float = 4.0  # llama3 only
    original_max_position_embeddings: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: RopeScaling
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool
    o_proj_bias: bool  # Llama's attention_bias also covers o_proj; Qwen2's q/k/v bias does not
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    torch_dtype: str  # the dtype the weights are stored in, e.g. "bfloat16"
    sliding_window: int | None  # recorded, not applied

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim


def read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelConfigError(f"{path.name} not found in {path.parent}") from None
    except json.JSONDecodeError as error:
        raise ModelConfigError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ModelConfigError(f"{path} must hold a JSON object")
    return document


def as_id_tuple(value: object) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise ModelConfigError(f"token id must be an int or a list of ints, got {value!r}")


def parse_rope(raw: dict[str, Any]) -> tuple[float, RopeScaling]:
    """Return (rope_theta, scaling) from either config layout."""
    params = raw.get("rope_parameters")
    if isinstance(params, dict):
        theta = float(params.get("rope_theta", raw.get("rope_theta", 10000.0)))
        scaling_doc: dict[str, Any] | None = params
    else:
        theta = float(raw.get("rope_theta", 10000.0))
        scaling_doc = raw.get("rope_scaling")
    if not scaling_doc:
        return theta, RopeScaling()
    rope_type = str(scaling_doc.get("rope_type", scaling_doc.get("type", "default")))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ModelConfigError(
            f"rope scaling type {rope_type!r} is not supported; supported: {', '.join(SUPPORTED_ROPE_TYPES)}"
        )
    original = scaling_doc.get("original_max_position_embeddings")
    if rope_type == "dynamic":
        log.info("event=rope_dynamic_fixed note=dynamic NTK scaling applied at a fixed factor, as vLLM does")
    return theta, RopeScaling(
        rope_type=rope_type,
        factor=float(scaling_doc.get("factor", 1.0)),
        low_freq_factor=float(scaling_doc.get("low_freq_factor", 1.0)),
        high_freq_factor=float(scaling_doc.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(original) if original is not None else None,
    )


def require_int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ModelConfigError(f"config.json field {key!r} must be a positive integer, got {value!r}")
    return value


def parse_model_config(raw: dict[str, Any], generation: dict[str, Any] | None = None) -> ModelConfig:
    """Pure: build a ModelConfig from config.json (and generation_config.json) contents."""
    architectures = raw.get("architectures") or []
    architecture = next((a for a in architectures if a in SUPPORTED_ARCHITECTURES), None)
    if architecture is None:
        raise ModelConfigError(
            f"unsupported architecture {architectures!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    model_type = SUPPORTED_ARCHITECTURES[architecture]
    if raw.get("hidden_act", "silu") != "silu":
        raise ModelConfigError(f"hidden_act {raw.get('hidden_act')!r} is not supported (only silu)")
    if raw.get("mlp_bias", False):
        raise ModelConfigError("mlp_bias=true is not supported")
    hidden_size = require_int(raw, "hidden_size")
    num_heads = require_int(raw, "num_attention_heads")
    num_kv_heads = int(raw.get("num_key_value_heads") or num_heads)
    if num_heads % num_kv_heads:
        raise ModelConfigError(
            f"num_attention_heads {num_heads} is not a multiple of kv heads {num_kv_heads}"
        )
    head_dim = int(raw.get("head_dim") or hidden_size // num_heads)
    theta, scaling = parse_rope(raw)
    sliding_window = raw.get("sliding_window")
    if model_type == "qwen2" and not raw.get("use_sliding_window", False):
        sliding_window = None
    if sliding_window is not None:
        log.info("event=sliding_window_ignored window=%s note=full attention is used", sliding_window)
    eos_ids = as_id_tuple(raw.get("eos_token_id"))
    if generation:
        eos_ids = tuple(dict.fromkeys(eos_ids + as_id_tuple(generation.get("eos_token_id"))))
    bos = raw.get("bos_token_id")
    dtype = raw.get("torch_dtype") or raw.get("dtype") or "float32"
    return ModelConfig(
        architecture=architecture,
        model_type=model_type,
        vocab_size=require_int(raw, "vocab_size"),
        hidden_size=hidden_size,
        intermediate_size=require_int(raw, "intermediate_size"),
        num_layers=require_int(raw, "num_hidden_layers"),
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2" or bool(raw.get("attention_bias", False)),
        o_proj_bias=model_type != "qwen2" and bool(raw.get("attention_bias", False)),
        bos_token_id=bos if isinstance(bos, int) else None,
        eos_token_ids=eos_ids,
        torch_dtype=str(dtype),
        sliding_window=sliding_window if isinstance(sliding_window, int) else None,
    )


def load_model_config(model_dir: Path) -> ModelConfig:
    """Read `model_dir`/config.json and, when present, generation_config.json."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelConfigError(f"model directory {model_dir} does not exist")
    raw = read_json(model_dir / "config.json")
    generation_path = model_dir / "generation_config.json"
    generation = read_json(generation_path) if generation_path.exists() else None
    return parse_model_config(raw, generation)
