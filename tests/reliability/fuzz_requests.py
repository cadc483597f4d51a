"""Hypothesis strategies for hostile OpenAI request bodies, as the bytes a client would send.

Most examples are JSON objects shaped like real requests with some fields replaced by values a
careless or hostile client sends (wrong types, absurd or negative numbers, lone surrogates, prompts
beyond the context window, wrong roles); the rest are byte-level damage to a valid body (truncated,
invalid UTF-8, not JSON at all).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

VALID_ROLES = ("system", "developer", "user", "assistant", "tool")
ABSURD_INTS = (0, -1, -(2**31), 2**31, 2**63, 2**64 + 1, 10**30, -(10**30))
SURROGATES = ("\ud800", "\udfff", "a\udc80b")


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
    )


def junk() -> st.SearchStrategy[Any]:
    """Any JSON value, nested a little."""
    return st.recursive(
        scalars(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=8,
    )


def texts() -> st.SearchStrategy[str]:
    """Ordinary text, control characters, lone surrogates, and text far beyond any context window."""
    return st.one_of(
        st.text(max_size=40),
        st.sampled_from(SURROGATES),
        st.text(max_size=10).map(lambda t: t + "\ud83d"),
        st.integers(min_value=300, max_value=3000).map(lambda k: "tok " * k),
    )


def counts(low: int, high: int) -> st.SearchStrategy[Any]:
    """Mostly sane integers, sometimes absurd ones, sometimes another type."""
    return st.one_of(
        st.integers(min_value=low, max_value=high),
        st.sampled_from(ABSURD_INTS),
        st.floats(allow_nan=True, allow_infinity=True),
        junk(),
    )


def token_ids() -> st.SearchStrategy[list[int]]:
    return st.lists(
        st.one_of(st.integers(min_value=0, max_value=600), st.sampled_from(ABSURD_INTS)), max_size=12
    )


def prompts() -> st.SearchStrategy[Any]:
    return st.one_of(
        texts(),
        token_ids(),
        st.lists(texts(), max_size=3),
        st.lists(token_ids(), max_size=3),
        st.lists(st.integers(min_value=0, max_value=400), min_size=300, max_size=700),
        junk(),
    )


def messages() -> st.SearchStrategy[Any]:
    role = st.one_of(st.sampled_from(VALID_ROLES), st.sampled_from(("robot", "", "USER")), junk())
    part = st.fixed_dictionaries(
        {"type": st.one_of(st.just("text"), st.just("image_url"), junk()), "text": texts()}
    )
    content = st.one_of(texts(), st.none(), st.lists(part, max_size=3), junk())
    message = st.fixed_dictionaries(
        {"role": role}, optional={"content": content, "name": st.one_of(texts(), junk())}
    )
    return st.one_of(st.lists(message, max_size=4), junk())


def sampling_fields() -> dict[str, st.SearchStrategy[Any]]:
    """Fields both endpoints take, each with its hostile values."""
    return {
        "max_tokens": counts(1, 300),
        "n": counts(1, 4),
        "temperature": st.one_of(st.floats(min_value=-1, max_value=3), junk()),
        "top_p": st.one_of(st.floats(min_value=-1, max_value=2), junk()),
        "top_k": counts(0, 50),
        "seed": counts(0, 1000),
        "stream": st.one_of(st.booleans(), junk()),
        "stream_options": st.one_of(
            st.none(), st.fixed_dictionaries({"include_usage": st.booleans()}), junk()
        ),
        "stop": st.one_of(st.none(), texts(), st.lists(texts(), max_size=20), junk()),
        "stop_token_ids": st.one_of(token_ids(), junk()),
        "ignore_eos": st.one_of(st.booleans(), junk()),
        "timeout_s": st.one_of(st.floats(min_value=1e-300, max_value=1e300), junk()),
        "presence_penalty": st.one_of(st.floats(min_value=-3, max_value=3), junk()),
        "logit_bias": junk(),
        "user": st.one_of(texts(), junk()),
    }


def models(served: str) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(served), st.just(served), texts(), junk())


def completion_bodies(served: str) -> st.SearchStrategy[dict[str, Any]]:
    optional = {
        **sampling_fields(),
        "logprobs": counts(0, 5),
        "echo": st.one_of(st.booleans(), junk()),
        "best_of": counts(1, 4),
        "suffix": st.one_of(texts(), junk()),
    }
    return st.fixed_dictionaries({"model": models(served), "prompt": prompts()}, optional=optional)


def chat_bodies(served: str) -> st.SearchStrategy[dict[str, Any]]:
    optional = {
        **sampling_fields(),
        "max_completion_tokens": counts(1, 300),
        "logprobs": st.one_of(st.booleans(), junk()),
        "top_logprobs": counts(0, 5),
        "tools": junk(),
        "response_format": st.one_of(
            st.fixed_dictionaries({"type": st.sampled_from(["text", "json"])}), junk()
        ),
    }
    return st.fixed_dictionaries({"model": models(served), "messages": messages()}, optional=optional)


def sane_bodies(kind: str, served: str) -> st.SearchStrategy[dict[str, Any]]:
    """Requests a worker should serve, so the success paths (streams, n, logprobs, stops) get fuzzed too."""
    common: dict[str, st.SearchStrategy[Any]] = {
        "max_tokens": st.integers(min_value=1, max_value=48),
        "n": st.integers(min_value=1, max_value=3),
        "temperature": st.floats(min_value=0, max_value=2),
        "seed": st.integers(min_value=0, max_value=2**32),
        "stop": st.lists(st.text(min_size=1, max_size=3), max_size=3),
        "stream": st.booleans(),
    }
    required: dict[str, st.SearchStrategy[Any]]
    extra: dict[str, st.SearchStrategy[Any]]
    if kind == "completions":
        required = {"model": st.just(served), "prompt": st.text(min_size=1, max_size=60)}
        extra = {"logprobs": st.integers(min_value=0, max_value=5)}
    else:
        message = st.fixed_dictionaries(
            {"role": st.sampled_from(VALID_ROLES), "content": st.text(min_size=1, max_size=40)}
        )
        required = {"model": st.just(served), "messages": st.lists(message, min_size=1, max_size=3)}
        extra = {"logprobs": st.just(True), "top_logprobs": st.integers(min_value=0, max_value=5)}
    return st.fixed_dictionaries(required, optional={**common, **extra}).map(_usage_when_streaming)


def _usage_when_streaming(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("stream"):
        body["stream_options"] = {"include_usage": True}
    return body


def encoded(body: Any, ascii_only: bool) -> bytes:
    """JSON as a client would send it; without ASCII escapes a lone surrogate becomes invalid UTF-8."""
    return json.dumps(body, ensure_ascii=ascii_only, allow_nan=True).encode("utf-8", "surrogatepass")


def damaged(valid: bytes) -> st.SearchStrategy[bytes]:
    """A valid body cut short, with bytes that are not UTF-8 spliced in, or wrapped in junk."""
    at = st.integers(min_value=0, max_value=len(valid))
    bad = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\x80\x80"])
    return st.one_of(
        at.map(lambda i: valid[:i]),
        st.tuples(at, bad).map(lambda p: valid[: p[0]] + p[1] + valid[p[0] :]),
        st.binary(max_size=64),
        st.sampled_from([b"", b"null", b"[]", b"1e999999", b'"x"', b"[" * 5000, b"{" * 5000]),
    )


def hostile_bodies(kind: str, served: str) -> st.SearchStrategy[bytes]:
    """Bytes for POST /v1/completions (`kind` "completions") or /v1/chat/completions ("chat")."""
    shaped = completion_bodies(served) if kind == "completions" else chat_bodies(served)
    base = (
        {"model": served, "prompt": "hello"}
        if kind == "completions"
        else {
            "model": served,
            "messages": [{"role": "user", "content": "hello"}],
        }
    )
    as_json = st.tuples(shaped, st.booleans()).map(lambda p: encoded(p[0], p[1]))
    return st.one_of(
        as_json,
        as_json,
        sane_bodies(kind, served).map(lambda b: encoded(b, True)),
        damaged(encoded(base, True)),
    )
