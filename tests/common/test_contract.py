from __future__ import annotations

import pytest

from tokenfleet_common import metric_names, metric_profiles
from tokenfleet_common.load_report import LoadReport

pytestmark = pytest.mark.unit


def test_load_report_round_trips_and_ignores_unknown_keys() -> None:
    report = LoadReport(
        waiting=3,
        running=8,
        kv_cache_usage=0.5,
        free_blocks=10,
        total_blocks=20,
        tokens_in_flight=4096,
        max_num_seqs=64,
        draining=True,
    )
    data = report.to_dict() | {"added_in_a_later_version": 1}
    assert LoadReport.from_dict(data) == report


def test_metric_names_follow_prometheus_conventions() -> None:
    names = {k: v for k, v in vars(metric_names).items() if k.isupper() and k != "PREFIX"}
    assert all(v.startswith("tokenfleet_") for v in names.values())
    assert metric_names.KV_CACHE_USAGE.endswith("_ratio")
    assert all(
        v.endswith("_seconds") for k, v in names.items() if k in {"TTFT", "ITL", "TPOT", "E2E_LATENCY"}
    )
    assert len(set(names.values())) == len(names), "two constants share a metric name"


def test_profiles_cover_three_engines_and_unknown_is_a_clear_error() -> None:
    assert metric_profiles.profile("vllm").waiting == "vllm:num_requests_waiting"
    assert metric_profiles.profile("sglang").running == "sglang:num_running_reqs"
    with pytest.raises(ValueError, match="unknown metric profile 'tgi'"):
        metric_profiles.profile("tgi")
