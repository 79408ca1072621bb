"""Benchmarks of the library (run as modules: ``python -m benchmarks.bench_nngp``)."""
