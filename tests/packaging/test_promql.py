"""Grafana variable substitution, as the dashboard end-to-end test applies it."""

from __future__ import annotations

import pytest

from tokenfleet_devkit.packaging.promql import parse_label_values, substitute

pytestmark = pytest.mark.unit


def test_substitutes_both_forms_and_grafana_builtins() -> None:
    expr = 'rate(x{namespace=~"$namespace", infdep=~"${deployment}"}[$__rate_interval])'
    assert substitute(expr, {"namespace": "ns1", "deployment": "chat"}) == (
        'rate(x{namespace=~"ns1", infdep=~"chat"}[30s])'
    )


def test_longer_names_are_not_cut_at_a_shorter_prefix() -> None:
    assert substitute("$pod $podname", {"pod": "a", "podname": "b"}) == "a b"


def test_an_unknown_variable_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match=r"\$cluster has no value"):
        substitute('up{cluster="$cluster"}', {})


def test_label_values_queries_split_into_series_and_label() -> None:
    query = 'label_values(tokenfleet_requests_running{namespace=~"ns1"}, infdep)'
    assert parse_label_values(query) == ('tokenfleet_requests_running{namespace=~"ns1"}', "infdep")
    with pytest.raises(ValueError, match="not a label_values"):
        parse_label_values("up")
