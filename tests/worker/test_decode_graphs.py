"""Decode steps through bucketed static buffers (CUDA graphs on CUDA) give the eager path's tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.worker.test_runner import BLOCK_SIZE, generate, prompts_of, table_for
from tokenfleet_worker.batch import SamplingParams, ScheduledSeq, StepBatch
from tokenfleet_worker.config import EngineConfig
from tokenfleet_worker.decode_graphs import geometric_buckets, smallest_fitting
from tokenfleet_worker.engine import Engine
from tokenfleet_worker.hf_config import load_model_config
from tokenfleet_worker.loader import parse_dtype
from tokenfleet_worker.make_model import make_model
from tokenfleet_worker.runner import TorchRunner, build_step_inputs, kv_bytes_per_block, move_metadata
from tokenfleet_worker.tokenizer import load_tokenizer_bundle

KV_BYTES = 4 * 1024**2
# Lengths that straddle block and bucket edges; five sequences pad to a batch bucket of six.
LENGTHS = {0: 3, 1: 11, 2: 17, 3: 6, 4: 1}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("graphs"), preset="tiny", seed=21)


@pytest.mark.unit
def test_geometric_buckets_pad_at_most_half() -> None:
    assert geometric_buckets(256) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    assert geometric_buckets(100)[-3:] == [64, 96, 100]
    assert geometric_buckets(1) == [1]
    buckets = geometric_buckets(512)
    for value in range(1, 513):
        fit = smallest_fitting(buckets, value)
        assert fit is not None and value <= fit <= max(2, value * 3 // 2 + 1)
    assert smallest_fitting(buckets, 513) is None


def test_static_decode_equals_eager_on_cpu(model_dir: Path) -> None:
    eager = TorchRunner(model_dir, block_size=BLOCK_SIZE, kv_cache_bytes=KV_BYTES)
    static = TorchRunner(model_dir, block_size=BLOCK_SIZE, kv_cache_bytes=KV_BYTES, decode_graphs=True)
    assert static.num_blocks == eager.num_blocks  # the sink block is extra, never handed out
    prompts = prompts_of(LENGTHS, eager.vocab_size)
    expected = generate(eager, prompts, 12, together=False)
    assert generate(static, prompts, 12, together=True) == expected
    assert generate(static, prompts, 12, together=False) == expected
    assert static.decode_graphs is not None
    assert (6, 8, False, False) in static.decode_graphs.entries  # five rows padded to six, up to 29 positions
    assert len({tuple(t) for t in expected.values()}) > 1


def test_only_plain_decode_steps_take_the_static_path(model_dir: Path) -> None:
    runner = TorchRunner(model_dir, block_size=BLOCK_SIZE, kv_cache_bytes=KV_BYTES, decode_graphs=True)
    graphs = runner.decode_graphs
    assert graphs is not None
    decode = ScheduledSeq(0, (5,), 9, table_for(0), True)
    assert graphs.bucket([decode]) == (1, 3)
    assert graphs.bucket([decode, ScheduledSeq(1, (5, 6), 0, table_for(1), True)]) is None  # prefill
    assert graphs.bucket([ScheduledSeq(0, (5,), 9, table_for(0), needs_sample=False)]) is None
    assert graphs.bucket([ScheduledSeq(0, (5,), 9, (1, 2), True)]) is None  # short table
    assert graphs.bucket([ScheduledSeq(0, (5,), 2048, tuple(range(600)), True)]) is None
    with pytest.raises(ValueError, match="does not cover position 9"):
        runner.execute(StepBatch((ScheduledSeq(0, (1,), 9, (1, 2), True),)))
    with pytest.raises(ValueError, match="block id outside"):
        runner.execute(StepBatch((ScheduledSeq(0, (1,), 0, (runner.num_blocks,), True),)))


def test_static_decode_keeps_seeded_sampling(model_dir: Path) -> None:
    sampling = SamplingParams(temperature=1.0, top_p=0.9, seed=5)
    eager = TorchRunner(model_dir, block_size=BLOCK_SIZE, kv_cache_bytes=KV_BYTES)
    static = TorchRunner(model_dir, block_size=BLOCK_SIZE, kv_cache_bytes=KV_BYTES, decode_graphs=True)
    prompts = prompts_of({0: 4, 1: 9}, eager.vocab_size)
    expected = generate(eager, prompts, 8, together=True, sampling=sampling)
    assert generate(static, prompts, 8, together=True, sampling=sampling) == expected


@pytest.mark.gpu
def test_cuda_graph_decode_equals_eager(model_dir: Path) -> None:
    """float32 so that padding the context cannot flip a near-tie between two tokens."""
    options = {"device": "cuda", "dtype": "float32", "block_size": BLOCK_SIZE, "kv_cache_bytes": KV_BYTES}
    eager = TorchRunner(model_dir, **options)  # type: ignore[arg-type]
    graphed = TorchRunner(model_dir, decode_graphs=True, **options)  # type: ignore[arg-type]
    prompts = prompts_of(LENGTHS, eager.vocab_size)
    expected = generate(eager, prompts, 16, together=False)
    assert generate(graphed, prompts, 16, together=True) == expected
    assert generate(graphed, prompts, 16, together=False) == expected
    assert graphed.decode_graphs is not None
    assert all(entry.graph is not None for entry in graphed.decode_graphs.entries.values())
    assert len(graphed.decode_graphs.entries) >= 3


@pytest.mark.gpu
def test_cuda_graph_decode_bf16_matches_batched_eager(model_dir: Path) -> None:
    options = {"device": "cuda", "dtype": "bfloat16", "block_size": BLOCK_SIZE, "kv_cache_bytes": KV_BYTES}
    eager = TorchRunner(model_dir, **options)  # type: ignore[arg-type]
    graphed = TorchRunner(model_dir, decode_graphs=True, **options)  # type: ignore[arg-type]
    prompts = prompts_of({0: 5, 1: 12}, eager.vocab_size)
    batch = StepBatch(
        tuple(ScheduledSeq(s, tuple(p), 0, table_for(s), needs_sample=False) for s, p in prompts.items())
    )
    eager.execute(batch)
    graphed.execute(batch)
    step = StepBatch(tuple(ScheduledSeq(s, (7,), len(p), table_for(s), True) for s, p in prompts.items()))
    assert graphed.decode_graphs is not None
    bucket = graphed.decode_graphs.bucket(step.seqs)
    assert bucket is not None
    with torch.inference_mode():
        got = graphed.decode_graphs.logits(step.seqs, bucket).cpu()
        # The eager reference: the same step's inputs as the regular path builds them.
        inputs = build_step_inputs(step, BLOCK_SIZE, eager.max_model_len)
        meta = move_metadata(inputs.meta, torch.device("cuda"))
        hidden = eager.model(inputs.input_ids.cuda(), inputs.positions.cuda(), eager.kv_caches, meta)
        want = eager.model.compute_logits(hidden).cpu()
    torch.testing.assert_close(got, want, atol=3e-2, rtol=0)


def engine_outputs(runner: TorchRunner, model_dir: Path, max_tokens: dict[str, int]) -> tuple[dict, int]:
    """Requests of different lengths through the real engine, half of them added mid-run, in a cache
    tight enough to preempt (16 blocks of 4 for up to 8 sequences): (tokens by request, preemptions)."""
    config = EngineConfig(max_num_seqs=8, max_batched_tokens=24, block_size=BLOCK_SIZE, max_model_len=96)
    engine = Engine(config, runner, load_tokenizer_bundle(model_dir))
    prompts = prompts_of({i: 3 + 4 * i for i in range(len(max_tokens))}, runner.vocab_size)
    requests = list(zip(max_tokens.items(), prompts.values(), strict=True))
    outputs: dict[str, list[int]] = {rid: [] for rid in max_tokens}
    for step in range(400):
        if step % 5 == 0 and requests:
            (rid, count), prompt = requests.pop(0)
            engine.add_request(
                rid, prompt, SamplingParams(max_tokens=count, temperature=0.0, ignore_eos=True)
            )
        for out in engine.step():
            outputs[out.request_id].extend(out.token_ids)
        if not requests and not engine.has_unfinished():
            return outputs, engine.stats().num_preemptions
    raise AssertionError("the engine did not finish")


def check_lookahead_gives_the_eager_tokens(model_dir: Path, **options: Any) -> None:
    """Guesses that hold (steady decoding) and guesses that fail (a request finishes or joins, a new
    block is needed, preemption) both leave the output as eager decoding makes it."""
    lengths = {"a": 9, "b": 23, "c": 4, "d": 17, "e": 30, "f": 12}
    dtype = parse_dtype(options.get("dtype", "float32"))
    options |= {"block_size": BLOCK_SIZE}
    options["kv_cache_bytes"] = 16 * kv_bytes_per_block(load_model_config(model_dir), BLOCK_SIZE, dtype)
    eager = TorchRunner(model_dir, **{k: v for k, v in options.items() if k not in GRAPH_OPTIONS})
    expected, preemptions = engine_outputs(eager, model_dir, lengths)
    assert {rid: len(tokens) for rid, tokens in expected.items()} == lengths and preemptions > 0
    ahead = TorchRunner(model_dir, decode_graphs=True, lookahead_decode=True, **options)
    assert engine_outputs(ahead, model_dir, lengths)[0] == expected
    graphs = ahead.decode_graphs
    assert graphs is not None and graphs.lookahead_used > 10 and graphs.lookahead_wasted > 3


GRAPH_OPTIONS = {"paged_attention", "fused_kernels"}


def test_lookahead_decoding_gives_the_eager_tokens(model_dir: Path) -> None:
    check_lookahead_gives_the_eager_tokens(model_dir)


@pytest.mark.gpu
def test_cuda_lookahead_with_fused_kernels_gives_the_eager_tokens(model_dir: Path) -> None:
    """float32, as above: padding must not flip near-ties. Graphs, kernels and lookahead together."""
    check_lookahead_gives_the_eager_tokens(
        model_dir, device="cuda", dtype="float32", paged_attention=True, fused_kernels=True
    )


def test_lookahead_needs_decode_graphs(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="lookahead_decode needs decode_graphs"):
        TorchRunner(model_dir, kv_cache_bytes=KV_BYTES, lookahead_decode=True)
