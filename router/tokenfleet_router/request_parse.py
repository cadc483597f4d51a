"""Check an OpenAI request body just enough to route it, and extract what routing needs.

The body itself is forwarded byte for byte; this only rejects what no worker could serve
(with a 400 naming the field) and derives the prompt's block hashes and a token estimate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tokenfleet_router.errors import RouterError
from tokenfleet_router.prefix_hash import DEFAULT_BLOCK_BYTES, block_hashes, estimate_tokens
from tokenfleet_router.types import RequestInfo

COMPLETIONS = "completions"
CHAT = "chat"
DEFAULT_MAX_TOKENS = 256  # estimate when the request leaves it to the server


@dataclass(frozen=True)
class ParsedRequest:
    info: RequestInfo
    is_stream: bool


def _invalid(message: str, param: str | None = None) -> RouterError:
    return RouterError(400, message, "invalid_request_error" if param is None else "invalid_value", param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _prompt_bytes(prompt: Any) -> bytes:
    """Bytes of the (first) prompt: text as UTF-8, token ids as 4-byte integers."""
    if isinstance(prompt, str):
        return prompt.encode()
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return prompt[0].encode()
        if all(_is_int(t) for t in prompt):
            return b"".join(int(t).to_bytes(4, "little", signed=True) for t in prompt)
        if all(isinstance(p, list) and p and all(_is_int(t) for t in p) for p in prompt):
            return _prompt_bytes(prompt[0])
    raise _invalid("'prompt' must be a string, a list of strings, or a list of token ids", "prompt")


def _content_text(content: Any, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        if len(parts) == len(content) and all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise _invalid(f"messages[{index}].content must be a string or a list of content parts", "messages")


def _messages_bytes(messages: Any) -> bytes:
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' must be a non-empty list", "messages")
    chunks: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _invalid(f"messages[{i}] must be an object with a string 'role'", "messages")
        chunks.append(f"{message['role']}\n{_content_text(message.get('content'), i)}\n")
    return "".join(chunks).encode()


def _max_tokens(body: dict[str, Any]) -> int:
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not _is_int(value) or value < 0:
            raise _invalid(f"'{key}' must be a non-negative integer", key)
        return int(value)
    return DEFAULT_MAX_TOKENS


def parse_request(
    kind: str, raw: bytes, session_id: str | None = None, block_bytes: int = DEFAULT_BLOCK_BYTES
) -> ParsedRequest:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _invalid("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _invalid("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("'model' is required and must be a non-empty string", "model")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("'stream' must be a boolean", "stream")
    if kind == CHAT:
        data = _messages_bytes(body.get("messages"))
    else:
        if "prompt" not in body:
            raise _invalid("'prompt' is required", "prompt")
        data = _prompt_bytes(body["prompt"])
    info = RequestInfo(
        model=model,
        block_hashes=block_hashes(data, block_bytes),
        session_id=session_id or None,
        num_prompt_tokens=estimate_tokens(data),
        max_tokens=_max_tokens(body),
    )
    return ParsedRequest(info=info, is_stream=bool(stream))
