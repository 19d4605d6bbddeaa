"""Benchmarks (`make bench`): print a table and write JSON under .streamspace/bench/."""
