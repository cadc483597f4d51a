"""Scorers: each rates every candidate in [0, 1] for one reason (one scorer per module)."""

from __future__ import annotations

from collections.abc import Mapping


def lower_is_better(values: Mapping[str, float]) -> dict[str, float]:
    """Min-max scale so the smallest value scores 1 and the largest 0; all equal score 1."""
    if not values:
        return {}
    low, high = min(values.values()), max(values.values())
    if high <= low:
        return dict.fromkeys(values, 1.0)
    return {name: (high - v) / (high - low) for name, v in values.items()}
