"""The Triton kernels compile to Hopper machine code (sm_90) on a machine without a GPU.

The interpreter tests check what the kernels compute, but the interpreter runs them as numpy and
accepts code the compiler refuses (types, shapes, constexpr use). Compiling ahead for the GPU we
deploy on catches that here, in CI, instead of on a GPU machine.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.worker.triton_interpreter import needs_triton
from tokenfleet_worker import fused_kernels, paged_attention

pytestmark = needs_triton

INDEX_POINTERS = {"slots_ptr", "tables_ptr", "lengths_ptr"}  # int64 block ids and lengths
SCALARS = {"eps": "fp32", "scale": "fp32"}
# The 1B preset's shapes (32 heads, 8 KV heads, head_dim 64, hidden 2048, intermediate 8192).
CONSTANTS: dict[str, dict[str, Any]] = {
    "add_rms_norm": {"SIZE": 2048, "BLOCK": 2048, "HAS_RESIDUAL": True},
    "rope_and_cache": {"NUM_HEADS": 32, "NUM_KV_HEADS": 8, "HEAD_DIM": 64, "ROTATED_PAD": 64, "KV_PAD": 8},
    "silu_mul": {"SIZE": 8192, "BLOCK": 1024},
    "paged_decode": {"GROUP": 4, "GROUP_PAD": 16, "HEAD_DIM": 64, "BLOCK_SIZE": 16, "TILE": 64},
}


def signature(kernel: Any, dtype: str, constants: dict[str, Any]) -> dict[str, str]:
    types: dict[str, str] = {}
    for name in kernel.arg_names:
        if name in constants:
            types[name] = "constexpr"
        elif name.endswith("_ptr"):
            types[name] = "*i64" if name in INDEX_POINTERS else f"*{dtype}"
        else:
            types[name] = SCALARS.get(name, "i32")  # strides
    return types


def kernels() -> dict[str, Any]:
    return {**fused_kernels._kernels(), "paged_decode": paged_attention._kernel()}


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_kernel_compiles_for_sm90(name: str, dtype: str) -> None:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = kernels()[name]
    constants = dict(CONSTANTS[name])
    if name == "paged_decode":
        constants["PRECISION"] = "ieee" if dtype == "fp32" else "tf32"
    source = ASTSource(kernel, signature(kernel, dtype, constants), constexprs=constants)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
    assert ".target sm_90" in compiled.asm["ptx"]
    assert compiled.asm.get("cubin"), "ptxas produced no machine code"
