"""Per-worker load as the router sees it: its own in-flight work plus the worker's polled report.

The router's own counts change on every request, so they are exact and instant; the worker's
`/load` report (queue depth, KV usage) arrives a few times per second and also covers requests
from other router replicas. A report older than `stale_after_s` makes the worker count as
saturated, not idle: a worker that stopped answering must not attract all the traffic. Workers
that do not serve `/load` at all (plain vLLM or SGLang) are judged on the router's counts alone.
Pure state: every method that needs the time takes `now`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from tokenfleet_common.load_report import LoadReport
from tokenfleet_router.types import Endpoint, WorkerLoad


@dataclass(frozen=True)
class SaturationLimits:
    max_waiting: int = 8  # a worker reporting this many queued requests takes no more
    max_kv_usage: float = 0.95  # ...nor one this full that already has a queue
    max_in_flight: int = 0  # this router's requests per worker; 0 means max_num_seqs + max_waiting
    stale_after_s: float = 2.0
    failure_backoff_s: float = 2.0  # how long a worker that refused or failed a request is skipped


@dataclass
class _WorkerState:
    endpoint: Endpoint
    num_in_flight: int = 0
    tokens_in_flight: int = 0
    prefill_tokens_in_flight: int = 0
    # (sent at, prefill tokens) of requests sent lately: those sent after the last report's poll
    # went out are missing from its count of prefill waiting.
    recent_prefills: deque[tuple[float, int]] = field(default_factory=deque)
    report: LoadReport | None = None
    report_at: float | None = None
    serves_reports: bool = True
    unavailable_until: float = 0.0


class LoadView:
    def __init__(self, limits: SaturationLimits | None = None) -> None:
        self.limits = limits or SaturationLimits()
        self._workers: dict[str, _WorkerState] = {}

    @property
    def endpoints(self) -> list[Endpoint]:
        return [w.endpoint for w in self._workers.values()]

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> list[str]:
        """Replace the worker set, keeping state of those that stay; returns the names removed."""
        wanted = {e.name: e for e in endpoints}
        removed = [name for name in self._workers if name not in wanted]
        for name in removed:
            del self._workers[name]
        for name, endpoint in wanted.items():
            current = self._workers.get(name)
            if current is None or current.endpoint != endpoint:
                self._workers[name] = _WorkerState(endpoint)
        return removed

    def begin(self, name: str, num_tokens: int, num_prompt_tokens: int = 0, now: float | None = None) -> None:
        """A request was sent at `now`; its `num_prompt_tokens` count as prefill until `first_token`."""
        worker = self._workers.get(name)
        if worker is not None:
            worker.num_in_flight += 1
            worker.tokens_in_flight += num_tokens
            worker.prefill_tokens_in_flight += num_prompt_tokens
            if now is not None and num_prompt_tokens > 0:
                recent = worker.recent_prefills
                while recent and recent[0][0] < now - self.limits.stale_after_s:
                    recent.popleft()  # a report this old no longer counts anyway
                recent.append((now, num_prompt_tokens))

    def first_token(self, name: str, num_prompt_tokens: int) -> None:
        """The request's first token came back: its prompt is prefilled."""
        worker = self._workers.get(name)
        if worker is not None:
            worker.prefill_tokens_in_flight = max(0, worker.prefill_tokens_in_flight - num_prompt_tokens)

    def end(self, name: str, num_tokens: int, num_prompt_tokens: int = 0) -> None:
        """The request finished; `num_prompt_tokens` is its prefill still counted (0 after `first_token`)."""
        worker = self._workers.get(name)  # it may have left the fleet meanwhile
        if worker is not None:
            worker.num_in_flight = max(0, worker.num_in_flight - 1)
            worker.tokens_in_flight = max(0, worker.tokens_in_flight - num_tokens)
            worker.prefill_tokens_in_flight = max(0, worker.prefill_tokens_in_flight - num_prompt_tokens)

    def record_report(
        self, name: str, report: LoadReport, now: float, polled_at: float | None = None
    ) -> None:
        """A report received at `now` for a poll sent at `polled_at` (default `now`)."""
        worker = self._workers.get(name)
        if worker is not None:
            worker.report, worker.report_at, worker.serves_reports = report, now, True
            since = now if polled_at is None else polled_at
            recent = worker.recent_prefills
            while recent and recent[0][0] < since:
                recent.popleft()

    def record_no_reports(self, name: str) -> None:
        """The worker has no `/load` endpoint: judge it by this router's counts only."""
        worker = self._workers.get(name)
        if worker is not None:
            worker.serves_reports = False

    def mark_failed(self, name: str, now: float) -> None:
        """Skip a worker for a while after it refused a connection or answered 503 (draining)."""
        worker = self._workers.get(name)
        if worker is not None:
            worker.unavailable_until = now + self.limits.failure_backoff_s

    @staticmethod
    def _prefill_ahead(worker: _WorkerState) -> int:
        """Prefill queued at the worker: its report's exact count plus what was sent since the poll.

        The router's own count is the fallback: it misses other routers' requests and keeps a
        request's whole prefill until its first token, however far the prefill has got."""
        report = worker.report
        if report is None or not worker.serves_reports or report.prefill_tokens_waiting is None:
            return worker.prefill_tokens_in_flight
        return report.prefill_tokens_waiting + sum(tokens for _, tokens in worker.recent_prefills)

    def snapshot(self, now: float) -> list[WorkerLoad]:
        return [self._load(w, now) for w in self._workers.values()]

    def _load(self, worker: _WorkerState, now: float) -> WorkerLoad:
        limits = self.limits
        report = worker.report
        is_stale = worker.serves_reports and (
            worker.report_at is None or now - worker.report_at > limits.stale_after_s
        )
        is_available = now >= worker.unavailable_until and (
            report is None or not worker.serves_reports or (report.ready and not report.draining)
        )
        waiting = report.waiting if report and worker.serves_reports else 0
        kv_usage = report.kv_cache_usage if report and worker.serves_reports else 0.0
        max_num_seqs = report.max_num_seqs if report and worker.serves_reports else 0
        max_in_flight = limits.max_in_flight or (max_num_seqs + limits.max_waiting if max_num_seqs else 0)
        is_saturated = (
            is_stale
            or waiting >= limits.max_waiting
            or (kv_usage >= limits.max_kv_usage and waiting > 0)
            or (max_in_flight > 0 and worker.num_in_flight >= max_in_flight)
        )
        return WorkerLoad(
            endpoint=worker.endpoint,
            num_in_flight=worker.num_in_flight,
            tokens_in_flight=worker.tokens_in_flight,
            prefill_tokens_in_flight=self._prefill_ahead(worker),
            num_waiting=waiting,
            num_running=report.running if report and worker.serves_reports else 0,
            kv_cache_usage=kv_usage,
            max_num_seqs=max_num_seqs,
            is_available=is_available,
            is_saturated=is_saturated,
            prefix_cache_tokens=report.prefix_cache_tokens if report and worker.serves_reports else None,
        )
