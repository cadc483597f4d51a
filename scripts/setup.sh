#!/usr/bin/env bash
# Install everything tokenfleet needs on a fresh Debian machine, reusing caches outside the repo:
# a virtualenv with the project (editable) and its pinned dependencies, Prometheus from Debian,
# and the local control plane built from Go modules. Safe to run again: it skips what is there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TOKENFLEET_CACHE:-$HOME/.cache/tokenfleet}"
VENV="$CACHE/venv"
mkdir -p "$CACHE"
step() { printf '\n==> %s\n' "$*"; }
timed() { # record how long a cold install step took, for the CI summary
  local name="$1"; shift; local t0; t0=$(date +%s); "$@"; echo "$name $(( $(date +%s) - t0 ))" >> "$CACHE/cold-steps.txt"; }

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  step "installing Prometheus (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  timed apt-prometheus bash -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null'
  # The package starts a system service on install; the tests run their own servers.
  (systemctl stop prometheus 2>/dev/null || service prometheus stop 2>/dev/null || pkill -x prometheus || true) >/dev/null 2>&1
fi

if ! command -v cc >/dev/null; then
  step "installing a C compiler (Debian gcc) for the worker's CPU kernels"
  export DEBIAN_FRONTEND=noninteractive
  timed apt-gcc bash -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null'
fi

command -v go >/dev/null || { echo "error: Go is needed to build the control plane (go.dev toolchain on PATH)" >&2; exit 1; }
command -v python3.11 >/dev/null || command -v python3 >/dev/null || { echo "error: Python 3.11 is needed" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating the virtualenv in $VENV"
  python3 -m venv "$VENV"
fi
STAMP="$CACHE/venv.stamp"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16) $ROOT"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  step "installing Python dependencies (torch is large: the first time takes minutes)"
  timed pip-install "$VENV/bin/pip" install --progress-bar off -q -e "$ROOT[dev]"
  echo "$WANT" > "$STAMP"
fi

step "building the control plane (etcd, Kubernetes, kwok, helm) from Go modules if not cached"
"$VENV/bin/python" -m tokenfleet_devkit.cluster.build
