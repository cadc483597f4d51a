"""make_model writes a complete Hugging Face checkpoint directory from nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open
from tokenizers import Tokenizer

from tokenfleet_worker.make_model import PRESETS, count_parameters, main, make_model, tensor_shapes
from tokenfleet_worker.make_tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS


@pytest.mark.unit
@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [("tiny", 0.0, 1e6), ("small", 10e6, 20e6), ("100m", 90e6, 115e6), ("1b", 0.9e9, 1.3e9)],
)
def test_preset_sizes(preset: str, low: float, high: float) -> None:
    assert low <= count_parameters(PRESETS[preset]) <= high


@pytest.mark.unit
def test_qwen2_shapes_have_qkv_bias_and_llama_does_not() -> None:
    qwen = tensor_shapes(PRESETS["tiny"], "qwen2")
    llama = tensor_shapes(PRESETS["tiny"], "llama")
    assert "model.layers.0.self_attn.k_proj.bias" in qwen
    assert not any(name.endswith("bias") for name in llama)


def test_tiny_checkpoint_files(tmp_path: Path) -> None:
    out = make_model(tmp_path / "m", preset="tiny")
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    } <= names
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer.get_vocab_size() <= config["vocab_size"]
    text = "Hello, fleet! naïve 東京 🙂 def f(x): return x"
    encoding = tokenizer.encode(text)
    assert encoding.ids[0] == config["bos_token_id"]
    assert tokenizer.decode(encoding.ids) == text
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == CHAT_TEMPLATE
    assert tokenizer.token_to_id(tokenizer_config["eos_token"]) == config["eos_token_id"]
    generation = json.loads((out / "generation_config.json").read_text())
    assert SPECIAL_TOKENS.index("<|end_of_text|>") in generation["eos_token_id"]
    with safe_open(str(out / "model.safetensors"), framework="pt") as weights:
        embed = weights.get_tensor("model.embed_tokens.weight")
    assert embed.shape == (config["vocab_size"], config["hidden_size"])
    assert 0.015 < float(embed.std()) < 0.025


def test_seed_changes_weights_and_same_seed_repeats(tmp_path: Path) -> None:
    def embedding(seed: int, name: str) -> list[float]:
        out = make_model(tmp_path / name, preset="tiny", seed=seed)
        with safe_open(str(out / "model.safetensors"), framework="pt") as weights:
            return weights.get_tensor("model.norm.weight").tolist()

    assert embedding(1, "a") == embedding(1, "b")
    assert embedding(1, "a") != embedding(2, "c")


def test_sharded_checkpoint_has_index_covering_every_tensor(tmp_path: Path) -> None:
    out = make_model(tmp_path / "m", preset="tiny", arch="qwen2", num_shards=3)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert not (out / "model.safetensors").exists()
    stored: set[str] = set()
    for name in files:
        with safe_open(str(out / name), framework="pt") as weights:
            stored |= set(weights.keys())
    assert (
        stored
        == set(index["weight_map"])
        == set(tensor_shapes(PRESETS["tiny"], "qwen2")) - {"lm_head.weight"}
    )


def test_cli_writes_model_and_reports_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "m"), "--preset", "tiny", "--arch", "mistral"]) == 0
    assert "parameters" in capsys.readouterr().out
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "mistral"


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path / "m"), "--preset", "huge"])
    assert main([str(tmp_path / "m"), "--num-shards", "0"]) == 2
    assert "num_shards" in capsys.readouterr().err
