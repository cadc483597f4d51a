"""load_model_config reads Llama, Mistral and Qwen2 configs in both rope layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tokenfleet_worker.hf_config import ModelConfigError, RopeScaling, load_model_config, parse_model_config

LLAMA: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "eos_token_id": 4,
}


@pytest.mark.unit
def test_llama_defaults() -> None:
    config = parse_model_config(LLAMA)
    assert (config.model_type, config.head_dim, config.num_kv_heads) == ("llama", 16, 2)
    assert (config.q_size, config.kv_size) == (64, 32)
    assert config.rope_theta == 10000.0 and config.rope_scaling == RopeScaling()
    assert not config.qkv_bias and not config.o_proj_bias and not config.tie_word_embeddings
    assert config.eos_token_ids == (4,)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"architectures": ["Qwen2ForCausalLM"]}, "qkv_bias", True),
        ({"architectures": ["Qwen2ForCausalLM"]}, "o_proj_bias", False),
        ({"attention_bias": True}, "o_proj_bias", True),
        ({"head_dim": 32}, "head_dim", 32),
        ({"num_key_value_heads": None}, "num_kv_heads", 4),
        ({"tie_word_embeddings": True}, "tie_word_embeddings", True),
        ({"architectures": ["MistralForCausalLM"], "sliding_window": 4096}, "sliding_window", 4096),
        ({"architectures": ["Qwen2ForCausalLM"], "sliding_window": 4096}, "sliding_window", None),
        ({"dtype": "bfloat16"}, "torch_dtype", "bfloat16"),
        ({"rope_theta": 5e5}, "rope_theta", 5e5),
        ({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}, "rope_theta", 1e6),
        (
            {
                "rope_scaling": {
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "original_max_position_embeddings": 8192,
                }
            },
            "rope_scaling",
            RopeScaling("llama3", 8.0, 1.0, 4.0, 8192),
        ),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling", RopeScaling("linear", 2.0)),
        (
            {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0}},
            "rope_scaling",
            RopeScaling("dynamic", 2.0),
        ),
    ],
)
def test_fields(overrides: dict[str, Any], field: str, expected: object) -> None:
    assert getattr(parse_model_config({**LLAMA, **overrides}), field) == expected


@pytest.mark.unit
def test_eos_ids_merge_config_and_generation_config() -> None:
    config = parse_model_config(LLAMA, {"eos_token_id": [1, 4]})
    assert config.eos_token_ids == (4, 1)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"architectures": ["GPT2LMHeadModel"]}, "unsupported architecture"),
        ({"architectures": None}, "unsupported architecture"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
        ({"num_key_value_heads": 3}, "multiple"),
        ({"hidden_size": "64"}, "hidden_size"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"eos_token_id": "x"}, "token id"),
    ],
)
def test_unsupported_configs_are_clear_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelConfigError, match=message):
        parse_model_config({**LLAMA, **overrides})


def test_missing_directory_and_files(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="does not exist"):
        load_model_config(tmp_path / "nope")
    with pytest.raises(ModelConfigError, match=r"config\.json not found"):
        load_model_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match="not valid JSON"):
        load_model_config(tmp_path)


def test_reads_generation_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [4, 9]}))
    assert load_model_config(tmp_path).eos_token_ids == (4, 9)
