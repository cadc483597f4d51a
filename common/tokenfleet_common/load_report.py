"""The cheap JSON load report a worker serves at `/load` and the router polls several times a second."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

LOAD_PATH = "/load"


@dataclass(frozen=True)
class LoadReport:
    waiting: int  # requests queued, not yet scheduled
    running: int  # requests in the running batch
    kv_cache_usage: float  # 0..1
    free_blocks: int
    total_blocks: int
    tokens_in_flight: int  # prompt + generated tokens of all admitted requests
    max_num_seqs: int
    draining: bool = False
    ready: bool = True
    # Prompt tokens still to prefill (queued prompts whole, the rest of partly prefilled ones):
    # the work ahead of a new request's first token. None from workers that do not count it; the
    # router then relies on its own counts.
    prefill_tokens_waiting: int | None = None
    # Prompt tokens the prefix cache can hold at most (KV blocks x block size; 0 without prefix
    # caching): the router forgets what a worker cached once it has sent it more than this.
    # None from workers that do not say.
    prefix_cache_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadReport:
        """Parse a report, ignoring unknown keys so newer workers stay readable by older routers."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
