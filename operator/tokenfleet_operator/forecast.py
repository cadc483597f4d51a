"""The leading signal: the routers' request rate, forecast one replica start-up ahead.

Queue, KV and TTFT readings move only once a burst has queued on the workers, and a replica ordered
then serves a cold start later. The routers count each request as they send it to a worker, so their
rate moves first. This module turns that rate into the replicas the load will need when a replica
ordered now turns ready:

    level, trend = Holt's linear smoothing of the dispatched rate over the last intervals
    forecast     = max(0, level + trend * damping * horizon)           requests per second
    load         = forecast * tokens per request / tokens per second one replica carries
    demand       = load + SPARE * sqrt(load)                            replicas

The same counts tell bursts from noise (`is_bursty`): requests arriving independently (Poisson) give
per-interval counts whose variance equals their mean (index of dispersion 1); copies and sessions raise
it to a few; bursts that fall silent and come back raise it to tens or hundreds.

Tokens per request is measured (tokens the workers processed over requests the routers sent, over the
whole history), and the per-replica throughput is learned from the fleet's own history (the larger of
the policy's planned rate and the rate of replicas that worked flat out, since the spare is added
here), so no capacity is configured by hand. Pure: the
time is in the snapshots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tokenfleet_operator.snapshot import FleetSnapshot

# A replica ordered now serves after pod scheduling, image pull and model load: about a minute.
HORIZON_SECONDS = 60.0
# Smoothing time constants of the level and of the trend, in seconds (so a short metrics interval, whose
# counts are few and noisy, is smoothed as much as a long one): the level follows a burst within
# seconds; the trend is steadier, so one noisy interval does not order a fleet.
LEVEL_SECONDS = 8.0
TREND_SECONDS = 25.0
# Only part of the trend is extrapolated: bursts level off, and a trend read over seconds is noisy.
TREND_DAMPING = 0.5
# Square-root staffing: a load that arrives independently swings by about the square root of its mean,
# so a fleet sized for the mean needs spare in proportion to that root: a large share of a small fleet
# (where one long request is a large share of a replica) and a small share of a large one.
SPARE = 0.5
# The leading signal orders replicas only where the forecast rises this much above every smoothed level
# of the last RECENT_SECONDS (load the fleet has not carried yet); elsewhere it asks for nothing.
RISE = 0.1
RECENT_SECONDS = 60.0
# History a snapshot's demand needs before it to stop depending on where the history starts: the
# recent levels it is compared with, and a few trend time constants before those.
WARMUP_SECONDS = RECENT_SECONDS + 2 * TREND_SECONDS
# Index of dispersion of per-interval request counts above which swings are bursts, not noise.
BURSTY_DISPERSION = 10.0


@dataclass(frozen=True)
class Forecast:
    time: float
    level: float  # requests per second now, smoothed
    rate: float  # requests per second expected one horizon ahead


def _rates(history: Sequence[FleetSnapshot]) -> list[tuple[float, float]]:
    return [
        (s.time, s.dispatched_per_second)
        for s in history
        if not s.is_stale and s.dispatched_per_second is not None
    ]


def forecasts(history: Sequence[FleetSnapshot], horizon_s: float = HORIZON_SECONDS) -> list[Forecast]:
    """One forecast per snapshot that carries a router rate, each from the snapshots up to it; a
    `horizon_s` of 0 forecasts the smoothed level."""
    out: list[Forecast] = []
    level = trend = 0.0
    previous_time: float | None = None
    for time, rate in _rates(history):
        if previous_time is None:
            level, trend = rate, 0.0
        else:
            dt = max(time - previous_time, 1e-9)
            level_weight = 1.0 - math.exp(-dt / LEVEL_SECONDS)
            trend_weight = 1.0 - math.exp(-dt / TREND_SECONDS)
            predicted = level + trend * dt
            new_level = level_weight * rate + (1.0 - level_weight) * predicted
            trend = trend_weight * (new_level - level) / dt + (1.0 - trend_weight) * trend
            level = new_level
        previous_time = time
        out.append(Forecast(time, level, max(0.0, level + trend * TREND_DAMPING * horizon_s)))
    return out


def _bursty(rates: Sequence[tuple[float, float]], end: int, since: float) -> bool | None:
    """Whether the request counts of the intervals ending at or after `since`, up to reading `end`,
    came in bursts."""
    counts: list[float] = []
    for i in range(end, 0, -1):
        time, rate = rates[i]
        if time < since:
            break
        counts.append(rate * (time - rates[i - 1][0]))
    if len(counts) < 2:
        return None
    mean = sum(counts) / len(counts)
    if mean <= 0:
        return None
    variance = sum((c - mean) ** 2 for c in counts) / len(counts)
    return variance / mean > BURSTY_DISPERSION


def is_bursty(history: Sequence[FleetSnapshot], window_s: float, now: float) -> bool | None:
    """Whether requests over the last `window_s` came in bursts (variance of per-interval counts over
    `BURSTY_DISPERSION` times their mean); None when the routers reported too little to tell."""
    rates = [r for r in _rates(history) if r[0] <= now]
    return _bursty(rates, len(rates) - 1, now - window_s)


def tokens_per_request(history: Sequence[FleetSnapshot]) -> float | None:
    """Tokens the workers processed per request the routers sent, over the history; None without
    traffic. Both are rates over the same intervals, so their sums' ratio weighs busy intervals most."""
    fresh = [s for s in history if not s.is_stale and s.dispatched_per_second is not None]
    requests = sum(s.dispatched_per_second or 0.0 for s in fresh)
    tokens = sum(s.tokens_per_second for s in fresh)
    if requests <= 0 or tokens <= 0:
        return None
    return tokens / requests


