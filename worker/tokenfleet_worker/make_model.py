"""Write a random-weight Hugging Face checkpoint directory (`tokenfleet make-model`).

The directory has the same shape as a real Llama / Mistral / Qwen2 download (config.json,
safetensors, possibly sharded with an index, tokenizer.json, tokenizer_config.json with a chat
template, generation_config.json), so tests and benchmarks exercise the real loading path.
Nothing is downloaded: the tokenizer is a byte-level BPE trained here on built-in text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tokenfleet_worker.make_tokenizer import SPECIAL_TOKENS, write_tokenizer_files

ARCHITECTURES = {
    "llama": ("LlamaForCausalLM", "llama"),
    "mistral": ("MistralForCausalLM", "mistral"),
    "qwen2": ("Qwen2ForCausalLM", "qwen2"),
}
INIT_STD = 0.02


@dataclass(frozen=True)
class Preset:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    dtype: str  # the dtype the weights are stored in


PRESETS: dict[str, Preset] = {
    "tiny": Preset(64, 128, 2, 4, 2, 512, 2048, False, "float32"),
    "small": Preset(384, 1024, 6, 6, 2, 8192, 4096, False, "float32"),
    "100m": Preset(768, 2048, 12, 12, 4, 16384, 4096, False, "float32"),
    "1b": Preset(2048, 8192, 16, 32, 8, 32768, 8192, True, "bfloat16"),
}


def count_parameters(preset: Preset, arch: str = "llama") -> int:
    """Parameter count of a preset, from the tensor shapes make_model writes."""
    return sum(shape.numel() for shape in tensor_shapes(preset, arch).values())


def tensor_shapes(preset: Preset, arch: str) -> dict[str, torch.Size]:
    head_dim = preset.hidden_size // preset.num_attention_heads
    q_dim = preset.num_attention_heads * head_dim
    kv_dim = preset.num_key_value_heads * head_dim
    h, i = preset.hidden_size, preset.intermediate_size
    shapes: dict[str, torch.Size] = {"model.embed_tokens.weight": torch.Size([preset.vocab_size, h])}
    for layer in range(preset.num_hidden_layers):
        p = f"model.layers.{layer}."
        shapes[p + "input_layernorm.weight"] = torch.Size([h])
        shapes[p + "self_attn.q_proj.weight"] = torch.Size([q_dim, h])
        shapes[p + "self_attn.k_proj.weight"] = torch.Size([kv_dim, h])
        shapes[p + "self_attn.v_proj.weight"] = torch.Size([kv_dim, h])
        if arch == "qwen2":
            shapes[p + "self_attn.q_proj.bias"] = torch.Size([q_dim])
            shapes[p + "self_attn.k_proj.bias"] = torch.Size([kv_dim])
            shapes[p + "self_attn.v_proj.bias"] = torch.Size([kv_dim])
        shapes[p + "self_attn.o_proj.weight"] = torch.Size([h, q_dim])
        shapes[p + "post_attention_layernorm.weight"] = torch.Size([h])
        shapes[p + "mlp.gate_proj.weight"] = torch.Size([i, h])
        shapes[p + "mlp.up_proj.weight"] = torch.Size([i, h])
        shapes[p + "mlp.down_proj.weight"] = torch.Size([h, i])
    shapes["model.norm.weight"] = torch.Size([h])
    if not preset.tie_word_embeddings:
        shapes["lm_head.weight"] = torch.Size([preset.vocab_size, h])
    return shapes


def build_config(preset: Preset, arch: str) -> dict[str, Any]:
    """config.json in the (legacy, most widespread) field layout of Hugging Face checkpoints."""
    architecture, model_type = ARCHITECTURES[arch]
    config: dict[str, Any] = {
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_size": preset.hidden_size,
        "intermediate_size": preset.intermediate_size,
        "num_hidden_layers": preset.num_hidden_layers,
        "num_attention_heads": preset.num_attention_heads,
        "num_key_value_heads": preset.num_key_value_heads,
        "head_dim": preset.hidden_size // preset.num_attention_heads,
        "hidden_act": "silu",
        "max_position_embeddings": preset.max_position_embeddings,
        "initializer_range": INIT_STD,
        "rms_norm_eps": 1e-5 if arch != "qwen2" else 1e-6,
        "rope_theta": 500000.0 if arch == "llama" else 1000000.0,
        "rope_scaling": None,
        "tie_word_embeddings": preset.tie_word_embeddings,
        "vocab_size": preset.vocab_size,
        "bos_token_id": SPECIAL_TOKENS.index("<|begin_of_text|>"),
        "eos_token_id": SPECIAL_TOKENS.index("<|eot_id|>"),
        "torch_dtype": preset.dtype,
        "use_cache": True,
    }
    if arch == "llama":
        config.update(attention_bias=False, attention_dropout=0.0, mlp_bias=False, pretraining_tp=1)
    elif arch == "mistral":
        config.update(sliding_window=None, attention_dropout=0.0)
    else:
        config.update(
            use_sliding_window=False, sliding_window=None, max_window_layers=0, attention_dropout=0.0
        )
    return config


def random_tensor(
    name: str, shape: torch.Size, generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    if name.endswith("norm.weight"):
        # Not exactly one, so a loader that forgets a norm weight is caught by the logit tests.
        values = 1.0 + INIT_STD * torch.randn(shape, generator=generator)
    else:
        values = INIT_STD * torch.randn(shape, generator=generator)
    return values.to(dtype)


def split_into_shards(
    shapes: dict[str, torch.Size], num_shards: int, bytes_per_value: int
) -> list[list[str]]:
    """Split tensor names, in order, into `num_shards` groups of roughly equal bytes."""
    total = sum(s.numel() for s in shapes.values()) * bytes_per_value
    target = total / num_shards
    shards: list[list[str]] = [[]]
    shard_bytes = 0
    for name, shape in shapes.items():
        size = shape.numel() * bytes_per_value
        if shards[-1] and shard_bytes + size / 2 > target and len(shards) < num_shards:
            shards.append([])
            shard_bytes = 0
        shards[-1].append(name)
        shard_bytes += size
    while len(shards) < num_shards:  # more shards than tensors allow: empty files are still valid
        shards.append([])
    return shards


def write_weights(
    out_dir: Path,
    shapes: dict[str, torch.Size],
    *,
    seed: int,
    dtype: torch.dtype,
    num_shards: int,
    progress: Callable[[str], None],
) -> None:
    generator = torch.Generator().manual_seed(seed)
    bytes_per_value = torch.empty((), dtype=dtype).element_size()
    shards = split_into_shards(shapes, num_shards, bytes_per_value)
    weight_map: dict[str, str] = {}
    for index, names in enumerate(shards):
        filename = (
            "model.safetensors"
            if num_shards == 1
            else f"model-{index + 1:05d}-of-{num_shards:05d}.safetensors"
        )
        tensors = {name: random_tensor(name, shapes[name], generator, dtype) for name in names}
        save_file(tensors, str(out_dir / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, filename))
        progress(f"wrote {filename} ({len(names)} tensors)")
    if num_shards > 1:
        total_size = sum(shapes[n].numel() for n in shapes) * bytes_per_value
        index_doc = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
        (out_dir / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2) + "\n")


def make_model(
    out_dir: Path,
    *,
    preset: str = "tiny",
    arch: str = "llama",
    seed: int = 0,
    num_shards: int = 1,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write a random-weight checkpoint into `out_dir` (created if needed) and return it."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    report = progress or (lambda _message: None)
    spec = PRESETS[preset]
    if arch == "qwen2" and not spec.tie_word_embeddings and preset in ("tiny", "small"):
        # Small Qwen2 models tie their embeddings; exercising that path is the point of the arch.
        spec = Preset(**{**spec.__dict__, "tie_word_embeddings": True})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = build_config(spec, arch)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    eos_ids = [SPECIAL_TOKENS.index("<|end_of_text|>"), SPECIAL_TOKENS.index("<|eot_id|>")]
    generation_config = {
        "bos_token_id": config["bos_token_id"],
        "eos_token_id": eos_ids,
        "do_sample": True,
        "temperature": 0.6,
        "top_p": 0.9,
    }
    (out_dir / "generation_config.json").write_text(json.dumps(generation_config, indent=2) + "\n")
    started = time.monotonic()
    write_tokenizer_files(out_dir, vocab_size=spec.vocab_size, model_max_length=spec.max_position_embeddings)
    report(f"trained tokenizer ({time.monotonic() - started:.1f}s)")
    shapes = tensor_shapes(spec, arch)
    write_weights(
        out_dir, shapes, seed=seed, dtype=getattr(torch, spec.dtype), num_shards=num_shards, progress=report
    )
    report(f"{arch} {preset}: {count_parameters(spec, arch) / 1e6:.1f}M parameters in {out_dir}")
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tokenfleet make-model",
        description="Write a random-weight Hugging Face checkpoint (config, safetensors, tokenizer).",
    )
    parser.add_argument("out_dir", type=Path, help="directory to write (created if missing)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model size")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="llama", help="config family")
    parser.add_argument("--seed", type=int, default=0, help="weight seed")
    parser.add_argument("--num-shards", type=int, default=1, help="number of safetensors files")
    args = parser.parse_args(argv)
    try:
        make_model(
            args.out_dir,
            preset=args.preset,
            arch=args.arch,
            seed=args.seed,
            num_shards=args.num_shards,
            progress=lambda message: print(message, flush=True),
        )
    except (ValueError, OSError) as error:
        print(f"make-model: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
