from __future__ import annotations

import pytest

from tokenfleet_router.logs import format_fields

pytestmark = pytest.mark.unit


def test_key_value_lines_quote_what_needs_quoting() -> None:
    line = format_fields(
        "upstream_failed", {"worker": "http://a:1", "reason": 'said "no"\nthen', "n": 2, "e": ""}
    )
    assert line == 'event=upstream_failed worker=http://a:1 reason="said \\"no\\"\\nthen" n=2 e=""'
