"""C kernels for the CPU decode step: a small-batch matrix product, paged decode attention and
fused elementwise ops.

A CPU decode step is bound by reading the weights once (at 1-32 rows), by the FMAs past that, and
by attention over scattered cache blocks. oneDNN (on packed weights) and MKL read weights at 40-65%
of the bandwidth a plain reduction reaches on the AMD EPYC VMs we run on; `csrc/small_gemm.c`
streams them, in its own panel layout (`pack_panels`), at close to it.
`csrc/paged_decode.c` attends straight from the paged cache, with no gathered, padded copy of each
context. `csrc/fused_ops.c` does the residual add + RMSNorm, rotary embedding + cache write and
SwiGLU of a layer in three calls where torch ran ~20 ops, each costing its dispatch at decode sizes.
`csrc/decode_layer.c` strings them together so a decode-only step costs one call a layer
(`DecodeLayer`). Prefill-sized products stay on oneDNN, which is faster there; prefill attention
on SDPA.

The kernels are plain C with OpenMP (float32, AVX2 + FMA; the product also in AVX-512, chosen at
run time where the CPU has it), compiled on first use with the system C compiler into a cache
folder (about a second) and called through ctypes: no torch headers, no build step at install.
They link the `libgomp.so.1` torch has already loaded, so both share one thread pool. Where there
is no compiler or no AVX2, `library()` is None and the model keeps torch's ops.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCES = tuple(
    Path(__file__).parent / "csrc" / name
    for name in ("small_gemm.c", "paged_decode.c", "fused_ops.c", "decode_layer.c")
)
HEADERS = (Path(__file__).parent / "csrc" / "vector_exp.h",)  # part of the build's cache key
# -fno-math-errno: sqrtf compiles to one instruction (no errno branch); expf comes from -lm.
FLAGS = ("-O3", "-mavx2", "-mfma", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC")
# The most rows the small-batch kernel ever takes: prefill chunks (hundreds of rows) are oneDNN's,
# whose cache blocking the kernel does not do. Below it, where the kernel beats oneDNN depends on
# the CPU, so the runner measures the crossover (`crossover_rows`): on AVX2-only AMD EPYC VMs the
# earlier dot-product kernel won at every row count up to 32 (1.25-1.8x oneDNN at 1-16 rows); on
# an AVX-512 Xeon the panel kernel won at every count up to 64 on weights streamed from memory
# (1.2x at 32-48 rows; 100M Llama, Nov 2026).
MAX_ROWS = 64
CROSSOVER_CANDIDATES = (1, 2, 4, 8, 16, 32, 48, 64)

_POINTER = ctypes.c_void_p
_INT = ctypes.c_int64
_GEMM = ([_POINTER] * 4 + [_INT] * 3 + [ctypes.c_int], None)


class LayerPlan(ctypes.Structure):
    """`layer_plan` of csrc/decode_layer.c: what a layer's one-call decode reads every step."""

    _fields_ = [
        *((name, ctypes.c_void_p) for name in ("qkv", "qkv_bias", "o", "o_bias", "gate_up", "down")),
        *((name, ctypes.c_void_p) for name in ("input_norm", "post_norm", "k_cache", "v_cache")),
        *((name, ctypes.c_int64) for name in ("hidden", "intermediate", "heads", "kv_heads")),
        *((name, ctypes.c_int64) for name in ("head_dim", "block_size")),
        ("eps", ctypes.c_float),
        ("scale", ctypes.c_float),
    ]


_PLAN = ctypes.POINTER(LayerPlan)
SIGNATURES = {
    "small_gemm": _GEMM,  # the widest build this CPU runs
    "small_gemm_avx2": _GEMM,
    "small_gemm_avx512": _GEMM,
    "has_avx512": ([], ctypes.c_int),
    "paged_decode_attention": (
        [_POINTER, _INT, _POINTER, _POINTER, _POINTER, _INT, _POINTER, _POINTER]
        + [_INT] * 5
        + [ctypes.c_float, ctypes.c_int],
        ctypes.c_int,
    ),
    "add_rms_norm": ([_POINTER] * 4 + [_INT] * 2 + [ctypes.c_float, ctypes.c_int], None),
    "silu_mul": ([_POINTER] * 2 + [_INT] * 2 + [ctypes.c_int], None),
    "rope_and_cache": (
        [_POINTER, _INT] + [_POINTER] * 5 + [_INT] * 4 + [ctypes.c_int],
        None,
    ),
    "decode_layer": ([_PLAN] + [_POINTER] * 8 + [_INT, _POINTER, _INT, ctypes.c_int], ctypes.c_int),
    "decode_layer_scratch": ([_PLAN, _INT], _INT),
}


