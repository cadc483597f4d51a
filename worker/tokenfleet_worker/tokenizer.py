"""The tokenizer of a local Hugging Face model directory: tokenizer.json, tokenizer_config.json
(special tokens, chat template) and generation_config.json (end-of-sequence ids).

Chat templates are Jinja run in a sandbox, since they come with the checkpoint rather than from us.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer


class ChatTemplateError(ValueError):
    """The messages cannot be rendered: no template, or the template rejected them."""


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json stores special tokens as a string or as an AddedToken dict.
    if isinstance(value, dict):
        content = value.get("content")
        return content if isinstance(content, str) else None
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


@dataclass(frozen=True)
class TokenizerBundle:
    tokenizer: Tokenizer
    eos_token_ids: frozenset[int]
    bos_token: str | None = None
    eos_token: str | None = None
    chat_template: str | None = None

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, token_ids: list[int], *, skip_special_tokens: bool = True) -> str:
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens))

    def apply_chat_template(
        self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True
    ) -> str:
        if not self.chat_template:
            raise ChatTemplateError("this model has no chat template; use /v1/completions")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        try:
            template = env.from_string(self.chat_template)
            return template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
            )
        except TemplateError as err:
            raise ChatTemplateError(f"chat template failed: {err}") from None

    def encode_chat(self, messages: list[dict[str, Any]]) -> list[int]:
        # The rendered template already carries the BOS token, so none is added again.
        return self.encode(self.apply_chat_template(messages), add_special_tokens=False)


def load_tokenizer_bundle(model_dir: Path) -> TokenizerBundle:
    """Load the tokenizer files of `model_dir`; a missing or broken tokenizer.json is a clear error."""
    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(f"{model_dir} has no tokenizer.json (only fast tokenizers are supported)")
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    except Exception as err:  # the tokenizers library raises its own exception types
        raise ValueError(f"cannot load {tokenizer_file}: {err}") from None
    config = _read_json(model_dir / "tokenizer_config.json")
    generation = _read_json(model_dir / "generation_config.json")
    model_config = _read_json(model_dir / "config.json")
    bos = _token_text(config.get("bos_token"))
    eos = _token_text(config.get("eos_token"))
    eos_ids: set[int] = set()
    for source in (generation.get("eos_token_id"), model_config.get("eos_token_id")):
        if isinstance(source, int):
            eos_ids.add(source)
        elif isinstance(source, list):
            eos_ids.update(i for i in source if isinstance(i, int))
    if eos is not None and (eos_id := tokenizer.token_to_id(eos)) is not None:
        eos_ids.add(eos_id)
    template = config.get("chat_template")
    if isinstance(template, list):  # several named templates: use the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is None and (model_dir / "chat_template.jinja").is_file():
        template = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    return TokenizerBundle(
        tokenizer=tokenizer,
        eos_token_ids=frozenset(eos_ids),
        bos_token=bos,
        eos_token=eos,
        chat_template=template if isinstance(template, str) else None,
    )
