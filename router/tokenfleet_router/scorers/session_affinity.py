"""SessionAffinityScorer: keep a conversation on the worker that served its earlier turns.

Formula: 1 for the worker recorded for `request.session_id`, 0 for every other (and 0 for all
when the request has no session or the session is new). Input: the shared `SessionTable`, which
the strategy updates after each pick. Health and overload are the filters' job: a session whose
worker was filtered out simply moves, and the table follows it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from tokenfleet_router.types import RequestInfo, Scores, WorkerLoad


class SessionTable:
    """LRU-bounded session id -> worker name."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._worker_by_session: OrderedDict[str, str] = OrderedDict()

    def get(self, session_id: str) -> str | None:
        return self._worker_by_session.get(session_id)

    def record(self, session_id: str, worker: str) -> None:
        self._worker_by_session[session_id] = worker
        self._worker_by_session.move_to_end(session_id)
        while len(self._worker_by_session) > self.capacity:
            self._worker_by_session.popitem(last=False)

    def __len__(self) -> int:
        return len(self._worker_by_session)


class SessionAffinityScorer:
    name = "session-affinity"

    def __init__(self, sessions: SessionTable) -> None:
        self.sessions = sessions

    def score(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> Scores:
        home = self.sessions.get(request.session_id) if request.session_id else None
        return {c.name: 1.0 if c.name == home else 0.0 for c in candidates}
