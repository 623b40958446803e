"""stress-jax: spatial-temporal facial stress recognition in JAX/Flax."""

from stress_jax import xla_cpu as _xla_cpu

__version__ = "0.1.0"

# Before anything imports JAX's backends: XLA reads its flags once, at backend start.
_xla_cpu.apply_defaults()
