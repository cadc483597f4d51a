"""Keep the generated and copied packaging files in step with their sources.

- `manifests/crds/*.yaml` (written by the operator from `tokenfleet_operator.crd`) → `charts/tokenfleet/crds/`
- `deploy/prometheus/tokenfleet-alerts.yaml` → `charts/tokenfleet/files/` (the PrometheusRule reads it)
- the dashboard builders → `dashboards/*.json`

`python -m tokenfleet_devkit.packaging.sync` writes them; `--check` only reports what is out of date
(exit 1), which is what the tests run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tokenfleet_devkit.packaging.dashboards import DASHBOARDS

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "tokenfleet"
ALERTS = REPO / "deploy" / "prometheus" / "tokenfleet-alerts.yaml"


def dashboard_text(build: Callable[[], dict[str, object]]) -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def expected_files(repo: Path = REPO) -> dict[Path, str]:
    """Every generated or copied file and the text it must hold."""
    chart = repo / "charts" / "tokenfleet"
    files: dict[Path, str] = {}
    for crd in sorted((repo / "manifests" / "crds").glob("*.yaml")):
        files[chart / "crds" / crd.name] = crd.read_text()
    alerts = repo / "deploy" / "prometheus" / "tokenfleet-alerts.yaml"
    files[chart / "files" / alerts.name] = alerts.read_text()
    for name, build in DASHBOARDS.items():
        files[repo / "dashboards" / name] = dashboard_text(build)
    return files


def stale_files(repo: Path = REPO) -> list[Path]:
    return [
        path for path, text in expected_files(repo).items() if not path.exists() or path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokenfleet_devkit.packaging.sync", description=__doc__)
    parser.add_argument("--check", action="store_true", help="report stale files, write nothing")
    args = parser.parse_args(argv)
    stale = stale_files()
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(REPO)}", file=sys.stderr)
        return 1 if stale else 0
    expected = expected_files()
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected[path])
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
