"""Fixtures of the fault tests: the operator tests' fixtures, the router tests' process fixtures, and one
fleet (operator, sim workers, router pod) shared by the cluster fault scenarios to save start-up time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cluster
from tests.operator.conftest import crd, operator_process, tiny_model  # noqa: F401 - fixtures
from tests.reliability.fleet import SharedFleet, start_shared_fleet
from tests.router.conftest import log_dir, model_dir  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
def shared_fleet(
    cluster: Cluster,
    tiny_model: Path,  # noqa: F811 - the imported fixture, requested
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SharedFleet]:
    with start_shared_fleet(cluster, tiny_model, tmp_path_factory.mktemp("shared-fleet")) as fleet:
        yield fleet
