"""Prometheus metrics of one worker, in a registry of its own (so tests can run several apps).

Gauges and token counters are read from the engine's latest EngineStats at scrape time; latency
histograms and finish/reject counters are fed as events happen.

The Gateway API Inference Extension's endpoint picker, KEDA recipes and other vLLM-aware tools read
vLLM's names, so the main signals are also exported under them:

| tokenfleet name                            | vLLM name                               |
|--------------------------------------------|-----------------------------------------|
| tokenfleet_requests_waiting                | vllm:num_requests_waiting               |
| tokenfleet_requests_running                | vllm:num_requests_running               |
| tokenfleet_kv_cache_usage_ratio            | vllm:kv_cache_usage_perc (0..1), and    |
|                                            | vllm:gpu_cache_usage_perc (older name)  |
| tokenfleet_kv_cache_blocks_total, block size | vllm:cache_config_info{block_size,    |
|                                            |   num_gpu_blocks} = 1                   |
| tokenfleet_prompt_tokens_total             | vllm:prompt_tokens_total                |
| tokenfleet_generation_tokens_total         | vllm:generation_tokens_total            |
| tokenfleet_preemptions_total               | vllm:num_preemptions_total              |
| tokenfleet_prefix_cache_queries_total      | vllm:prefix_cache_queries_total         |
| tokenfleet_prefix_cache_hits_total         | vllm:prefix_cache_hits_total            |
| tokenfleet_time_to_first_token_seconds     | vllm:time_to_first_token_seconds        |
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tokenfleet_common import metric_names as m
from tokenfleet_worker.outputs import EngineStats

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    80.0,
)
TOKEN_GAP_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _StatsCollector(Collector):
    def __init__(
        self, stats: Callable[[], EngineStats], draining: Callable[[], bool], model_name: str
    ) -> None:
        self._stats = stats
        self._draining = draining
        self._model_name = model_name

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        gauges = [
            (m.REQUESTS_WAITING, "Requests queued, not yet scheduled.", s.num_waiting),
            (m.REQUESTS_RUNNING, "Requests in the running batch.", s.num_running),
            (m.TOKENS_IN_FLIGHT, "Prompt and generated tokens of running requests.", s.tokens_in_flight),
            (
                m.PREFILL_TOKENS_WAITING,
                "Prompt tokens still to prefill (queued prompts whole, partly prefilled ones' rest).",
                s.prefill_tokens_waiting,
            ),
            (m.KV_CACHE_USAGE, "Fraction of KV-cache blocks in use (0..1).", s.kv_cache_usage),
            (m.KV_BLOCKS_TOTAL, "KV-cache blocks in the pool.", s.num_total_blocks),
            (m.KV_BLOCKS_FREE, "KV-cache blocks free (including cached prefixes).", s.num_free_blocks),
            (m.DRAINING, "1 while the worker drains before exit.", 1.0 if self._draining() else 0.0),
        ]
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        counters = [
            (m.PROMPT_TOKENS, "Prompt tokens of requests that started generating.", s.num_prompt_tokens),
            (m.GENERATION_TOKENS, "Tokens generated.", s.num_generation_tokens),
            (m.PREFIX_CACHE_QUERIES, "Prompt tokens looked up in the prefix cache.", s.num_prefix_queries),
            (m.PREFIX_CACHE_HITS, "Prompt tokens found in the prefix cache.", s.num_prefix_hits),
            (m.PREEMPTIONS, "Sequences preempted for recompute.", s.num_preemptions),
        ]
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        yield from self._vllm_aliases(s)

    def _vllm_aliases(self, s: EngineStats) -> Iterator[Metric]:
        labels = ["model_name"]
        values = [self._model_name]
        for name, value, kind in (
            ("vllm:num_requests_waiting", s.num_waiting, GaugeMetricFamily),
            ("vllm:num_requests_running", s.num_running, GaugeMetricFamily),
            ("vllm:kv_cache_usage_perc", s.kv_cache_usage, GaugeMetricFamily),
            ("vllm:gpu_cache_usage_perc", s.kv_cache_usage, GaugeMetricFamily),
            ("vllm:prompt_tokens_total", s.num_prompt_tokens, CounterMetricFamily),
            ("vllm:generation_tokens_total", s.num_generation_tokens, CounterMetricFamily),
            ("vllm:num_preemptions_total", s.num_preemptions, CounterMetricFamily),
            ("vllm:prefix_cache_queries_total", s.num_prefix_queries, CounterMetricFamily),
            ("vllm:prefix_cache_hits_total", s.num_prefix_hits, CounterMetricFamily),
        ):
            family = kind(
                name, f"Alias of the tokenfleet metric for vLLM-aware tools ({name}).", labels=labels
            )
            family.add_metric(values, value)
            yield family
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "KV-cache configuration, for vLLM-aware tools.",
            labels=["block_size", "num_gpu_blocks", "enable_prefix_caching"],
        )
        info.add_metric([str(s.block_size), str(s.num_total_blocks), "True"], 1.0)
        yield info


class WorkerMetrics:
    """Implements EngineObserver; `registry` is what /metrics serves."""

    def __init__(
        self, *, stats: Callable[[], EngineStats], draining: Callable[[], bool], model_name: str
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ttft = Histogram(m.TTFT, "Time to first token.", buckets=LATENCY_BUCKETS, registry=r)
        self.vllm_ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Alias of the TTFT histogram.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            m.ITL, "Time between consecutive output tokens.", buckets=TOKEN_GAP_BUCKETS, registry=r
        )
        self.tpot = Histogram(
            m.TPOT,
            "Mean time per output token after the first, per request.",
            buckets=TOKEN_GAP_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            m.E2E_LATENCY, "Request latency, arrival to finish.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_time = Histogram(
            m.QUEUE_TIME, "Time from arrival to first scheduling.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            m.BATCH_SIZE, "Sequences per engine step.", buckets=BATCH_BUCKETS, registry=r
        )
        self.finished = Counter(
            m.REQUESTS_FINISHED.removesuffix("_total"), "Finished sequences.", ["finish_reason"], registry=r
        )
        self.rejected = Counter(
            m.REQUESTS_REJECTED.removesuffix("_total"),
            "Requests refused at the door.",
            ["reason"],
            registry=r,
        )
        r.register(_StatsCollector(stats, draining, model_name))

    def observe_step(self, num_seqs: int, num_tokens: int) -> None:
        self.batch_size.observe(num_seqs)

    def observe_first_token(self, ttft_s: float, queue_s: float) -> None:
        self.ttft.observe(ttft_s)
        self.vllm_ttft.observe(ttft_s)
        self.queue_time.observe(queue_s)

    def observe_token_gap(self, seconds: float) -> None:
        self.itl.observe(seconds)

    def observe_finished(self, reason: str, e2e_s: float, tpot_s: float | None) -> None:
        self.finished.labels(finish_reason=reason).inc()
        self.e2e.observe(e2e_s)
        if tpot_s is not None:
            self.tpot.observe(tpot_s)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()
