#!/usr/bin/env bash
# One pass over everything in the worker engine that needs a GPU: the environment, the CUDA tests,
# a ~1B-parameter bf16 checkpoint, `tokenfleet bench engine` on CUDA (decode at batch 1/32/128
# against the HBM bound: eager, CUDA graphs, CUDA graphs with the Triton paged-attention kernel;
# the ratio to transformers `generate`), and a kernel profile of eager decode steps. Needs only torch, transformers, tokenizers,
# safetensors, rich and pytest: no install (PYTHONPATH points at the source roots).
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
    PAGED_TEST_ARGS=(-m gpu tests/worker/test_paged_attention.py)
    BENCH_ARGS=(--online-rate 16 --kv-cache-bytes $((16 * 1024**3)))
    PROFILE_BATCH=32
else
    PRESET=tiny
    TEST_ARGS=(tests/worker/test_decode_graphs.py -m "not gpu")
    PAGED_TEST_ARGS=(tests/worker/test_paged_attention.py -m "not gpu")
    BENCH_ARGS=(--num-requests 6 --trace-requests 4 --trace-max-len 128 --online-requests 4
        --online-rate 20 --hf-batch-size 4 --kv-cache-bytes $((64 * 1024**2)) --threads 1
        --decode-batches 1,4 --decode-graphs on)
    PROFILE_BATCH=4
fi

step env 30 bash -c "nvidia-smi || echo 'no nvidia-smi'; $PYTHON -c '
import torch, transformers
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"transformers\", transformers.__version__)
if torch.cuda.is_available():
    print(\"device\", torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0))
'"

# --noconftest: the shared conftest imports the cluster tooling (kubernetes), absent on GPU images.
# The Triton kernel first, on its own: the benchmark leaves it out if it fails here.
step tests-paged 90 "$PYTHON" -m pytest --noconftest -p no:cacheprovider -q -rA "${PAGED_TEST_ARGS[@]}"
paged=auto
if [[ " ${failed[*]} " == *" tests-paged "* ]]; then paged=off; fi

MODEL_DIR=$SCRATCH/llama-$PRESET
step make-model 120 "$PYTHON" -m tokenfleet_worker.make_model "$MODEL_DIR" --preset "$PRESET"

step bench 240 "$PYTHON" -m tokenfleet_devkit.cli bench engine --model "$MODEL_DIR" --device "$DEVICE" \
    --results "$OUT" --paged-attention "$paged" "${BENCH_ARGS[@]}"

step tests 120 "$PYTHON" -m pytest --noconftest -p no:cacheprovider -q -rA "${TEST_ARGS[@]}"

# Where an eager decode step spends its time: kernel count and the top kernels.
step profile 60 "$PYTHON" - "$MODEL_DIR" "$DEVICE" "$PROFILE_BATCH" <<'PY'
import sys
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from tokenfleet_worker.batch import SamplingParams, ScheduledSeq, StepBatch
from tokenfleet_worker.runner import TorchRunner

model_dir, device, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
on_cuda = device == "cuda"
runner = TorchRunner(model_dir, device=device, dtype="bfloat16" if on_cuda else "float32",
                     kv_cache_bytes=(4 * 1024**3) if on_cuda else 64 * 1024**2)
context, steps, greedy = (256 if on_cuda else 32), 5, SamplingParams(temperature=0.0)
per_seq = context // runner.block_size + 2
tables = [tuple(range(i * per_seq, (i + 1) * per_seq)) for i in range(batch)]
def step(k):  # decode steps over whatever the cache holds: only the time matters here
    runner.execute(StepBatch(tuple(ScheduledSeq(i, (11,), context + k, t, True, greedy) for i, t in enumerate(tables))))
for k in range(3):
    step(k)
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
with profile(activities=activities) as prof:
    for k in range(steps):
        step(k)
kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
print(f"batch {batch}: {len(kernels) / steps:.0f} device kernels per eager decode step")
if kernels:
    busy = sum(e.device_time for e in kernels) / steps / 1e3
    print(f"summed kernel time per step: {busy:.3f} ms")
for key in (("self_device_time_total", "self_cuda_time_total") if on_cuda else ("self_cpu_time_total",)):
    try:
        print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))
        break
    except (AttributeError, KeyError, ValueError) as error:
        print(f"sort by {key} failed: {error}")
PY

rm -rf "$SCRATCH"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED steps: ${failed[*]}"
    exit 1
fi
echo "all steps passed"
