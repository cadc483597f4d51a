"""Incremental detokenization: deltas add up to the full decode, never split a character, and stop
strings are cut even when they span deltas."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tokenfleet_worker.detokenizer import IncrementalDetokenizer
from tokenfleet_worker.make_tokenizer import train_tokenizer

pytestmark = pytest.mark.unit

MULTIBYTE = "Grüße aus München: 東京タワー 🙂🚀 naïve façade ελληνικά"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    # A small vocabulary leaves most non-ASCII characters as several byte tokens.
    return train_tokenizer(300, seed=0)


def stream(tokenizer: Tokenizer, text: str, stop: tuple[str, ...] = (), prompt: str = "Hi") -> list[str]:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False).ids
    detok = IncrementalDetokenizer(tokenizer, prompt_ids, stop=stop)
    deltas = []
    for token in ids:
        delta = detok.add_tokens([token])
        deltas.append(delta.text)
        if delta.stop_string is not None:
            return deltas
    deltas.append(detok.flush())
    return deltas


def test_multibyte_characters_are_split_across_tokens(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("🙂", add_special_tokens=False).ids
    assert len(ids) > 1, "the test needs a character that spans several tokens"
    assert "\ufffd" in tokenizer.decode(ids[:1])


def test_deltas_join_to_the_full_text_and_are_whole_characters(tokenizer: Tokenizer) -> None:
    deltas = stream(tokenizer, MULTIBYTE)
    assert "".join(deltas) == MULTIBYTE
    for delta in deltas:
        assert "\ufffd" not in delta
        delta.encode("utf-8")  # a lone surrogate or broken character would raise


def test_stop_string_inside_one_delta(tokenizer: Tokenizer) -> None:
    detok = IncrementalDetokenizer(tokenizer, [], stop=("STOP",))
    ids = tokenizer.encode("hello STOP world", add_special_tokens=False).ids
    out = []
    for token in ids:
        delta = detok.add_tokens([token])
        out.append(delta.text)
        if delta.stop_string:
            break
    assert "".join(out) == "hello "
    assert detok.stopped
    assert detok.flush() == ""


@pytest.mark.parametrize("stop", ["München", "ü", "🚀", "ταξί", "r ü"])
def test_stop_string_spanning_deltas_is_cut_and_never_shown(tokenizer: Tokenizer, stop: str) -> None:
    text = "Gr über München 🚀 fin"
    deltas = stream(tokenizer, text, stop=(stop,))
    shown = "".join(deltas)
    if stop in text:
        assert shown == text[: text.index(stop)]
    else:
        assert shown == text
    # No delta ever carried a prefix of the stop string that later turned out to be the stop.
    assert stop not in shown


def test_partial_stop_prefix_is_released_when_it_does_not_complete(tokenizer: Tokenizer) -> None:
    deltas = stream(tokenizer, "abc abd", stop=("abx",))
    assert "".join(deltas) == "abc abd"


def test_earliest_of_several_stop_strings_wins(tokenizer: Tokenizer) -> None:
    deltas = stream(tokenizer, "one two three", stop=("three", "two"))
    assert "".join(deltas) == "one "


def test_leading_space_matches_full_decode_after_prompt(tokenizer: Tokenizer, tmp_path: Path) -> None:
    text = " world of tokens"
    deltas = stream(tokenizer, text, prompt="hello")
    assert "".join(deltas) == text


def test_flush_shows_an_incomplete_trailing_character(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("ok 🙂", add_special_tokens=False).ids
    detok = IncrementalDetokenizer(tokenizer, [])
    shown = "".join(detok.add_tokens([t]).text for t in ids[:-1])
    assert shown == "ok "  # the emoji's bytes are incomplete: nothing of it is shown
    assert detok.flush() == tokenizer.decode(ids[:-1])[len("ok ") :]
