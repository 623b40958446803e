"""stress_jax's XLA:CPU defaults: added once, never over a user's choice, and in effect."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stress_jax import xla_cpu

FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# The flag is added only on the jaxlib releases it was checked against (xla_cpu says
# why); elsewhere the tests that expect it have nothing to check.
checked_jaxlib = pytest.mark.skipif(
  xla_cpu._jaxlib_release() not in xla_cpu.CHECKED_JAXLIB,
  reason=f"jaxlib {xla_cpu._jaxlib_release()} is not one of {xla_cpu.CHECKED_JAXLIB}",
)


@checked_jaxlib
def test_adds_the_flag_beside_the_users_own():
  # JAX_PLATFORMS=cpu: the answer must not depend on whether this machine has a GPU.
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  assert xla_cpu.apply_defaults(environ) == [f"{FLAG}="]
  assert environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=4 {FLAG}="
  # A second call (a re-import, a subprocess inheriting the variable) adds nothing.
  assert xla_cpu.apply_defaults(environ) == []
  assert environ["XLA_FLAGS"].count(FLAG) == 1


def test_leaves_a_users_value_and_the_opt_out_alone():
  chosen = {"XLA_FLAGS": f"{FLAG}=individual_convolution", "JAX_PLATFORMS": "cpu"}
  assert xla_cpu.apply_defaults(chosen) == []
  assert chosen["XLA_FLAGS"] == f"{FLAG}=individual_convolution"
  opted_out = {xla_cpu.OPT_OUT: "1", "JAX_PLATFORMS": "cpu"}
  assert xla_cpu.apply_defaults(opted_out) == []
  assert "XLA_FLAGS" not in opted_out


def test_no_flag_for_an_unchecked_jaxlib(monkeypatch):
  monkeypatch.setattr(xla_cpu, "_jaxlib_release", lambda: "9.99")
  environ = {"JAX_PLATFORMS": "cpu"}
  assert xla_cpu.apply_defaults(environ) == []
  assert environ == {"JAX_PLATFORMS": "cpu"}


@checked_jaxlib
def test_importing_stress_jax_sets_the_flag_before_jax_starts():
  """In a fresh interpreter: XLA accepts the flag and a computation runs."""
  environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_cpu.OPT_OUT)}
  environ["JAX_PLATFORMS"] = "cpu"
  code = (
    "import os, stress_jax, jax.numpy as jnp\n"
    "print(os.environ['XLA_FLAGS'])\n"
    "print(float(jnp.ones(3).sum()))\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
  )
  assert result.stdout.split() == [f"{FLAG}=", "3.0"]


def test_no_flag_where_jax_targets_a_tpu_or_gpu():
  for platforms in ("tpu", "cuda,cpu", "gpu"):
    environ = {"JAX_PLATFORMS": platforms}
    assert xla_cpu.apply_defaults(environ) == [], platforms
    assert "XLA_FLAGS" not in environ
  assert xla_cpu.targets_accelerator({}, installed=lambda: True)
  assert not xla_cpu.targets_accelerator({"JAX_PLATFORMS": "cpu"}, installed=lambda: True)
  assert not xla_cpu.targets_accelerator({}, installed=lambda: False)
