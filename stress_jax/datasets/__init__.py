"""Whole datasets, each beside the code that builds it; they stand on `stress_jax.faces`.

synthetic  the stress-face simulator behind `tfds_builders/stress_faces` (synthetic configs)
"""
