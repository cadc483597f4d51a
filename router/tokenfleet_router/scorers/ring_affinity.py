"""RingAffinityScorer: the consistent-hashing home of a request's prompt.

Formula: order the candidates clockwise on a hash ring from the point of the request's key (the
hash of its last full prompt block, which stands for the whole chained prefix; else the session
id; else nothing); the i-th of n scores `1 - i / n`. With no key every candidate scores 0.
Placed after `LoadBoundFilter`, the top scorer is exactly the choice of consistent hashing with
bounded loads: the same prompt lands on the same worker from every router replica, new prompts
spread evenly, and the mapping survives workers coming and going. Keying on the first block
instead would send every prompt that shares a system prompt to one home, which the load bound
then has to undo. Parameter: `num_virtual_nodes` per worker on the ring.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenfleet_router.bounded_load import DEFAULT_VIRTUAL_NODES, HashRing, ring_point
from tokenfleet_router.types import RequestInfo, Scores, WorkerLoad

KEY_BLOCK = 0


def request_key(request: RequestInfo) -> int | None:
    # Hashed again so that keys which are not uniform 64-bit hashes (trace block ids) still spread.
    if request.block_hashes:
        return ring_point((request.block_hashes[-1] % (1 << 64)).to_bytes(8, "big"))
    if request.session_id:
        return ring_point(request.session_id.encode())
    return None


class RingAffinityScorer:
    name = "ring-affinity"

    def __init__(self, num_virtual_nodes: int = DEFAULT_VIRTUAL_NODES) -> None:
        self.num_virtual_nodes = num_virtual_nodes
        self._ring = HashRing((), num_virtual_nodes)

    def _ring_for(self, names: Sequence[str]) -> HashRing:
        # The order of present workers does not depend on absent ones, so the ring is a cached
        # superset, rebuilt when a new worker appears or many have left.
        known = set(self._ring.workers)
        if not set(names) <= known:
            self._ring = HashRing(known | set(names), self.num_virtual_nodes)
        elif len(known) > 2 * len(names) + 16:
            self._ring = HashRing(names, self.num_virtual_nodes)
        return self._ring

    def score(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> Scores:
        key = request_key(request)
        if key is None:
            return {c.name: 0.0 for c in candidates}
        names = [c.name for c in candidates]
        present = set(names)
        order = [w for w in self._ring_for(names).order(key) if w in present]
        n = len(order)
        return {worker: 1.0 - i / n for i, worker in enumerate(order)}
