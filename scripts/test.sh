#!/usr/bin/env bash
# Install what is needed, then run the whole test suite: lint, format, types, tests, benchmark smoke runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TOKENFLEET_CACHE:-$HOME/.cache/tokenfleet}"
"$ROOT/scripts/setup.sh"
export PATH="$CACHE/venv/bin:$PATH"
cd "$ROOT"
printf '\n==> ruff (lint and format)\n'
ruff check .
ruff format --check .
printf '\n==> mypy\n'
mypy
printf '\n==> benchmark smoke runs\n'
for bench in $(python -c "from tokenfleet_devkit.cli import _available_benchmarks as a; print(' '.join(a()))"); do
  # sim-validation's smoke run needs a cluster with worker pods: pytest runs it on the suite's shared
  # cluster (tests/devkit/test_bench_sim_validation.py) rather than starting one more here.
  [ "$bench" = sim-validation ] && continue
  tokenfleet bench "$bench" --smoke
done
printf '\n==> pytest\n'
python -m pytest "$@"
