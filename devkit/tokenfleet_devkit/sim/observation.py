"""What an autoscaler sees each interval, and the one-method interface every autoscaler implements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from tokenfleet_operator.snapshot import FleetSnapshot


@dataclass(frozen=True)
class Observation:
    now: float
    snapshot: FleetSnapshot  # the operator's view: per-variant ready/starting/queue/KV/throughput
    current: Mapping[str, int]  # replicas set now per variant (ready + starting, not draining)
    arrivals_per_s: float  # requests that reached the router over the last interval, per second
    concurrency: float  # requests in flight at the router (held + on workers), now


class Autoscaler(Protocol):
    name: str
    is_cold_start_free: bool  # True only for the oracle: its replicas are ready at once

    def decide(self, observation: Observation) -> dict[str, int]: ...
