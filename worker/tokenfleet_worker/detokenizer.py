"""Incremental detokenization for streaming: text deltas that never split a UTF-8 character, and
stop strings found even when they span deltas.

Byte-level tokenizers can end a token in the middle of a multi-byte character; decoding such a
prefix yields U+FFFD. Each step decodes a short window (a few tokens of context before the new ones)
and emits only once the new text no longer ends in U+FFFD. The context window keeps tokenizer
quirks such as leading-space handling the same as decoding the whole text at once.

Stop strings: the full output text is searched around each delta; the text from the stop string on
is dropped. Text that could still become the start of a stop string is held back until it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

CONTEXT_TOKENS = 5
REPLACEMENT_CHAR = "\ufffd"


@dataclass(frozen=True)
class TextDelta:
    text: str  # new text safe to show now
    stop_string: str | None = None  # the stop string that ended the output, if any


def _held_suffix_len(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that is a proper prefix of a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class IncrementalDetokenizer:
    def __init__(
        self,
        tokenizer: Tokenizer,
        prompt_token_ids: list[int] | tuple[int, ...],
        *,
        stop: tuple[str, ...] = (),
        skip_special_tokens: bool = True,
    ) -> None:
        self._tokenizer = tokenizer
        self._stops = tuple(s for s in stop if s)
        self._skip_special = skip_special_tokens
        self._tokens: list[int] = list(prompt_token_ids[-CONTEXT_TOKENS:])
        self._prefix_offset = 0  # start of the decoding window
        self._read_offset = len(self._tokens)  # tokens before it are already in self.text
        self.text = ""  # all output text decoded so far (stop string and after removed)
        self._num_emitted = 0  # chars of self.text already returned
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip_special)

    def add_tokens(self, token_ids: list[int]) -> TextDelta:
        """Feed newly generated tokens; return the text that can be shown now."""
        if self.stopped:
            return TextDelta("")
        self._tokens.extend(token_ids)
        before = self._decode(self._tokens[self._prefix_offset : self._read_offset])
        window = self._decode(self._tokens[self._prefix_offset :])
        if len(window) > len(before) and not window.endswith(REPLACEMENT_CHAR):
            search_from = max(0, len(self.text) - max((len(s) for s in self._stops), default=0))
            self.text += window[len(before) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._tokens)
            stop = self._find_stop(search_from)
            if stop is not None:
                return TextDelta(self._take(len(self.text)), stop)
        safe_end = len(self.text) - _held_suffix_len(self.text, self._stops)
        return TextDelta(self._take(max(safe_end, self._num_emitted)))

    def flush(self) -> str:
        """The rest of the text when the sequence ends for another reason than a stop string."""
        if self.stopped:
            return ""
        if self._read_offset < len(self._tokens):
            # Whatever is still pending (an incomplete character at the very end) is shown as is.
            before = self._decode(self._tokens[self._prefix_offset : self._read_offset])
            self.text += self._decode(self._tokens[self._prefix_offset :])[len(before) :]
            self._read_offset = len(self._tokens)
        return self._take(len(self.text))

    def _find_stop(self, search_from: int) -> str | None:
        found: tuple[int, str] | None = None
        for stop in self._stops:
            at = self.text.find(stop, search_from)
            if at >= 0 and (found is None or at < found[0]):
                found = (at, stop)
        if found is None:
            return None
        self.text = self.text[: found[0]]
        self.stopped = True
        return found[1]

    def _take(self, end: int) -> str:
        end = max(end, self._num_emitted)
        delta = self.text[self._num_emitted : end]
        self._num_emitted = end
        return delta
