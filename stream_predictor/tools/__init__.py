"""Measurements of the runtime: benchmarks and soak runs."""
