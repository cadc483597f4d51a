#!/usr/bin/env bash
# Install what is needed, then run the main job: `tokenfleet demo` (a local fleet under a real trace).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TOKENFLEET_CACHE:-$HOME/.cache/tokenfleet}"
"$ROOT/scripts/setup.sh"
export PATH="$CACHE/venv/bin:$PATH"
exec tokenfleet demo "$@"
