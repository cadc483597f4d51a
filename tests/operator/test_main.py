"""The `tokenfleet-operator` command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tokenfleet_operator.__main__ import build_parser, settings_from_args

pytestmark = pytest.mark.unit


def test_help_lists_the_options() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tokenfleet_operator", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    for flag in (
        "--namespace",
        "--all-namespaces",
        "--standalone",
        "--metrics-port",
        "--worker-image",
        "--router-image",
        "--kubeconfig",
    ):
        assert flag in proc.stdout


def test_settings_from_arguments() -> None:
    args = build_parser().parse_args(
        [
            "--namespace",
            "a",
            "--namespace",
            "b",
            "--standalone",
            "--worker-image",
            "w:1",
            "--metrics-port",
            "0",
        ]
    )
    settings = settings_from_args(args)
    assert settings.namespaces == ("a", "b") and settings.is_standalone
    assert settings.worker_image == "w:1" and settings.metrics_port == 0


def test_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--namespace", "a", "--all-namespaces"])