@dataclass(frozen=True)
class Demand:
    replicas: float  # the forecast load plus spare, in replicas
    is_rising: bool  # the forecast is above every smoothed level of the recent past: load not yet carried


def demand_by_time(
    history: Sequence[FleetSnapshot],
    planned_tokens_per_replica: float | None,
    trend_window_s: float | None = None,
    recent_s: float = RECENT_SECONDS,
) -> dict[float, Demand]:
    """The replicas the forecast load needs, by snapshot time; empty when the routers report no rate
    or the fleet has not learned what a replica carries. With `trend_window_s`, a snapshot whose
    arrivals over that window before it came in bursts (a trend over seconds then says nothing about
    the next minute) forecasts its smoothed level instead of extrapolating the trend.
    A demand is rising where its forecast tops every smoothed level of the `recent_s` before it by more
    than `RISE`: only then may it order replicas, so noise on a steady load never does.

    Whether a snapshot's demand is rising depends only on the snapshots up to it, never on later
    ones: the scale-down window re-reads past asks, and an ask that a later reading withdrew would
    let the fleet shrink right after it grew (it flapped every second on a light load)."""
    per_request = tokens_per_request(history)
    if not planned_tokens_per_replica or per_request is None:
        return {}
    scale = per_request / planned_tokens_per_replica
    rates = _rates(history)
    ahead = forecasts(history, HORIZON_SECONDS)
    out = {}
    first_recent = 0  # ahead[first_recent:i] are the forecasts of the `recent_s` before the i-th
    for i, f in enumerate(ahead):
        is_trend_read = trend_window_s is None or _bursty(rates, i, f.time - trend_window_s) is False
        rate = f.rate if is_trend_read else max(0.0, f.level)
        while ahead[first_recent].time < f.time - recent_s:
            first_recent += 1
        recent = max((g.level for g in ahead[first_recent:i]), default=None)
        load = rate * scale
        is_rising = recent is not None and rate > recent * (1.0 + RISE)
        out[f.time] = Demand(load + SPARE * math.sqrt(load), is_rising)
    return out
