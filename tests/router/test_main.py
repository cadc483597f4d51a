from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tokenfleet_router.__main__ import (
    build_parser,
    discovery_from_args,
    main,
    parse_weights,
    settings_from_args,
)
from tokenfleet_router.discovery import FileDiscovery, KubernetesDiscovery, StaticDiscovery

pytestmark = pytest.mark.unit


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--workers",
        "--selector",
        "--kubeconfig",
        "--strategy",
        "--session-header",
        "--api-keys-file",
    ):
        assert flag in out


def test_parse_weights() -> None:
    assert parse_weights("queue-depth=2, kv-usage=0.5") == {"queue-depth": 2.0, "kv-usage": 0.5}
    assert parse_weights("") == {}
    for bad in ("queue-depth", "queue-depth=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_weights(bad)


def test_settings_from_args(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("sk-1\n")
    args = build_parser().parse_args(
        [
            "--workers",
            "http://127.0.0.1:1",
            "--strategy",
            "prefix-affinity",
            "--queue-timeout",
            "3",
            "--cold-start-timeout",
            "30",
            "--max-held",
            "5",
            "--session-header",
            "X-Conv",
            "--api-keys-file",
            str(keys),
            "--scorer-weights",
            "prefix-match=8",
        ]
    )
    settings = settings_from_args(args)
    assert settings.strategy == "prefix-affinity"
    assert settings.admission.saturated_timeout_s == 3 and settings.admission.cold_start_timeout_s == 30
    assert settings.admission.max_held == 5
    assert settings.session_header == "x-conv"
    assert settings.api_keys == ("sk-1",)
    assert settings.scorer_weights == {"prefix-match": 8.0}


def test_discovery_choice(tmp_path: Path) -> None:
    parser = build_parser()
    assert isinstance(
        discovery_from_args(parser.parse_args(["--workers", "http://a:1,http://b:1"])), StaticDiscovery
    )
    assert isinstance(
        discovery_from_args(parser.parse_args(["--workers-file", str(tmp_path / "w")])), FileDiscovery
    )
    kube = discovery_from_args(
        parser.parse_args(["--selector", "app=w", "--namespace", "ns", "--worker-port", "9"])
    )
    assert isinstance(kube, KubernetesDiscovery)
    assert (kube.namespace, kube.selector, kube.default_port) == ("ns", "app=w", 9)
    for argv in ([], ["--workers", "http://a:1", "--selector", "app=w"]):
        with pytest.raises(ValueError, match="exactly one"):
            discovery_from_args(parser.parse_args(argv))


def test_bad_worker_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--workers", "127.0.0.1:8001"])
    assert info.value.code == 2
    assert "must start with http://" in capsys.readouterr().err
