"""Benchmarks: programs that print a table and write results/<name>.json (not timed tests)."""
