"""The GPU check: one prepared call on a lent accelerator (benchmarks/device/README.md)."""