def cache_dir() -> Path:
    """Where compiled kernels live: $TOKENFLEET_KERNEL_CACHE, else ~/.cache/tokenfleet/kernels."""
    configured = os.environ.get("TOKENFLEET_KERNEL_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tokenfleet" / "kernels"


def cpu_has_avx2() -> bool:
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def built_path() -> Path:
    """The compiled library for these sources and flags (an image can ship it prebuilt)."""
    key = b"".join(source.read_bytes() for source in (*SOURCES, *HEADERS)) + " ".join(FLAGS).encode()
    return cache_dir() / f"cpu_kernels-{hashlib.sha256(key).hexdigest()[:16]}.so"


def build(compiler: str) -> Path:
    """Compile the kernels once per sources and flags; concurrent workers race to an atomic rename."""
    target = built_path()
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        command = [compiler, *FLAGS, "-o", str(built), *map(str, SOURCES), "-lm"]
        subprocess.run(command, check=True, capture_output=True, text=True)
        os.replace(built, target)
    return target


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot run here (the reason is logged once)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cpu_has_avx2():
        log.info("CPU kernels off: this CPU has no AVX2")
        return None
    if compiler is None and not built_path().exists():
        log.warning("CPU kernels off: no C compiler found (set CC); decode runs on torch's ops")
        return None
    try:
        loaded = ctypes.CDLL(str(build(compiler) if compiler else built_path()))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        log.warning("CPU kernels off: building them failed: %s", detail.strip()[:500])
        return None
    for name, (arguments, result) in SIGNATURES.items():
        function = getattr(loaded, name)
        function.argtypes, function.restype = arguments, result
    return loaded


PANEL = 16  # output columns side by side in the product kernel's weight layout (`pack_panels`)


def can_tile(weight: torch.Tensor) -> bool:
    """Whether the product kernel can take this weight, [out_features, in_features]: CPU float32,
    out_features a multiple of `PANEL`, and the kernels built here."""
    return (
        weight.dim() == 2
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and weight.shape[0] % PANEL == 0
        and weight.shape[1] > 0
        and library() is not None
    )


def pack_panels(weight: torch.Tensor) -> torch.Tensor:
    """The weight in the product kernel's layout, [out/PANEL, in, PANEL]: for each input index the
    PANEL outputs' weights side by side, so a tile reads each panel as one sequential stream."""
    if not can_tile(weight):
        raise ValueError(f"the CPU product kernel cannot take a {tuple(weight.shape)} {weight.dtype} weight")
    out_features, in_features = weight.shape
    return weight.detach().reshape(out_features // PANEL, PANEL, in_features).transpose(1, 2).contiguous()


def takes_linear(x: torch.Tensor, panels: torch.Tensor, max_rows: int = MAX_ROWS) -> bool:
    """Whether `small_linear` takes `x` against these panels (`pack_panels`): CPU float32 rows of
    the panels' width, at least one and at most `max_rows` (and `MAX_ROWS`)."""
    if x.shape[-1] != panels.shape[1]:
        return False
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    return 0 < rows <= min(max_rows, MAX_ROWS) and x.dtype == torch.float32 and x.device.type == "cpu"


def loaded() -> ctypes.CDLL:
    kernels = library()
    if kernels is None:
        raise RuntimeError("the CPU kernels are not available here (no AVX2 or no C compiler)")
    return kernels


def gemm_builds() -> tuple[str, ...]:
    """The builds of the product kernel this CPU can run, by their C names (`small_linear`'s `build`)."""
    return ("small_gemm_avx2", *(("small_gemm_avx512",) if loaded().has_avx512() else ()))


def small_linear(
    x: torch.Tensor, panels: torch.Tensor, bias: torch.Tensor | None, build: str = "small_gemm"
) -> torch.Tensor:
    """x W^T + b on the small-batch kernel, W given as `pack_panels(W)`; the caller has checked
    `takes_linear`. `build` names one of `gemm_builds()` (tests); by default the kernel picks the
    widest this CPU runs."""
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    bias = bias.contiguous() if bias is not None else None
    out_features = panels.shape[0] * PANEL
    out = torch.empty((rows.shape[0], out_features), dtype=torch.float32)
    getattr(loaded(), build)(
        rows.data_ptr(),
        panels.data_ptr(),
        bias.data_ptr() if bias is not None else None,
        out.data_ptr(),
        rows.shape[0],
        out_features,
        rows.shape[1],
        torch.get_num_threads(),
    )
    return out.reshape(*x.shape[:-1], out_features)


@dataclass(frozen=True)
class Product:
    """One matrix product of a model step, for `crossover_rows`: the weight in the kernel's panels,
    the library GEMM that otherwise runs it, and the key its timings are pooled under (its shape)."""

    key: str
    panels: torch.Tensor
    library: Callable[[torch.Tensor], torch.Tensor]


def crossover_rows(products: Sequence[Product], repeats: int = 3) -> dict[str, int]:
    """Per key, the most rows (of `CROSSOVER_CANDIDATES`) up to which `small_linear` beats the
    library GEMM; 0 where it loses even at one row.

    Timed as a decode step runs them: a pass calls every product once, in order, so a model larger
    than the cache reads each weight from memory, as in serving. Timing one weight over and over
    keeps it in cache, where on an AVX-512 Xeon oneDNN won from 3-4 rows on; streamed, the kernel
    won to 16-64. Kernel and library passes alternate (after one warm-up of each); a key compares
    the best of `repeats` sums of its products' times, and its search ends at the first row count
    it loses. About 2 s on a 100M model.
    """
    found = {p.key: 0 for p in products}
    still_winning = {p.key for p in products}
    generator = torch.Generator().manual_seed(0)
    for rows in CROSSOVER_CANDIDATES:
        if not still_winning:
            break
        inputs = {
            p.panels.shape[1]: torch.randn(rows, p.panels.shape[1], generator=generator) for p in products
        }
        ours, theirs = _alternating_passes(products, inputs, repeats)
        for key in sorted(still_winning):
            if ours[key] < theirs[key]:
                found[key] = rows
            else:
                still_winning.discard(key)
    return found


def _alternating_passes(
    products: Sequence[Product], inputs: dict[int, torch.Tensor], repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Best per-key seconds of a pass of the kernel and of the library, passes alternating."""
    best: tuple[dict[str, float], dict[str, float]] = ({}, {})
    for attempt in range(repeats + 1):  # the first round warms both: page faults, thread start-up
        for side, run in enumerate((_kernel_product, _library_product)):
            summed: dict[str, float] = {}
            for product in products:
                x = inputs[product.panels.shape[1]]
                started = time.perf_counter()
                run(product, x)
                summed[product.key] = summed.get(product.key, 0.0) + time.perf_counter() - started
            if attempt:
                for key, seconds in summed.items():
                    best[side][key] = min(best[side].get(key, math.inf), seconds)
    return best


def _kernel_product(product: Product, x: torch.Tensor) -> torch.Tensor:
    return small_linear(x, product.panels, None)


def _library_product(product: Product, x: torch.Tensor) -> torch.Tensor:
    return product.library(x)


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
) -> torch.Tensor:
    """The CPU twin of paged_attention.paged_decode_attention, with the same arguments and result.

    q: [seqs, heads, head_dim] (head_dim and heads contiguous); caches: [blocks, block_size, kv_heads,
    head_dim], contiguous, float32; block_tables: [seqs, max_blocks]; context_lens: [seqs], each in
    [1, max_blocks * block_size].
    """
    num_seqs, num_heads, head_dim = q.shape
    block_size, num_kv_heads = k_cache.shape[1:3]
    if q.dtype != torch.float32 or q.stride(2) != 1 or q.stride(1) != head_dim:
        raise ValueError("q must be float32 with contiguous heads")
    if head_dim % 8:
        raise ValueError(f"head_dim must be a multiple of 8, got {head_dim}")
    if not (k_cache.is_contiguous() and v_cache.is_contiguous() and k_cache.shape == v_cache.shape):
        raise ValueError("the key and value caches must be contiguous and of one shape")
    # The kernel checks the lengths against the table width itself: a per-layer check here cost
    # two tensor reductions a layer on the step's path.
    tables = block_tables.to(torch.int64).contiguous()
    lens = context_lens.to(torch.int64).contiguous()
    out = torch.empty((num_seqs, num_heads, head_dim), dtype=torch.float32)
    status = loaded().paged_decode_attention(
        q.data_ptr(),
        q.stride(0),
        k_cache.data_ptr(),
        v_cache.data_ptr(),
        tables.data_ptr(),
        tables.stride(0),
        lens.data_ptr(),
        out.data_ptr(),
        num_seqs,
        num_heads,
        num_kv_heads,
        head_dim,
        block_size,
        1.0 / math.sqrt(head_dim),
        torch.get_num_threads(),
    )
    check_attention_status(status)
    return out


def check_attention_status(status: int) -> None:
    """Raise for a nonzero status of the C paged attention (also returned by `decode_layer`)."""
    if status == -2:
        raise ValueError("context_lens must lie in [1, max_blocks * block_size]")
    if status != 0:
        raise MemoryError("paged_decode_attention could not allocate its score buffers")


def check_rows(*tensors: torch.Tensor) -> None:
    for tensor in tensors:
        if tensor.dtype != torch.float32 or tensor.device.type != "cpu" or not tensor.is_contiguous():
            raise ValueError("the CPU kernels take contiguous float32 CPU tensors")


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> torch.Tensor:
    """RMSNorm of `x + residual` (of `x` alone when residual is None), [tokens, hidden]; the sum is
    written back into `residual`, as fused_kernels.add_rms_norm does."""
    check_rows(x, weight, *([residual] if residual is not None else []))
    out = torch.empty_like(x)
    size = x.shape[-1]
    loaded().add_rms_norm(
        x.data_ptr(),
        residual.data_ptr() if residual is not None else None,
        weight.data_ptr(),
        out.data_ptr(),
        x.numel() // size,
        size,
        eps,
        torch.get_num_threads(),
    )
    return out


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for the fused [tokens, 2 * intermediate] gate/up projection."""
    check_rows(gate_up)
    size = gate_up.shape[-1] // 2
    out = gate_up.new_empty((*gate_up.shape[:-1], size))
    loaded().silu_mul(
        gate_up.data_ptr(), out.data_ptr(), gate_up.numel() // (2 * size), size, torch.get_num_threads()
    )
    return out


def rope_and_cache(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    slots: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    num_heads: int,
) -> None:
    """Rotate the query and key heads of `qkv` [tokens, (heads + 2 kv_heads) * head_dim] in place
    (cos and sign-folded sin [tokens, 1, head_dim], as DecoderModel.rope makes them) and write each
    token's keys and values into its cache slot (caches [blocks, block_size, kv_heads, head_dim])."""
    num_kv_heads, head_dim = k_cache.shape[2:]
    check_rows(cos, sin, k_cache, v_cache)
    if qkv.dtype != torch.float32 or qkv.stride(-1) != 1 or qkv.dim() != 2:
        raise ValueError("qkv must be [tokens, features] float32 with contiguous features")
    if qkv.shape[1] != (num_heads + 2 * num_kv_heads) * head_dim or k_cache.shape != v_cache.shape:
        raise ValueError("qkv's width does not match the heads and the cache")
    slots = slots.to(torch.int64).contiguous()
    loaded().rope_and_cache(
        qkv.data_ptr(),
        qkv.stride(0),
        cos.data_ptr(),
        sin.data_ptr(),
        slots.data_ptr(),
        k_cache.data_ptr(),
        v_cache.data_ptr(),
        qkv.shape[0],
        num_heads,
        num_kv_heads,
        head_dim,
        torch.get_num_threads(),
    )


class Scratch:
    """One float32 buffer the layers of a step take turns to use, grown to the largest asked for."""

    def __init__(self) -> None:
        self.buffer = torch.empty(0)

    def get(self, floats: int) -> torch.Tensor:
        if self.buffer.numel() < floats:
            self.buffer = torch.empty(floats)
        return self.buffer


class DecodeLayer:
    """A decoder layer's part of a decode step as one C call (csrc/decode_layer.c): norms, the four
    products on the panel kernel, rotary embedding and cache write, paged attention and SwiGLU.

    `tensors` are the ones `plan` points into, kept alive here; `rows` is the most decodes it takes
    (the fewest rows any of its products runs on the kernel)."""

    def __init__(self, plan: LayerPlan, tensors: list[torch.Tensor], rows: int, scratch: Scratch) -> None:
        self.plan, self.tensors, self.rows, self.scratch = plan, tensors, rows, scratch
        self.plan_ref = ctypes.pointer(plan)
        # Asked once: the scratch a decode needs grows linearly with the rows.
        self.scratch_per_row = loaded().decode_layer_scratch(self.plan_ref, 1)

    def __call__(
        self,
        x: torch.Tensor,
        residual: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor,
        slots: torch.Tensor,
        tables: torch.Tensor,
        lens: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the MLP's output, the residual stream), as DecoderLayer.forward returns them. x, residual:
        [T, hidden]; cos, sin: [T, 1, head_dim]; slots, lens: [T] and tables [T, blocks], int64.
        All contiguous; the caller has checked T <= rows."""
        kernels, rows = loaded(), x.shape[0]
        out = torch.empty_like(x)
        scratch = self.scratch.get(self.scratch_per_row * rows)
        status = kernels.decode_layer(
            self.plan_ref,
            x.data_ptr(),
            residual.data_ptr() if residual is not None else None,
            out.data_ptr(),
            scratch.data_ptr(),
            cos.data_ptr(),
            sin.data_ptr(),
            slots.data_ptr(),
            tables.data_ptr(),
            tables.stride(0),
            lens.data_ptr(),
            rows,
            torch.get_num_threads(),
        )
        check_attention_status(status)
        return out, x if residual is None else residual


def main() -> int:
    """`python -m tokenfleet_worker.cpu_kernels`: build the kernels now (an image's build step)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if library() is None:
        return 1
    print(built_path())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
