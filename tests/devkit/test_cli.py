"""The `tokenfleet` front door: cluster options reach the right cluster, and typos are refused."""

from __future__ import annotations

import pytest

from tokenfleet_devkit import cli


@pytest.mark.unit
def test_cluster_name_option_picks_that_clusters_state(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", "kubeconfig", "--name", "tf-cli-test"]) == 0
    assert capsys.readouterr().out.strip().endswith("clusters/tf-cli-test/kubeconfig")


@pytest.mark.unit
def test_unknown_cluster_option_is_refused_not_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    # An ignored `--nme x` would silently act on the default cluster.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["cluster", "down", "--nme", "x"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --nme x" in capsys.readouterr().err
