"""The CPU C kernels against torch's ops, and the runner that uses them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.worker.paged_attention_interpret import random_case, reference
from tests.worker.test_runner import BLOCK_SIZE, generate, prompts_of
from tokenfleet_worker import cpu_kernels
from tokenfleet_worker.model import DecoderLayer, Linear
from tokenfleet_worker.runner import TorchRunner

pytestmark = pytest.mark.skipif(cpu_kernels.library() is None, reason="no AVX2 or no C compiler here")


@pytest.mark.parametrize("build", ["small_gemm", "small_gemm_avx2", "small_gemm_avx512"])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 6, 7, 13, 16, 31, 32])
@pytest.mark.parametrize(("out_features", "in_features"), [(16, 8), (256, 768), (2080, 521)])
def test_small_linear_matches_torch(build: str, rows: int, out_features: int, in_features: int) -> None:
    # Row counts cover every tile height of both builds and their remainders; 16 and 2080 outputs
    # leave column groups of one and of two panels; 521 inputs are odd.
    if build not in ("small_gemm", *cpu_kernels.gemm_builds()):
        pytest.skip(f"this CPU cannot run {build}")
    generator = torch.Generator().manual_seed(rows * 7 + out_features)
    x = torch.randn(rows, in_features, generator=generator)
    weight = torch.randn(out_features, in_features, generator=generator)
    bias = torch.randn(out_features, generator=generator)
    panels = cpu_kernels.pack_panels(weight)
    assert cpu_kernels.takes_linear(x, panels)
    without = cpu_kernels.small_linear(x, panels, None, build)
    torch.testing.assert_close(without, x @ weight.T, rtol=1e-5, atol=1e-4)
    with_bias = cpu_kernels.small_linear(x, panels, bias, build)
    torch.testing.assert_close(with_bias, F.linear(x, weight, bias), rtol=1e-5, atol=1e-4)


def test_the_default_build_is_the_widest_this_cpu_runs() -> None:
    builds = cpu_kernels.gemm_builds()
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        assert builds == ("small_gemm_avx2", "small_gemm_avx512")
    x, panels = torch.randn(5, 520), cpu_kernels.pack_panels(torch.randn(80, 520))
    # The same code path gives the same bits; the two builds tile the sums differently.
    assert torch.equal(
        cpu_kernels.small_linear(x, panels, None), cpu_kernels.small_linear(x, panels, None, builds[-1])
    )


def test_leading_dimensions_and_strided_input_are_kept() -> None:
    x = torch.randn(2, 3, 32)[:, :, :16]  # not contiguous
    weight = torch.randn(16, 16)
    out = cpu_kernels.small_linear(x, cpu_kernels.pack_panels(weight), None)
    assert out.shape == (2, 3, 16)
    torch.testing.assert_close(out, x @ weight.T, rtol=1e-5, atol=1e-5)


def test_panels_are_made_from_any_layout_of_the_weight() -> None:
    weight = torch.randn(24, 32)[:16]  # a view; its transpose's transpose is another
    x = torch.randn(3, 32)
    for view in (weight, weight.T.contiguous().T):
        torch.testing.assert_close(
            cpu_kernels.small_linear(x, cpu_kernels.pack_panels(view), None), x @ view.T
        )


@pytest.mark.parametrize(
    "weight",
    [torch.randn(8, 16), torch.randn(24, 16), torch.randn(16, 16, dtype=torch.float64), torch.randn(16, 0)],
    ids=["n-below-a-panel", "n-tail", "float64", "no-inputs"],
)
def test_weights_the_kernel_cannot_tile_are_refused(weight: torch.Tensor) -> None:
    assert not cpu_kernels.can_tile(weight)
    with pytest.raises(ValueError, match="cannot take"):
        cpu_kernels.pack_panels(weight)


@pytest.mark.parametrize(
    "x",
    [
        torch.randn(cpu_kernels.MAX_ROWS + 1, 16),  # prefill-sized: oneDNN's
        torch.randn(0, 16),
        torch.randn(2, 16, dtype=torch.float64),
        torch.randn(2, 12),  # not the weight's width
    ],
    ids=["many-rows", "no-rows", "float64", "wrong-width"],
)
def test_inputs_the_kernel_does_not_take_stay_on_torch(x: torch.Tensor) -> None:
    assert not cpu_kernels.takes_linear(x, cpu_kernels.pack_panels(torch.randn(16, 16)))


def test_the_kernel_is_built_once_per_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENFLEET_KERNEL_CACHE", str(tmp_path))
    compiler = "cc"
    first = cpu_kernels.build(compiler)
    stamp = first.stat().st_mtime_ns
    assert cpu_kernels.build(compiler) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no scratch left behind


def test_the_kernel_shares_torchs_openmp_runtime() -> None:
    # Two OpenMP runtimes would keep two thread pools spinning against each other on our two cores.
    maps = Path("/proc/self/maps").read_text().splitlines()
    runtimes = {line.split()[-1] for line in maps if "libgomp" in line}
    assert len(runtimes) == 1, runtimes


@pytest.mark.parametrize("sharpness", [1.0, 30.0], ids=["soft", "peaked"])
def test_paged_decode_attention_matches_gathered_sdpa(sharpness: float) -> None:
    q, k_cache, v_cache, tables, lens = random_case("cpu", torch.float32)
    q = q * sharpness  # peaked: most weights underflow to zero in the softmax
    got = cpu_kernels.paged_decode_attention(q, k_cache, v_cache, tables, lens)
    torch.testing.assert_close(got, reference(q, k_cache, v_cache, tables, lens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_paged_decode_attention_splits_few_sequences_across_threads(threads: int) -> None:
    # Fewer sequences than threads: each sequence's KV heads are split among the threads (three
    # threads split four KV heads unevenly, 1 + 1 + 2). Every sequence alone, and two together.
    gen = torch.Generator().manual_seed(1)
    k_cache, v_cache = (torch.randn(24, 4, 4, 16, generator=gen) for _ in range(2))
    q = torch.randn(2, 8, 16, generator=gen)
    tables = torch.stack([torch.randperm(24, generator=gen)[:10] for _ in range(2)])
    lens = torch.tensor([37, 3])
    want = reference(q, k_cache, v_cache, tables, lens)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for b in range(2):
            got = cpu_kernels.paged_decode_attention(
                q[b : b + 1], k_cache, v_cache, tables[b : b + 1], lens[b : b + 1]
            )
            torch.testing.assert_close(got, want[b : b + 1], atol=1e-5, rtol=1e-5)
        got = cpu_kernels.paged_decode_attention(q, k_cache, v_cache, tables, lens)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    finally:
        torch.set_num_threads(saved)


def test_paged_decode_attention_reads_queries_in_place() -> None:
    # The model hands it queries sliced out of the fused q/k/v rows: a row stride past the heads.
    q, k_cache, v_cache, tables, lens = random_case("cpu", torch.float32)
    rows = torch.randn(q.shape[0], q.shape[1] + 3, q.shape[2])
    rows[:, : q.shape[1]] = q
    got = cpu_kernels.paged_decode_attention(rows[:, : q.shape[1]], k_cache, v_cache, tables, lens)
    torch.testing.assert_close(got, reference(q, k_cache, v_cache, tables, lens), atol=1e-5, rtol=1e-5)


def test_paged_decode_attention_refuses_what_it_cannot_read() -> None:
    q, k_cache, v_cache, tables, lens = random_case("cpu", torch.float32)
    with pytest.raises(ValueError, match="context_lens"):
        cpu_kernels.paged_decode_attention(q, k_cache, v_cache, tables, lens * 100)
    with pytest.raises(ValueError, match="float32"):
        cpu_kernels.paged_decode_attention(q.double(), k_cache, v_cache, tables, lens)
    with pytest.raises(ValueError, match="contiguous"):
        cpu_kernels.paged_decode_attention(q, k_cache.transpose(0, 1), v_cache, tables, lens)


@pytest.mark.parametrize("with_residual", [False, True])
def test_add_rms_norm_matches_torch_and_updates_the_residual(with_residual: bool) -> None:
    x, residual, weight = torch.randn(5, 96), torch.randn(5, 96), torch.rand(96) + 0.5
    stream = x + residual if with_residual else x
    expected = F.rms_norm(stream, (96,), weight, 1e-5)
    kept = residual.clone()
    got = cpu_kernels.add_rms_norm(x, kept if with_residual else None, weight, 1e-5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if with_residual:
        torch.testing.assert_close(kept, stream, rtol=0, atol=0)


@pytest.mark.parametrize("size", [200, 13, 2048])  # eight-wide lanes with and without a scalar tail
def test_silu_mul_matches_torch(size: int) -> None:
    gate_up = torch.randn(40, 2 * size) * 4
    gate_up[0, : min(size, 6)] = torch.tensor([-200.0, -87.5, -20.0, 0.0, 30.0, 200.0])[: min(size, 6)]
    gate, up = gate_up.split(size, dim=-1)
    torch.testing.assert_close(cpu_kernels.silu_mul(gate_up), F.silu(gate) * up, rtol=1e-5, atol=1e-5)


def test_rope_and_cache_matches_apply_rope_and_the_cache_writes() -> None:
    from tokenfleet_worker.rope import apply_rope

    tokens, heads, kv_heads, head_dim, block_size = 6, 4, 2, 16, 4
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * head_dim)
    angles = torch.rand(tokens, 1, head_dim) * 6
    cos, sin = angles.cos(), angles.sin() * torch.where(torch.arange(head_dim) < head_dim // 2, -1.0, 1.0)
    slots = torch.tensor([9, 0, 17, 3, 30, 4])
    cache_shape = (8, block_size, kv_heads, head_dim)
    k_cache, v_cache = torch.zeros(cache_shape), torch.zeros(cache_shape)
    qk = qkv[:, : (heads + kv_heads) * head_dim].view(tokens, heads + kv_heads, head_dim)
    rotated = apply_rope(qk, cos, sin)
    values = qkv[:, (heads + kv_heads) * head_dim :].reshape(tokens, kv_heads, head_dim).clone()
    cpu_kernels.rope_and_cache(qkv, cos, sin, slots, k_cache, v_cache, heads)
    torch.testing.assert_close(qk, rotated, rtol=1e-5, atol=1e-5)  # in place
    keys_in_cache = k_cache.view(-1, kv_heads, head_dim)[slots]
    torch.testing.assert_close(keys_in_cache, rotated[:, heads:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(v_cache.view(-1, kv_heads, head_dim)[slots], values, rtol=0, atol=0)
    untouched = torch.ones(8 * block_size, dtype=torch.bool)
    untouched[slots] = False
    assert not k_cache.view(-1, kv_heads * head_dim)[untouched].any()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenfleet_worker.make_model import make_model

    return make_model(tmp_path_factory.mktemp("cpu-kernels") / "m", preset="tiny", seed=5)


def test_runner_with_and_without_the_kernels_decodes_the_same(model_dir: Path) -> None:
    options = {"block_size": BLOCK_SIZE, "kv_cache_bytes": 4 * 1024**2}
    # Every product of up to 32 rows on the kernel, whatever this CPU's measured crossover is.
    with_kernels = TorchRunner(model_dir, small_gemm_rows=cpu_kernels.MAX_ROWS, **options)  # type: ignore[arg-type]
    assert with_kernels.cpu_kernels  # the CPU float32 default where they compile
    torch_ops = TorchRunner(model_dir, cpu_kernels=False, **options)  # type: ignore[arg-type]
    # Contexts across block edges and in several decode groups; chunked prefills beside decodes.
    prompts = prompts_of({0: 3, 1: 17, 2: 9, 3: 40, 4: 1}, with_kernels.vocab_size)
    expected = generate(torch_ops, prompts, 10, together=True)
    assert generate(with_kernels, prompts, 10, together=True) == expected
    assert generate(with_kernels, prompts, 10, together=False) == expected
    assert generate(with_kernels, prompts, 10, together=True, prefill_chunk=7) == expected
    assert len({tuple(tokens) for tokens in expected.values()}) > 1


class CountedCalls:
    """A layer's one-call decode that counts its calls (a spy: it runs the real one)."""

    def __init__(self, inner: cpu_kernels.DecodeLayer) -> None:
        self.inner, self.rows, self.calls = inner, inner.rows, 0

    def __call__(self, *args: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        return self.inner(*args)  # type: ignore[arg-type]


def test_one_call_layers_decode_as_the_op_by_op_kernels(model_dir: Path) -> None:
    options = {
        "block_size": BLOCK_SIZE,
        "kv_cache_bytes": 4 * 1024**2,
        "small_gemm_rows": cpu_kernels.MAX_ROWS,
    }
    one_call = TorchRunner(model_dir, **options)  # type: ignore[arg-type]
    op_by_op = TorchRunner(model_dir, **options)  # type: ignore[arg-type]
    assert one_call.model.cpu_decode_rows == cpu_kernels.MAX_ROWS  # every layer planned
    op_by_op.model.cpu_decode_layers = []
    counted = CountedCalls(one_call.model.cpu_decode_layers[0])
    one_call.model.cpu_decode_layers[0] = counted  # type: ignore[call-overload]
    # Contexts across block edges; prefills chunked beside decodes take the op-by-op path.
    prompts = prompts_of({0: 3, 1: 17, 2: 9, 3: 40}, one_call.vocab_size)
    for together in (True, False):
        assert generate(one_call, prompts, 8, together=together, prefill_chunk=7) == generate(
            op_by_op, prompts, 8, together=together, prefill_chunk=7
        )
    assert counted.calls >= 2 * 7  # the decode-only steps went through the one-call layers
    for (k_one, v_one), (k_op, v_op) in zip(one_call.kv_caches, op_by_op.kv_caches, strict=True):
        torch.testing.assert_close(k_one, k_op, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(v_one, v_op, rtol=1e-5, atol=1e-5)


def test_a_layer_with_a_product_off_the_kernel_stays_op_by_op(model_dir: Path) -> None:
    runner = TorchRunner(model_dir, block_size=BLOCK_SIZE, kv_cache_bytes=4 * 1024**2, small_gemm_rows=8)
    layer = runner.model.layers[1]
    assert isinstance(layer, DecoderLayer) and runner.model.cpu_decode_rows == 8
    layer.mlp.down_proj.stop_small_gemm()
    assert runner.model.plan_cpu_decode(runner.kv_caches, BLOCK_SIZE) == 0 and layer.cpu_decode is None
    assert runner.model.cpu_decode_layers == []


def test_the_crossover_is_where_the_kernel_stops_winning() -> None:
    spare = torch.empty(cpu_kernels.MAX_ROWS, 256)

    def slow(x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.003)  # far slower than reading 0.8 MB of weights
        return spare[: x.shape[0]]

    def instant(x: torch.Tensor) -> torch.Tensor:  # a preallocated result: the kernel cannot win
        return spare[: x.shape[0]]

    def losing_from_four_rows(x: torch.Tensor) -> torch.Tensor:
        return slow(x) if x.shape[0] < 4 else instant(x)

    def product(key: str, library: Callable[[torch.Tensor], torch.Tensor]) -> cpu_kernels.Product:
        return cpu_kernels.Product(key, cpu_kernels.pack_panels(torch.randn(256, 768)), library)

    products = [
        product("slow", slow),
        product("slow", slow),  # pooled with the first
        product("instant", instant),
        product("from four", losing_from_four_rows),
    ]
    found = cpu_kernels.crossover_rows(products, repeats=1)
    assert found == {"slow": cpu_kernels.MAX_ROWS, "instant": 0, "from four": 2}


def test_the_runner_measures_the_crossover_per_weight_shape(model_dir: Path) -> None:
    runner = TorchRunner(model_dir, block_size=BLOCK_SIZE, kv_cache_bytes=4 * 1024**2)
    linears = [m for m in runner.model.modules() if isinstance(m, Linear)]
    shapes = {"x".join(map(str, m.weight.shape)) for m in linears}
    assert shapes == set(runner.small_gemm_rows) - {"tied head"}  # the tiny model's shapes all tile
    for module in linears:
        rows = runner.small_gemm_rows["x".join(map(str, module.weight.shape))]
        assert module.small_gemm_rows == rows and rows in (0, *cpu_kernels.CROSSOVER_CANDIDATES)
        assert (module.panels is None) == (rows == 0)  # the kernel's copy only where it is read
        assert module.weight.is_meta and module.packed is not None  # oneDNN's copy replaces the dense


def test_kernels_where_they_do_not_apply_are_an_error(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="cpu_kernels needs a CPU float32 model"):
        TorchRunner(model_dir, dtype="bfloat16", kv_cache_bytes=4 * 1024**2, cpu_kernels=True)


@pytest.mark.parametrize(("cli", "expected"), [([], True), (["--no-cpu-kernels"], False)])
def test_the_worker_uses_the_kernels_unless_told_not_to(
    model_dir: Path, cli: list[str], expected: bool
) -> None:
    from tokenfleet_worker.__main__ import build_parser, make_runner
    from tokenfleet_worker.config import build_worker_config
    from tokenfleet_worker.tokenizer import load_tokenizer_bundle

    args = vars(build_parser().parse_args(["--model", str(model_dir), "--kv-cache-bytes", "4MiB", *cli]))
    config = build_worker_config(args, {})
    runner, _ = make_runner(config, load_tokenizer_bundle(model_dir))
    assert isinstance(runner, TorchRunner) and runner.cpu_kernels is expected
