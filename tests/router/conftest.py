"""Fixtures for the router's integration tests: a tiny model directory and a log folder."""

from __future__ import annotations

from pathlib import Path

import pytest

MODEL = "tiny"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenfleet_worker.make_model import make_model

    path = tmp_path_factory.mktemp("router-models") / MODEL
    make_model(path, preset="tiny")
    return path


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("router-logs")
