"""Finding processes that squat on pod addresses: /proc/net/tcp parsing and the stray rule."""

from __future__ import annotations

import pytest

from tokenfleet_devkit.demo.pod_network import free_slot, parse_listeners, strays

pytestmark = pytest.mark.unit

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0105407F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0200407F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:7FFC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 00000000:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1
   4: 0300407F:1F40 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 5 1
"""


def test_parse_listeners_reads_listening_ipv4_sockets_only() -> None:
    assert parse_listeners(PROC_NET_TCP) == [
        ("127.64.5.1", 8000),
        ("127.64.0.2", 8080),
        ("127.0.0.1", 32764),
        ("0.0.0.0", 9090),
    ]


NODES = ["127.64.0.0/24", "127.64.5.0/24"]


def test_strays_are_listeners_in_the_node_ranges_without_a_pod() -> None:
    listeners = parse_listeners(PROC_NET_TCP)
    assert strays(listeners, {"127.64.0.2"}, NODES) == [("127.64.5.1", 8000)]
    assert strays(listeners, {"127.64.0.2", "127.64.5.1"}, NODES) == []
    assert strays(listeners, set(), ["127.65.0.0/24"]) == []  # another cluster's range is not ours
    assert strays([], set(), NODES) == []


@pytest.mark.parametrize(
    ("used", "expected"),
    [([], 1), (["127.64.0.0/24", "127.64.7.0/24"], 1), (["127.65.3.0/24", "127.64.0.0/24"], 2)],
)
def test_free_slot_skips_used_ranges_and_the_default_one(used: list[str], expected: int) -> None:
    assert free_slot(used) == expected
