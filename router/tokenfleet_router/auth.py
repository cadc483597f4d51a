"""Optional API keys: `Authorization: Bearer <key>` checked in constant time against a key file."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path


def load_api_keys(path: Path) -> tuple[str, ...]:
    """One key per line; blank lines and `#` comments ignored."""
    keys = tuple(
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    )
    if not keys:
        raise ValueError(f"API keys file {path} holds no keys")
    return keys


def is_authorized(authorization: str | None, keys: tuple[str, ...]) -> bool:
    if not keys:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    # Digests have one length whatever was presented, so not even the keys' lengths show in the timing;
    # every key is compared, without stopping early, so neither does which one matched.
    candidate = _digest(presented.strip())
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, _digest(key))
    return matched


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()
