from __future__ import annotations

import json
from typing import Any

import pytest

from tokenfleet_router.errors import RouterError
from tokenfleet_router.request_parse import CHAT, COMPLETIONS, DEFAULT_MAX_TOKENS, parse_request

pytestmark = pytest.mark.unit


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


def test_completion_with_text_prompt() -> None:
    parsed = parse_request(
        COMPLETIONS, raw({"model": "m", "prompt": "x" * 200, "max_tokens": 8, "stream": True})
    )
    assert parsed.is_stream
    assert parsed.info.model == "m"
    assert len(parsed.info.block_hashes) == 3
    assert parsed.info.num_prompt_tokens == 50
    assert parsed.info.num_tokens == 58


def test_token_id_prompt_blocks_are_sixteen_tokens() -> None:
    parsed = parse_request(COMPLETIONS, raw({"model": "m", "prompt": list(range(40))}))
    assert len(parsed.info.block_hashes) == 2
    assert parsed.info.num_prompt_tokens == 40
    assert parsed.info.max_tokens == DEFAULT_MAX_TOKENS


def test_same_conversation_prefix_gives_same_leading_hashes() -> None:
    system = {"role": "system", "content": "You are terse. " * 20}
    one = parse_request(CHAT, raw({"model": "m", "messages": [system, {"role": "user", "content": "hi"}]}))
    two = parse_request(CHAT, raw({"model": "m", "messages": [system, {"role": "user", "content": "bye"}]}))
    assert len(one.info.block_hashes) >= 4
    assert one.info.block_hashes[:4] == two.info.block_hashes[:4]


def test_session_and_content_parts() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}
    parsed = parse_request(CHAT, raw(body), session_id="s-1")
    assert parsed.info.session_id == "s-1"
    assert not parsed.is_stream


@pytest.mark.parametrize(
    ("kind", "body", "param"),
    [
        (COMPLETIONS, b"{not json", None),
        (COMPLETIONS, b"\xff\xfe", None),
        (COMPLETIONS, raw([1, 2]), None),
        (COMPLETIONS, raw({"prompt": "hi"}), "model"),
        (COMPLETIONS, raw({"model": 5, "prompt": "hi"}), "model"),
        (COMPLETIONS, raw({"model": "m"}), "prompt"),
        (COMPLETIONS, raw({"model": "m", "prompt": 5}), "prompt"),
        (COMPLETIONS, raw({"model": "m", "prompt": []}), "prompt"),
        (COMPLETIONS, raw({"model": "m", "prompt": [1, "a"]}), "prompt"),
        (COMPLETIONS, raw({"model": "m", "prompt": "hi", "stream": "yes"}), "stream"),
        (COMPLETIONS, raw({"model": "m", "prompt": "hi", "max_tokens": -1}), "max_tokens"),
        (COMPLETIONS, raw({"model": "m", "prompt": "hi", "max_tokens": "9"}), "max_tokens"),
        (CHAT, raw({"model": "m"}), "messages"),
        (CHAT, raw({"model": "m", "messages": []}), "messages"),
        (CHAT, raw({"model": "m", "messages": ["hi"]}), "messages"),
        (CHAT, raw({"model": "m", "messages": [{"content": "hi"}]}), "messages"),
        (CHAT, raw({"model": "m", "messages": [{"role": "user", "content": 3}]}), "messages"),
    ],
)
def test_malformed_requests_are_400_naming_the_field(kind: str, body: bytes, param: str | None) -> None:
    with pytest.raises(RouterError) as info:
        parse_request(kind, body)
    assert info.value.status == 400
    assert info.value.param == param
    assert info.value.message
