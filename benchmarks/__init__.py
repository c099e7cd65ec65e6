"""Benchmark scripts (run as `python benchmarks/NAME.py`); a package so that tests can import
the official-code comparison (`from benchmarks import compare_official`)."""
