"""Benchmarks: `make bench` runs every benchmarks/bench_*.py `run()` and prints one table."""
