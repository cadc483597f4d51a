from __future__ import annotations

from pathlib import Path

import pytest

from tokenfleet_router.auth import is_authorized, load_api_keys

pytestmark = pytest.mark.unit


def test_load_keys_skips_blanks_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# team keys\nsk-one\n\n  sk-two  \n")
    assert load_api_keys(path) == ("sk-one", "sk-two")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no keys"):
        load_api_keys(tmp_path / "empty")


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("Bearer sk-one", True),
        ("bearer sk-two", True),
        ("Bearer sk-three", False),
        ("Bearer ", False),
        ("sk-one", False),
        ("Basic sk-one", False),
        (None, False),
    ],
)
def test_is_authorized(header: str | None, allowed: bool) -> None:
    assert is_authorized(header, ("sk-one", "sk-two")) is allowed


def test_no_keys_means_open() -> None:
    assert is_authorized(None, ())
