"""The loader fills every parameter from single-file or sharded safetensors and names what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest
import torch
from safetensors.torch import load_file, save_file

from tokenfleet_worker.batch import ScheduledSeq, StepBatch
from tokenfleet_worker.hf_config import ModelConfigError
from tokenfleet_worker.loader import CheckpointError, load_model, parse_dtype
from tokenfleet_worker.make_model import make_model
from tokenfleet_worker.model import DecoderLayer
from tokenfleet_worker.runner import build_step_inputs


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("llama"), preset="tiny", seed=11)


def rewrite_weights(model_dir: Path, edit: dict[str, torch.Tensor | None]) -> None:
    tensors = load_file(model_dir / "model.safetensors")
    for name, value in edit.items():
        if value is None:
            del tensors[name]
        else:
            tensors[name] = value
    save_file(tensors, model_dir / "model.safetensors", metadata={"format": "pt"})


def copy_checkpoint(source: Path, target: Path) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_fused_parameters_hold_the_checkpoint_tensors(llama_dir: Path) -> None:
    model = load_model(llama_dir)
    tensors = load_file(llama_dir / "model.safetensors")
    q, kv = model.config.q_size, model.config.kv_size
    qkv = cast(DecoderLayer, model.layers[1]).self_attn.qkv_proj.weight
    assert torch.equal(qkv[:q], tensors["model.layers.1.self_attn.q_proj.weight"])
    assert torch.equal(qkv[q + kv :], tensors["model.layers.1.self_attn.v_proj.weight"])
    inter = model.config.intermediate_size
    gate_up = cast(DecoderLayer, model.layers[0]).mlp.gate_up_proj.weight
    assert torch.equal(gate_up[inter:], tensors["model.layers.0.mlp.up_proj.weight"])
    assert model.lm_head is not None and torch.equal(model.lm_head.weight, tensors["lm_head.weight"])
    assert not any(p.requires_grad and p.is_meta for p in model.parameters())


def test_sharded_qwen2_checkpoint_matches_transformers(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model_dir = make_model(tmp_path / "q", preset="tiny", arch="qwen2", num_shards=3, seed=5)
    model = load_model(model_dir)
    assert model.lm_head is None  # tied
    tokens = list(range(5, 37))
    config = model.config
    caches = [
        (
            torch.zeros(8, 8, config.num_kv_heads, config.head_dim),
            torch.zeros(8, 8, config.num_kv_heads, config.head_dim),
        )
        for _ in range(config.num_layers)
    ]
    seq = ScheduledSeq(0, tuple(tokens), 0, tuple(range(8)), needs_sample=True)
    inputs = build_step_inputs(StepBatch((seq,)), 8, config.max_position_embeddings)
    with torch.inference_mode():
        ours = model.compute_logits(model(inputs.input_ids, inputs.positions, caches, inputs.meta))
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        expected = reference(torch.tensor([tokens])).logits[0]
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_missing_tensor_is_named(llama_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_checkpoint(llama_dir, tmp_path / "m")
    rewrite_weights(model_dir, {"model.layers.1.mlp.up_proj.weight": None})
    with pytest.raises(CheckpointError, match=r"missing.*layers\.1\.mlp\.gate_up_proj\.weight"):
        load_model(model_dir)


def test_unexpected_tensor_is_named(llama_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_checkpoint(llama_dir, tmp_path / "m")
    rewrite_weights(
        model_dir,
        {
            "model.layers.7.mlp.up_proj.weight": torch.zeros(2, 2),
            "model.layers.0.rotary_emb.inv_freq": torch.zeros(8),
        },
    )
    with pytest.raises(CheckpointError, match=r"unexpected.*model\.layers\.7\.mlp\.up_proj\.weight"):
        load_model(model_dir)


def test_shape_mismatch_is_named(llama_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_checkpoint(llama_dir, tmp_path / "m")
    rewrite_weights(model_dir, {"model.layers.0.self_attn.k_proj.weight": torch.zeros(16, 64)})
    with pytest.raises(CheckpointError, match=r"k_proj\.weight.*\(16, 64\).*\(32, 64\)"):
        load_model(model_dir)


def test_missing_weights_and_shards(llama_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_checkpoint(llama_dir, tmp_path / "m")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no safetensors weights"):
        load_model(model_dir)
    index = {"metadata": {}, "weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"model-00001-of-00002\.safetensors"):
        load_model(model_dir)


def test_unsupported_architecture_is_a_config_error(llama_dir: Path, tmp_path: Path) -> None:
    model_dir = copy_checkpoint(llama_dir, tmp_path / "m")
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "architectures": ["FalconForCausalLM"]}))
    with pytest.raises(ModelConfigError, match="FalconForCausalLM"):
        load_model(model_dir)


@pytest.mark.unit
def test_parse_dtype() -> None:
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="unsupported dtype"):
        parse_dtype("int3")


def test_load_in_bfloat16(llama_dir: Path) -> None:
    model = load_model(llama_dir, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
