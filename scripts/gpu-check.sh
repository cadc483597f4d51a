#!/usr/bin/env bash
# One pass over everything in the worker engine that needs a GPU: the environment, the CUDA tests,
# a ~1B-parameter bf16 checkpoint, `tokenfleet bench engine` on CUDA (decode at batch 1/32/128
# against the HBM bound: eager, CUDA graphs, with the Triton paged-attention kernel, with the fused
# Triton kernels too, and with lookahead decoding; the ratio to transformers `generate`), and a
# profile of graph-replayed decode steps (host time, replay time, kernels). Needs only torch,
# transformers, tokenizers, safetensors, rich and pytest: no install (PYTHONPATH points at the
# source roots).
#
#   scripts/gpu-check.sh                 # on a CUDA machine
#   DEVICE=cpu scripts/gpu-check.sh      # rehearsal on CPU with a tiny model (about a minute)
#
# Logs and results/engine.json go to $OUT (default ./gpu-check-out); the exit status is non-zero
# when any step failed. TOKENFLEET_TRACES may point at a folder holding the Azure code trace.
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
OUT=${OUT:-$PWD/gpu-check-out}
PYTHON=${PYTHON:-python3}
SCRATCH=${SCRATCH:-$(mktemp -d -t tokenfleet-gpu-check-XXXXXX)}
mkdir -p "$OUT"
export PYTHONPATH=common:worker:devkit PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
failed=()

step() {  # step NAME TIMEOUT_S COMMAND...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2 started=$SECONDS rc
    shift 2
    echo "=== $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - started))s"
    if [ "$rc" -ne 0 ]; then failed+=("$name"); fi
}

if [ "$DEVICE" = cuda ]; then
    PRESET=1b
    # Only the modules with CUDA tests: the server tests import openai, absent on GPU images.
    TEST_ARGS=(-m gpu tests/worker/test_model.py tests/worker/test_runner.py tests/worker/test_decode_graphs.py)
    PAGED_TEST_ARGS=(-m gpu tests/worker/test_paged_attention.py tests/worker/test_fused_kernels.py)
    BENCH_ARGS=(--online-rate 16 --kv-cache-bytes $((16 * 1024**3)))
    PROFILE_ARGS=()  # set once the kernel tests have run
else
    PRESET=tiny
    TEST_ARGS=(tests/worker/test_decode_graphs.py -m "not gpu")
    PAGED_TEST_ARGS=(tests/worker/test_paged_attention.py tests/worker/test_fused_kernels.py -m "not gpu")
    BENCH_ARGS=(--num-requests 6 --trace-requests 4 --trace-max-len 128 --online-requests 4
        --online-rate 20 --hf-batch-size 4 --kv-cache-bytes $((64 * 1024**2)) --threads 1
        --decode-batches 1,4 --decode-graphs on)
    PROFILE_ARGS=(--modes graphs --batches 1,4 --context 32 --kv-cache-bytes $((64 * 1024**2)))
fi

step env 30 bash -c "nvidia-smi || echo 'no nvidia-smi'; $PYTHON -c '
import torch, transformers
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"transformers\", transformers.__version__)
if torch.cuda.is_available():
    print(\"device\", torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0))
'"

# --noconftest: the shared conftest imports the cluster tooling (kubernetes), absent on GPU images.
# The Triton kernels first, on their own: the benchmark leaves them out if they fail here.
step tests-paged 90 "$PYTHON" -m pytest --noconftest -p no:cacheprovider -q -rA "${PAGED_TEST_ARGS[@]}"
paged=auto
if [[ " ${failed[*]} " == *" tests-paged "* ]]; then paged=off; fi
lookahead=auto
if [ "$DEVICE" = cuda ]; then
    step tests-lookahead 90 "$PYTHON" -m pytest --noconftest -p no:cacheprovider -q -rA -m gpu \
        -k lookahead tests/worker/test_decode_graphs.py
    if [[ " ${failed[*]} " == *" tests-lookahead "* ]]; then lookahead=off; fi
fi

MODEL_DIR=$SCRATCH/llama-$PRESET
step make-model 120 "$PYTHON" -m tokenfleet_worker.make_model "$MODEL_DIR" --preset "$PRESET"

step bench 360 "$PYTHON" -m tokenfleet_devkit.cli bench engine --model "$MODEL_DIR" --device "$DEVICE" \
    --results "$OUT" --paged-attention "$paged" --lookahead "$lookahead" "${BENCH_ARGS[@]}"

step tests 120 "$PYTHON" -m pytest --noconftest -p no:cacheprovider -q -rA "${TEST_ARGS[@]}"

# Where a decode step spends its time: host work, graph replay, and the kernels inside the graph.
if [ "$DEVICE" = cuda ]; then
    PROFILE_ARGS=(--modes "$([ "$paged" = off ] && echo graphs || echo paged,fused)")
fi
step profile 120 "$PYTHON" -m tokenfleet_devkit.bench.engine_step_profile "$MODEL_DIR" --device "$DEVICE" \
    --out "$OUT" "${PROFILE_ARGS[@]}"

rm -rf "$SCRATCH"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED steps: ${failed[*]}"
    exit 1
fi
echo "all steps passed"
