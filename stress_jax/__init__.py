"""stress-jax: spatial-temporal facial stress recognition in JAX/Flax."""

__version__ = "0.1.0"
