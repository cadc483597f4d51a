"""A tokenizer-only model directory for sim-backend tests: no torch, trained in well under a second."""

from __future__ import annotations

import json
from pathlib import Path

from tokenfleet_worker.make_tokenizer import write_tokenizer_files
from tokenfleet_worker.tokenizer import TokenizerBundle, load_tokenizer_bundle


def write_sim_model_dir(out_dir: Path, *, vocab_size: int = 512, max_len: int = 512) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tokenizer_files(out_dir, vocab_size=vocab_size, model_max_length=max_len)
    bundle = load_tokenizer_bundle(out_dir)
    eos_id = bundle.tokenizer.token_to_id("<|eot_id|>")
    config = {"model_type": "llama", "vocab_size": vocab_size, "max_position_embeddings": max_len}
    (out_dir / "config.json").write_text(json.dumps(config))
    (out_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": [eos_id]}))
    return out_dir


def load_bundle(model_dir: Path) -> TokenizerBundle:
    return load_tokenizer_bundle(model_dir)
