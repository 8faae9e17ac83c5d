"""Benchmarks: each module has ``main(argv) -> int`` and compares against a baseline in-process."""
