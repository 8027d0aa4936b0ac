"""Benchmarks: `./dev bench` (or `python -m bench`). Each prints a ratio against a baseline
measured in the same run, so numbers from different machines can be compared."""
