"""Pure metric arithmetic: exposition text to per-pod samples, counter rates, histogram percentiles.

Names come from a MetricProfile (tokenfleet, vLLM, SGLang). Series of one name are summed over their
labels (vLLM labels every series with the model name), except KV usage, where the largest wins.
Percentiles interpolate linearly inside the bucket that holds the rank, as PromQL's
`histogram_quantile` does, over bucket *deltas* between two scrapes (the last interval only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tokenfleet_common import metric_names
from tokenfleet_common.metric_profiles import MetricProfile

Buckets = tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending, +Inf last


@dataclass(frozen=True)
class PodSample:
    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0
    tokens_in_flight: float = 0.0
    kv_blocks_total: float = 0.0
    prompt_tokens_total: float = 0.0
    generation_tokens_total: float = 0.0
    ttft_buckets: Buckets = ()


class MetricsFormatError(ValueError):
    """The text is not Prometheus exposition format."""


def sample_values(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample in the text, by sample name, with its labels."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsFormatError(f"not Prometheus text exposition: {exc}") from exc
    return out


def _sum(values: Mapping[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _, v in values.get(name, []) if not math.isnan(v))


def _max(values: Mapping[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    found = [v for _, v in values.get(name, []) if not math.isnan(v)]
    return max(found) if found else 0.0


def buckets_of(values: Mapping[str, list[tuple[dict[str, str], float]]], histogram: str) -> Buckets:
    by_bound: dict[float, float] = {}
    for labels, value in values.get(f"{histogram}_bucket", []):
        bound = float(labels.get("le", "+Inf"))
        by_bound[bound] = by_bound.get(bound, 0.0) + value
    return tuple(sorted(by_bound.items()))


def has_profile_metrics(values: Mapping[str, object], profile: MetricProfile) -> bool:
    return profile.waiting in values or profile.kv_usage in values


def parse_pod_sample(text: str, profile: MetricProfile) -> PodSample:
    """One worker's exposition text as the figures the policy needs; raises if none of them is present."""
    values = sample_values(text)
    if not has_profile_metrics(values, profile):
        raise MetricsFormatError(
            f"no {profile.name} metrics ({profile.waiting}, {profile.kv_usage}) in the text"
        )
    return PodSample(
        waiting=_sum(values, profile.waiting),
        running=_sum(values, profile.running),
        kv_usage=_max(values, profile.kv_usage),
        tokens_in_flight=_sum(values, metric_names.TOKENS_IN_FLIGHT) if profile.name == "tokenfleet" else 0.0,
        kv_blocks_total=_sum(values, metric_names.KV_BLOCKS_TOTAL) if profile.name == "tokenfleet" else 0.0,
        prompt_tokens_total=_sum(values, profile.prompt_tokens),
        generation_tokens_total=_sum(values, profile.generation_tokens),
        ttft_buckets=buckets_of(values, profile.ttft),
    )


def parse_router_held(text: str) -> int:
    return int(_sum(sample_values(text), metric_names.ROUTER_HELD))


def counter_rate(previous: float | None, current: float, seconds: float) -> float:
    """Per-second increase; a counter that went down was reset (restart), so it counts from zero."""
    if previous is None or seconds <= 0:
        return 0.0
    increase = current - previous if current >= previous else current
    return increase / seconds


def bucket_deltas(previous: Buckets, current: Buckets) -> Buckets:
    """Observations per bucket since the previous scrape; a reset counts from zero."""
    before = dict(previous)
    if any(count < before.get(bound, 0.0) for bound, count in current):
        return current
    return tuple((bound, count - before.get(bound, 0.0)) for bound, count in current)


def add_buckets(all_buckets: Iterable[Buckets]) -> Buckets:
    total: dict[float, float] = {}
    for buckets in all_buckets:
        for bound, count in buckets:
            total[bound] = total.get(bound, 0.0) + count
    return tuple(sorted(total.items()))


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative buckets; None when they hold no observations.

    Within the bucket holding the rank the value is interpolated linearly from its lower bound (0 for
    the first). A rank in the +Inf bucket returns the largest finite bound, like PromQL.
    """
    if not buckets or not 0.0 <= q <= 1.0:
        return None
    buckets = sorted(buckets)
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            in_bucket = count - lower_count
            if in_bucket <= 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket
        lower_bound, lower_count = bound, count
    return lower_bound
