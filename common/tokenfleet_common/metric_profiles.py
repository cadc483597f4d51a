"""Which metric names mean what, per inference engine, so the operator and router can drive
tokenfleet workers as well as vLLM and SGLang servers."""

from __future__ import annotations

from dataclasses import dataclass

from tokenfleet_common import metric_names as m


@dataclass(frozen=True)
class MetricProfile:
    name: str
    waiting: str  # gauge: requests queued
    running: str  # gauge: requests in the batch
    kv_usage: str  # gauge: 0..1 fraction of KV cache in use
    prompt_tokens: str  # counter
    generation_tokens: str  # counter
    ttft: str  # histogram base name (without _bucket)
    preemptions: str = ""  # counter, optional


TOKENFLEET = MetricProfile(
    name="tokenfleet",
    waiting=m.REQUESTS_WAITING,
    running=m.REQUESTS_RUNNING,
    kv_usage=m.KV_CACHE_USAGE,
    prompt_tokens=m.PROMPT_TOKENS,
    generation_tokens=m.GENERATION_TOKENS,
    ttft=m.TTFT,
    preemptions=m.PREEMPTIONS,
)

VLLM = MetricProfile(
    name="vllm",
    waiting="vllm:num_requests_waiting",
    running="vllm:num_requests_running",
    kv_usage="vllm:kv_cache_usage_perc",
    prompt_tokens="vllm:prompt_tokens_total",
    generation_tokens="vllm:generation_tokens_total",
    ttft="vllm:time_to_first_token_seconds",
    preemptions="vllm:num_preemptions_total",
)

SGLANG = MetricProfile(
    name="sglang",
    waiting="sglang:num_queue_reqs",
    running="sglang:num_running_reqs",
    kv_usage="sglang:token_usage",
    prompt_tokens="sglang:prompt_tokens_total",
    generation_tokens="sglang:generation_tokens_total",
    ttft="sglang:time_to_first_token_seconds",
)

PROFILES: dict[str, MetricProfile] = {p.name: p for p in (TOKENFLEET, VLLM, SGLANG)}


def profile(name: str) -> MetricProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown metric profile {name!r}; known: {', '.join(PROFILES)}") from None
