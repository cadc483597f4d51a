"""The autoscalers people use today, reduced to their scaling rules, plus static and oracle fleets.

All scale one variant. Their rules, as documented by each project:

- HPA (Kubernetes): desired = ceil(ready * metric / target) when |metric/target - 1| > 0.1; the metric is
  requests per second per ready replica, averaged over the last minute. Scale-up at most max(4 pods,
  100%) per 15 s period; scale-down to the highest recommendation of the last 300 s. Evaluated every 15 s.
- KEDA (a Prometheus scaler on waiting requests, driving an HPA with an AverageValue target):
  desired = ceil((waiting + held) / target), same HPA behaviour, never below minReplicas.
- Knative KPA: desired = ceil(mean concurrency over the 60 s stable window / target); when the 6 s panic
  window asks for >= 2x the ready replicas it enters panic for 60 s, using the panic window's ask and
  never scaling down; outside panic it at most halves the ready replicas per evaluation.
- Static: a fixed count (provisioning for the peak).
- Oracle: a per-minute schedule computed from the future load, whose replicas start instantly.
- Oracle with cold start (`ColdStartSchedule`): the same schedule, but its replicas take the cold start
  like everyone else's; knowing the future, it orders each minute's replicas one cold start early and
  lets them go at the minute's end. It bounds what perfect foresight saves once replicas start slowly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from tokenfleet_devkit.sim.observation import Observation

_EPS = 1e-9


class Static:
    is_cold_start_free = False

    def __init__(self, variant: str, replicas: int) -> None:
        self.name = "static-peak"
        self.variant = variant
        self.replicas = replicas

    def decide(self, observation: Observation) -> dict[str, int]:
        return {self.variant: self.replicas}


class Schedule:
    """Replicas per period from a precomputed list (the oracle); ready at once."""

    is_cold_start_free = True

    def __init__(
        self, variant: str, per_period: Sequence[int], period_s: float = 60.0, lead_s: float = 0.0
    ) -> None:
        self.name = "oracle"
        self.variant = variant
        self.per_period = list(per_period)
        self.period_s = period_s
        self.lead_s = lead_s

    def decide(self, observation: Observation) -> dict[str, int]:
        index = int((observation.now + self.lead_s) // self.period_s)
        index = min(max(index, 0), len(self.per_period) - 1) if self.per_period else 0
        return {self.variant: max(1, self.per_period[index] if self.per_period else 1)}


class ColdStartSchedule:
    """The oracle's schedule with cold starts: each period's replicas ordered `cold_start_s` early."""

    is_cold_start_free = False

    def __init__(
        self, variant: str, per_period: Sequence[int], cold_start_s: float, period_s: float = 60.0
    ) -> None:
        self.name = "oracle-cold-start"
        self._now = Schedule(variant, per_period, period_s)
        self._ahead = Schedule(variant, per_period, period_s, lead_s=cold_start_s)
        self.variant = variant

    def decide(self, observation: Observation) -> dict[str, int]:
        now = self._now.decide(observation)[self.variant]
        return {self.variant: max(now, self._ahead.decide(observation)[self.variant])}


class _HpaBehaviour:
    """The HPA's rate limits and scale-down stabilisation, shared by the HPA and KEDA baselines."""

    is_cold_start_free = False
    period_s = 15.0
    down_window_s = 300.0

    def __init__(self, variant: str, min_replicas: int, max_replicas: int) -> None:
        self.variant = variant
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self._recommendations: deque[tuple[float, int]] = deque()
        self._last_eval = -math.inf
        self._desired: int | None = None

    def _raw(self, observation: Observation, ready: int) -> int:
        raise NotImplementedError

    def decide(self, observation: Observation) -> dict[str, int]:
        now = observation.now
        current = int(observation.current.get(self.variant, 0))
        if self._desired is None:
            self._desired = current
        if now - self._last_eval < self.period_s - _EPS:
            return {self.variant: self._desired}
        self._last_eval = now
        ready = max(observation.snapshot.ready, 0)
        raw = min(max(self._raw(observation, ready), self.min_replicas), self.max_replicas)
        self._recommendations.append((now, raw))
        while self._recommendations[0][0] < now - self.down_window_s:
            self._recommendations.popleft()
        target = max(r for _, r in self._recommendations) if raw < current else raw
        up_limit = current + max(4, current)
        self._desired = min(max(target, self.min_replicas), up_limit, self.max_replicas)
        return {self.variant: self._desired}


