"""The small value types and one-method interfaces that routing is built from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Endpoint:
    """One worker the router may send requests to."""

    name: str  # pod name in Kubernetes, the URL for static lists
    url: str  # base URL, e.g. http://10.0.0.7:8000


@dataclass(frozen=True)
class WorkerLoad:
    """What the router knows about one worker's load at one instant."""

    endpoint: Endpoint
    num_in_flight: int  # requests this router has sent and not finished
    tokens_in_flight: int  # this router's estimate of their prompt + output tokens
    # The prefill queued ahead of a new request there, the work that decides its time to first
    # token: the worker's reported count plus what this router sent since that poll, or, without
    # reports, this router's requests that have not sent their first token yet (see load_view.py).
    prefill_tokens_in_flight: int = 0
    num_waiting: int = 0  # from the worker's last load report
    num_running: int = 0
    kv_cache_usage: float = 0.0  # 0..1
    max_num_seqs: int = 0  # 0 when unknown
    is_available: bool = True  # ready, not draining, not recently failed
    is_saturated: bool = False  # stale report, or queue/KV/in-flight past the limits
    prefix_cache_tokens: int | None = None  # from the worker's last load report; None when unknown

    @property
    def name(self) -> str:
        return self.endpoint.name


@dataclass(frozen=True)
class RequestInfo:
    """The parts of a request that routing looks at; never the prompt itself."""

    model: str = ""
    block_hashes: tuple[int, ...] = ()  # chained hashes of the prompt's fixed-size blocks
    session_id: str | None = None
    num_prompt_tokens: int = 0  # estimated: the router has no tokenizer
    max_tokens: int = 0

    @property
    def num_tokens(self) -> int:
        return self.num_prompt_tokens + self.max_tokens


Scores = Mapping[str, float]  # endpoint name -> score in [0, 1]


class Filter(Protocol):
    """Narrows the candidates; may return all of them or none."""

    name: str

    def filter(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> list[WorkerLoad]: ...


class Scorer(Protocol):
    """Gives each candidate a score in [0, 1]; higher is better."""

    name: str

    def score(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> Scores: ...


class Picker(Protocol):
    """Chooses one of the scored candidates (never called with none)."""

    name: str

    def pick(self, request: RequestInfo, scored: Sequence[tuple[WorkerLoad, float]]) -> WorkerLoad: ...
