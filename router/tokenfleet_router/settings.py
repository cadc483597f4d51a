"""The router's settings: one frozen value, built once at startup and passed whole."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenfleet_router.admission import AdmissionSettings
from tokenfleet_router.load_view import SaturationLimits
from tokenfleet_router.prefix_hash import DEFAULT_BLOCK_BYTES


@dataclass(frozen=True)
class RouterSettings:
    strategy: str = "least-load"
    scorer_weights: dict[str, float] = field(default_factory=dict)  # overrides the strategy's weights
    session_header: str = "x-session-id"
    prefix_block_bytes: int = DEFAULT_BLOCK_BYTES
    load_poll_interval_s: float = 0.25
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 300.0  # longest silence from a worker mid-answer before giving up
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    limits: SaturationLimits = field(default_factory=SaturationLimits)
    api_keys: tuple[str, ...] = ()  # empty: no authentication
    max_body_bytes: int = 16 * 1024 * 1024
