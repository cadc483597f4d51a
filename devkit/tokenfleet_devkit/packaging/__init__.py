"""Packaging helpers: dashboards and alert rules built from the metric contract, Prometheus file-SD
and PromQL for tests, the kind workflow for Docker users, and the sync of generated copies."""
