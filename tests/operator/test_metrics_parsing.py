"""Exposition parsing, counter rates and histogram percentiles, fed real exposition text."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tokenfleet_common import metric_names as m
from tokenfleet_common.metric_profiles import SGLANG, TOKENFLEET, VLLM
from tokenfleet_operator.metrics_parsing import (
    MetricsFormatError,
    bucket_deltas,
    counter_rate,
    histogram_quantile,
    parse_pod_sample,
    parse_router_held,
)

pytestmark = pytest.mark.unit

VLLM_TEXT = """\
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama"} 7.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 12.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="llama"} 0.42
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="llama"} 12000.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="llama"} 34000.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="llama"} 10.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="llama"} 90.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="llama"} 100.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="llama"} 100.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="llama"} 21.0
"""


def tokenfleet_text(waiting: float, prompt: float, ttft_values: list[float]) -> str:
    registry = CollectorRegistry()
    Gauge(m.REQUESTS_WAITING, "w", registry=registry).set(waiting)
    Gauge(m.REQUESTS_RUNNING, "r", registry=registry).set(5)
    Gauge(m.KV_CACHE_USAGE, "kv", registry=registry).set(0.5)
    Gauge(m.TOKENS_IN_FLIGHT, "t", registry=registry).set(900)
    Gauge(m.KV_BLOCKS_TOTAL, "b", registry=registry).set(1024)
    Counter(m.PROMPT_TOKENS.removesuffix("_total"), "p", registry=registry).inc(prompt)
    Counter(m.GENERATION_TOKENS.removesuffix("_total"), "g", registry=registry).inc(2 * prompt)
    ttft = Histogram(m.TTFT, "ttft", buckets=(0.1, 0.25, 0.5, 1.0, 2.5), registry=registry)
    for v in ttft_values:
        ttft.observe(v)
    return generate_latest(registry).decode()


def test_tokenfleet_text_from_prometheus_client() -> None:
    sample = parse_pod_sample(tokenfleet_text(3, 1000, [0.05, 0.3, 0.3]), TOKENFLEET)
    assert (sample.waiting, sample.running, sample.kv_usage) == (3, 5, 0.5)
    assert sample.tokens_in_flight == 900 and sample.kv_blocks_total == 1024
    assert sample.prompt_tokens_total == 1000 and sample.generation_tokens_total == 2000
    assert dict(sample.ttft_buckets)[0.5] == 3 and dict(sample.ttft_buckets)[0.1] == 1


def test_vllm_text_with_labels() -> None:
    sample = parse_pod_sample(VLLM_TEXT, VLLM)
    assert (sample.waiting, sample.running, sample.kv_usage) == (7, 12, 0.42)
    assert sample.prompt_tokens_total == 12000 and sample.generation_tokens_total == 34000
    assert sample.tokens_in_flight == 0
    assert histogram_quantile(0.5, sample.ttft_buckets) == pytest.approx(0.1 + 0.4 * 40 / 80)


def test_missing_profile_metrics_is_an_error() -> None:
    with pytest.raises(MetricsFormatError, match="sglang"):
        parse_pod_sample(VLLM_TEXT, SGLANG)
    with pytest.raises(MetricsFormatError):
        parse_pod_sample("this is { not exposition", TOKENFLEET)


def test_router_held() -> None:
    registry = CollectorRegistry()
    Gauge(m.ROUTER_HELD, "held", registry=registry).set(4)
    assert parse_router_held(generate_latest(registry).decode()) == 4
    assert parse_router_held("") == 0


@pytest.mark.parametrize(
    ("previous", "current", "seconds", "rate"),
    [(None, 100.0, 5.0, 0.0), (100.0, 150.0, 5.0, 10.0), (100.0, 30.0, 5.0, 6.0), (1.0, 2.0, 0.0, 0.0)],
)
def test_counter_rate(previous: float | None, current: float, seconds: float, rate: float) -> None:
    assert counter_rate(previous, current, seconds) == pytest.approx(rate)


def test_percentile_over_the_interval_only() -> None:
    before = parse_pod_sample(tokenfleet_text(0, 10, [0.05] * 100), TOKENFLEET).ttft_buckets
    after = parse_pod_sample(tokenfleet_text(0, 10, [0.05] * 100 + [2.0] * 20), TOKENFLEET).ttft_buckets
    assert histogram_quantile(0.95, after) == pytest.approx(1.0 + 1.5 * (114 - 100) / 20)
    assert histogram_quantile(0.95, bucket_deltas(before, after)) == pytest.approx(1.0 + 1.5 * 0.95)


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.95, (), None),
        (0.95, ((1.0, 0.0), (float("inf"), 0.0)), None),
        (0.5, ((1.0, 10.0), (2.0, 20.0), (float("inf"), 20.0)), 1.0),
        (0.99, ((1.0, 0.0), (2.0, 10.0), (float("inf"), 100.0)), 2.0),  # rank in +Inf: largest finite bound
        (0.25, ((1.0, 4.0), (float("inf"), 4.0)), 0.25),
    ],
)
def test_histogram_quantile(
    q: float, buckets: tuple[tuple[float, float], ...], expected: float | None
) -> None:
    got = histogram_quantile(q, buckets)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_bucket_deltas_on_reset() -> None:
    before = ((1.0, 50.0), (float("inf"), 60.0))
    after = ((1.0, 5.0), (float("inf"), 6.0))
    assert bucket_deltas(before, after) == after
