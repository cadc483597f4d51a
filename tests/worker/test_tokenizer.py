"""Tokenizer files: special tokens, EOS ids from generation_config, chat template in a sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenfleet_worker.tokenizer import ChatTemplateError, TokenizerBundle, load_tokenizer_bundle

from .model_dir_helpers import write_sim_model_dir

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sim_model_dir(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def bundle(model_dir: Path) -> TokenizerBundle:
    return load_tokenizer_bundle(model_dir)


def test_eos_ids_come_from_generation_config_and_tokens(bundle: TokenizerBundle) -> None:
    assert bundle.tokenizer.token_to_id("<|eot_id|>") in bundle.eos_token_ids
    assert bundle.eos_token == "<|eot_id|>"
    assert bundle.bos_token == "<|begin_of_text|>"


def test_chat_template_renders_with_generation_prompt(bundle: TokenizerBundle) -> None:
    text = bundle.apply_chat_template([{"role": "user", "content": "Hi there"}])
    assert text.startswith("<|begin_of_text|>")
    assert "Hi there<|eot_id|>" in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = bundle.encode_chat([{"role": "user", "content": "Hi there"}])
    bos_id = bundle.tokenizer.token_to_id("<|begin_of_text|>")
    assert bos_id is not None and ids.count(bos_id) == 1


def test_encode_adds_bos_for_completions(bundle: TokenizerBundle) -> None:
    ids = bundle.encode("hello")
    assert ids[0] == bundle.tokenizer.token_to_id("<|begin_of_text|>")
    assert bundle.decode(ids) == "hello"


def test_template_cannot_reach_python_internals(model_dir: Path, tmp_path: Path) -> None:
    for name in ("tokenizer.json", "config.json", "generation_config.json"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config["chat_template"] = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    evil = load_tokenizer_bundle(tmp_path)
    with pytest.raises(ChatTemplateError):
        evil.apply_chat_template([{"role": "user", "content": "x"}])


def test_template_raise_exception_becomes_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    for name in ("tokenizer.json",):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    template = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    bundle = load_tokenizer_bundle(tmp_path)
    with pytest.raises(ChatTemplateError, match="first must be user"):
        bundle.apply_chat_template([{"role": "system", "content": "x"}])


def test_missing_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        load_tokenizer_bundle(tmp_path)
