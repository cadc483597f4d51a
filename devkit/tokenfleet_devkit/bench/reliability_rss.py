"""Resident memory of named processes, sampled from /proc while a scenario runs (no psutil).

Each sample reads VmRSS (now) and VmHWM (the kernel's own peak, which catches spikes between
samples). A process's memory counts as bounded when it levels off: its peak over all its samples is
at most a little above its peak over the first half of them, so it does not keep growing with the
number of requests seen.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KIB_PER_MIB = 1024
# Growth allowed in the second half: allocator noise and a few caches filling, not a per-request leak.
PLATEAU_SLACK = 1.15
PLATEAU_SLACK_MIB = 24.0


def read_memory_kib(pid: int, proc: Path = Path("/proc")) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB, or None once the process is gone."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if "VmRSS" not in values:
        return None  # a zombie has no memory lines
    return values["VmRSS"], values.get("VmHWM", values["VmRSS"])


MIN_SAMPLES_TO_JUDGE = 8


@dataclass
class MemoryTrack:
    """One process's samples, from when it started serving (its start-up growth is not a leak)."""

    peaks_kib: list[int] = field(default_factory=list)
    start_kib: int | None = None

    def add(self, rss_kib: int, hwm_kib: int) -> None:
        if self.start_kib is None:
            self.start_kib = rss_kib
        # The high-water mark also catches spikes between samples.
        self.peaks_kib.append(max(rss_kib, hwm_kib))

    @property
    def peak_kib(self) -> int:
        return max(self.peaks_kib, default=0)

    @property
    def first_half_peak_kib(self) -> int:
        return max(self.peaks_kib[: len(self.peaks_kib) // 2], default=0)

    @property
    def is_bounded(self) -> bool | None:
        """Levelled off over this process's own sampled life; None with too few samples to say."""
        if len(self.peaks_kib) < MIN_SAMPLES_TO_JUDGE:
            return None
        first = self.first_half_peak_kib / KIB_PER_MIB
        return self.peak_kib / KIB_PER_MIB <= max(first * PLATEAU_SLACK, first + PLATEAU_SLACK_MIB)

    def as_dict(self) -> dict[str, Any]:
        def mib(kib: int | None) -> float | None:
            return None if kib is None else round(kib / KIB_PER_MIB, 1)

        return {
            "start_mib": mib(self.start_kib),
            "first_half_peak_mib": mib(self.first_half_peak_kib),
            "peak_mib": mib(self.peak_kib),
            "samples": len(self.peaks_kib),
            "bounded": self.is_bounded,
        }


class MemorySampler:
    """Samples `pids` (name -> pid) every `interval_s` on a thread until `stop`."""

    def __init__(self, pids: dict[str, int], interval_s: float = 0.25) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.tracks = {name: MemoryTrack() for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def add(self, name: str, pid: int) -> None:
        """A process that joined meanwhile (a worker that a scale-up started, once it serves)."""
        self.tracks.setdefault(name, MemoryTrack())
        self.pids[name] = pid

    def sample(self) -> None:
        for name, pid in list(self.pids.items()):
            memory = read_memory_kib(pid)
            if memory is not None:
                self.tracks[name].add(*memory)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> dict[str, dict[str, Any]]:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
        return {name: track.as_dict() for name, track in self.tracks.items()}
