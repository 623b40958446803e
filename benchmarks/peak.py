"""Sections `peak` and `peak_default`: this machine's float32 / bfloat16 matmul peak.

The MFU figures divide by the best peak of a run; `peak_default` measures it under
jaxlib's own XLA:CPU flags (the registry starts it with STRESS_JAX_KEEP_XLA_FLAGS=1),
because stress_jax's flags slow the largest plain matmuls down.
"""

from __future__ import annotations

import os

from benchmarks import common


def worker_peak(s: dict) -> dict:
  import jax

  backend = jax.default_backend()
  sizes = (1024, 2048) if s["quick"] else (1024, 2048, 4096)
  if backend != "cpu":
    # A 4096^2 matmul is well under a millisecond on a GPU/TPU: too small for its peak.
    sizes = (*sizes, 8192, 16384)
  f32 = common.matmul_peak(s["peak_repeats"], sizes)
  bf16 = common.matmul_peak(s["peak_repeats"], sizes, "bfloat16")
  return {
    "backend": backend,
    "device_kind": jax.devices()[0].device_kind,
    "device_count": jax.device_count(),
    "float32_gflops": round(f32["gflops"], 1),
    "float32_by_size": f32["by_size"],
    "bfloat16_gflops": round(bf16["gflops"], 1),
    "bfloat16_by_size": bf16["by_size"],
    "method": "median of jitted jnp.dot(n x n) after 2 warm-ups, 2 n^3 / t, best n",
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }
