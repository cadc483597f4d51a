"""tokenfleet developer kit: the `tokenfleet` CLI (local cluster, demo, benchmarks, simulator)."""
