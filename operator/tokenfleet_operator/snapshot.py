"""What the policy sees of a fleet at one moment: plain frozen values, no Kubernetes types.

The metrics collector builds these; the fleet simulator builds them too, so they stay free of I/O.
Per-variant load is kept apart because cost per token differs by accelerator.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VariantSnapshot:
    name: str
    ready: int = 0  # pods serving and scraped
    starting: int = 0  # pods scheduled or being scheduled, not ready yet: capacity that is coming
    unschedulable: int = 0  # pods the scheduler has marked Unschedulable
    waiting: float = 0.0  # requests queued, summed over ready pods
    running: float = 0.0  # requests in running batches, summed
    kv_usage: float = 0.0  # mean KV-cache utilisation over ready pods, 0..1
    tokens_in_flight: float = 0.0  # prompt + generated tokens admitted, summed
    prompt_tokens_per_second: float = 0.0
    generation_tokens_per_second: float = 0.0
    kv_capacity_tokens_per_replica: float = 0.0  # 0 when the engine does not report it

    @property
    def tokens_per_second(self) -> float:
        return self.prompt_tokens_per_second + self.generation_tokens_per_second

    @property
    def is_busy(self) -> bool:
        return self.waiting > 0 or self.running > 0 or self.tokens_per_second > 0


@dataclass(frozen=True)
class FleetSnapshot:
    time: float  # seconds, on the same clock as the `now` given to the policy
    variants: tuple[VariantSnapshot, ...] = ()
    ttft_p95_seconds: float | None = None  # over the last interval; None when no request finished prefill
    router_held: int = 0  # requests the router holds because no worker can take them
    is_stale: bool = False  # metrics could not be collected (or are too old) for this interval
    pod_loads: tuple[tuple[str, float], ...] = ()  # (pod, waiting + running): who goes first on scale-down
    # Requests the routers sent to workers per second over the last interval (the rate of their routing
    # decisions counter); None when no router reported it. It moves before any worker's queue does.
    dispatched_per_second: float | None = None

    def variant(self, name: str) -> VariantSnapshot:
        for v in self.variants:
            if v.name == name:
                return v
        return VariantSnapshot(name=name)

    @property
    def ready(self) -> int:
        return sum(v.ready for v in self.variants)

    @property
    def starting(self) -> int:
        return sum(v.starting for v in self.variants)

    @property
    def unschedulable(self) -> int:
        return sum(v.unschedulable for v in self.variants)

    @property
    def waiting(self) -> float:
        return sum(v.waiting for v in self.variants)

    @property
    def running(self) -> float:
        return sum(v.running for v in self.variants)

    @property
    def tokens_in_flight(self) -> float:
        return sum(v.tokens_in_flight for v in self.variants)

    @property
    def tokens_per_second(self) -> float:
        return sum(v.tokens_per_second for v in self.variants)

    @property
    def kv_usage(self) -> float:
        """Mean over all ready pods, weighting each variant by its ready count."""
        if self.ready == 0:
            return 0.0
        return sum(v.kv_usage * v.ready for v in self.variants) / self.ready

    @property
    def kv_capacity_tokens_per_replica(self) -> float:
        """Mean KV capacity of the ready pods that report it; 0 when none does."""
        known = [v for v in self.variants if v.kv_capacity_tokens_per_replica > 0 and v.ready > 0]
        total_ready = sum(v.ready for v in known)
        if total_ready == 0:
            return 0.0
        return sum(v.kv_capacity_tokens_per_replica * v.ready for v in known) / total_ready

    @property
    def is_idle(self) -> bool:
        return self.router_held == 0 and not any(v.is_busy for v in self.variants)