class Hpa(_HpaBehaviour):
    def __init__(
        self, variant: str, rps_per_replica: float, min_replicas: int = 1, max_replicas: int = 64
    ) -> None:
        super().__init__(variant, min_replicas, max_replicas)
        self.name = "hpa-rps"
        self.target = rps_per_replica
        self._rates: deque[tuple[float, float]] = deque()

    def decide(self, observation: Observation) -> dict[str, int]:
        # rate(requests_total[1m]), as a Prometheus adapter would serve it.
        self._rates.append((observation.now, observation.arrivals_per_s))
        while self._rates[0][0] <= observation.now - 60.0:
            self._rates.popleft()
        return super().decide(observation)

    def _raw(self, observation: Observation, ready: int) -> int:
        rps = sum(r for _, r in self._rates) / len(self._rates)
        if ready == 0:
            return max(1, math.ceil(rps / self.target - _EPS))
        ratio = rps / ready / self.target
        if abs(ratio - 1.0) <= 0.1:
            return ready
        return math.ceil(ready * ratio - _EPS)


class Keda(_HpaBehaviour):
    def __init__(
        self, variant: str, waiting_per_replica: float, min_replicas: int = 1, max_replicas: int = 64
    ) -> None:
        super().__init__(variant, min_replicas, max_replicas)
        self.name = "keda-waiting"
        self.target = waiting_per_replica

    def _raw(self, observation: Observation, ready: int) -> int:
        snap = observation.snapshot
        queued = snap.waiting + snap.router_held
        return math.ceil(queued / self.target - _EPS)


class Kpa:
    is_cold_start_free = False
    stable_window_s = 60.0
    panic_window_s = 6.0
    panic_threshold = 2.0
    max_scale_down_rate = 2.0

    def __init__(
        self, variant: str, concurrency_per_replica: float, min_replicas: int = 1, max_replicas: int = 64
    ):
        self.name = "knative-kpa"
        self.variant = variant
        self.target = concurrency_per_replica
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self._samples: deque[tuple[float, float]] = deque()
        self._panic_until = -math.inf
        self._panic_peak = 0

    def decide(self, observation: Observation) -> dict[str, int]:
        now = observation.now
        self._samples.append((now, observation.concurrency))
        while self._samples[0][0] <= now - self.stable_window_s:
            self._samples.popleft()
        stable = sum(c for _, c in self._samples) / len(self._samples)
        recent = [c for t, c in self._samples if t > now - self.panic_window_s]
        panic = sum(recent) / len(recent)
        want_stable = math.ceil(stable / self.target - _EPS)
        want_panic = math.ceil(panic / self.target - _EPS)
        ready = max(observation.snapshot.ready, 1)
        current = int(observation.current.get(self.variant, 0))
        if want_panic >= self.panic_threshold * ready:
            self._panic_until = now + self.stable_window_s
        if now < self._panic_until:
            # In panic the KPA follows the panic window and never scales down.
            self._panic_peak = max(self._panic_peak, want_panic, current)
            want = self._panic_peak
        else:
            self._panic_peak = 0
            # max-scale-down-rate 2.0: at most halve the ready replicas per evaluation.
            want = max(want_stable, math.ceil(ready / self.max_scale_down_rate - _EPS))
        return {self.variant: min(max(want, self.min_replicas), self.max_replicas)}
