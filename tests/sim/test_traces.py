import itertools
import json
import random
from pathlib import Path

import pytest

from tokenfleet_devkit import traces

pytestmark = pytest.mark.unit


@pytest.fixture
def trace_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / traces.AZURE_CODE).write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:04.0319600,3180,8\n"
        "2023-11-16 18:17:03.9799600,4808,10\n"
        "2023-11-16 18:18:03.9799600,110,0\n"
    )
    (tmp_path / traces.MOONCAKE_CONVERSATION).write_text(
        '{"timestamp": 3000, "input_length": 1024, "output_length": 5, "hash_ids": [0, 2]}\n'
        '{"timestamp": 0, "input_length": 600, "output_length": 7, "hash_ids": [0, 1]}\n'
    )
    (tmp_path / traces.SERVEGEN_RATE).write_text(
        "timestamp_s,total_rate_rps,active_clients,rate_weighted_cv,max_client_rate_rps\n0,2.0,1,1,1\n600,0.0,1,1,1\n"
    )
    mixture = {"fields": {"input_tokens": {"100": 0.5, "300": 0.5}, "output_tokens": {"10": 1.0}}}
    (tmp_path / traces.SERVEGEN_LENGTHS).write_text(json.dumps(mixture))
    monkeypatch.setenv("TOKENFLEET_TRACES", str(tmp_path))
    return tmp_path


def test_azure_loader_sorts_and_parses_seven_digit_fractions(trace_dir: Path) -> None:
    records = traces.load_azure_code()
    assert [r.prompt_tokens for r in records] == [4808, 3180, 110]
    assert records[0].arrival_s == 0.0
    assert records[1].arrival_s == pytest.approx(0.052)
    assert records[2].arrival_s == pytest.approx(60.0)
    assert records[2].output_tokens == 1  # zero-length outputs still produce one token


def test_mooncake_loader_keeps_prefix_ids(trace_dir: Path) -> None:
    records = traces.load_mooncake()
    assert [(r.arrival_s, r.hash_ids) for r in records] == [(0.0, (0, 1)), (3.0, (0, 2))]


def test_servegen_arrivals_follow_the_rate_curve(trace_dir: Path) -> None:
    sampler = traces.load_servegen_lengths()
    assert sampler.mean_lengths == pytest.approx((200.0, 10.0))
    records = traces.servegen_requests(traces.load_servegen_rate(), sampler, 1200.0, rate_scale=1.0, seed=1)
    assert 1000 < len(records) < 1400  # Poisson with mean 1200 in the first window, none in the second
    assert all(r.arrival_s < 600.0 for r in records)
    assert {r.prompt_tokens for r in records} == {100, 300}


def test_a_missing_trace_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENFLEET_TRACES", str(tmp_path / "nowhere"))
    with pytest.raises(traces.TraceMissing, match="TOKENFLEET_TRACES"):
        traces.load_azure_code()


def test_rate_scaling_keeps_identity_at_one_and_multiplies_counts() -> None:
    rng = random.Random(0)
    records = sorted(
        (traces.TraceRecord(rng.uniform(0, 600), 100, 10, (1, 2)) for _ in range(1000)),
        key=lambda r: r.arrival_s,
    )
    assert traces.scale_rate(records, 1.0) == records
    doubled = traces.scale_rate(records, 2.0, jitter_s=5.0)
    assert len(doubled) == 2000
    assert all(a.arrival_s <= b.arrival_s for a, b in itertools.pairwise(doubled))
    assert len({r.hash_ids for r in doubled}) == 2  # copies carry their own prefix ids
    assert 400 < len(traces.scale_rate(records, 0.5)) < 600
    with pytest.raises(ValueError):
        traces.scale_rate(records, 0.0)


def test_length_scaling_multiplies_and_never_reaches_zero() -> None:
    records = [traces.TraceRecord(0.0, 10, 1)]
    assert traces.scale_lengths(records, 3.0)[0].prompt_tokens == 30
    assert traces.scale_lengths(records, 0.01)[0].output_tokens == 1
