"""XLA:CPU settings stress_jax applies when it is imported, before JAX starts a backend.

jaxlib 0.10 hands convolutions on x86 CPUs to YNNPACK fusions by default. For this
model's shapes they are much slower than XLA's own convolutions: on 2 cores the
paper-config training step took 9.2 s with them and 4.7 s without (batch 2 x 48
frames), one streaming frame 13.9 ms against 8.2 ms (BENCHMARKS.md, "XLA:CPU
convolutions" row). So unless the user chose a value for that flag, we turn the
fusions off by adding it to XLA_FLAGS.

XLA reads XLA_FLAGS once, when the first backend starts, so this only takes effect if
stress_jax is imported before any JAX computation runs (every entry point here does).
XLA aborts on a flag it does not know, so the flag is added only for jaxlib versions
it was checked against; set STRESS_JAX_KEEP_XLA_FLAGS=1 to leave XLA_FLAGS untouched.
On a machine whose JAX will compute on a TPU or GPU (JAX_PLATFORMS names one, or
it is unset and the accelerator's JAX plugin and device files are present) XLA_FLAGS
is left untouched: the measurement above says nothing about those backends.
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import os
from collections.abc import MutableMapping

# flag -> value; the flag is left alone wherever XLA_FLAGS already names it.
CPU_FLAGS = {"--xla_cpu_experimental_ynn_fusion_type": ""}
# jaxlib major.minor releases whose XLA has every flag above.
CHECKED_JAXLIB = ("0.10",)
OPT_OUT = "STRESS_JAX_KEEP_XLA_FLAGS"


def _jaxlib_release() -> str | None:
  try:
    version = importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return None
  return ".".join(version.split(".")[:2])


_ACCELERATORS = {"tpu", "cuda", "gpu", "rocm"}


def _accelerator_installed() -> bool:
  """A TPU VM's or an NVIDIA machine's JAX, judged without starting a backend."""
  if importlib.util.find_spec("libtpu") and (glob.glob("/dev/accel*") or glob.glob("/dev/vfio/*")):
    return True
  plugins = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_plugins.xla_cuda12")
  return os.path.exists("/dev/nvidiactl") and any(_has_module(name) for name in plugins)


def _has_module(name: str) -> bool:
  try:
    return importlib.util.find_spec(name) is not None
  except ModuleNotFoundError:
    return False


def targets_accelerator(
  environ: MutableMapping[str, str], installed=_accelerator_installed
) -> bool:
  """True when JAX here will run on a TPU or GPU, so XLA:CPU tuning does not apply."""
  platforms = environ.get("JAX_PLATFORMS", "").strip()
  if platforms:
    first = platforms.split(",")[0].strip().lower()
    return first in _ACCELERATORS
  return installed()


# XLA_FLAGS as it was before apply_defaults first changed it (None: it was not set).
_users_flags: str | None = None


def users_flags() -> str | None:
  """XLA_FLAGS without what apply_defaults added: for a child process that opts out."""
  return _users_flags if _users_flags is not None else os.environ.get("XLA_FLAGS")


def apply_defaults(environ: MutableMapping[str, str] | None = None) -> list[str]:
  """Adds CPU_FLAGS the user did not set to XLA_FLAGS; returns the flags it added."""
  global _users_flags
  environ = os.environ if environ is None else environ
  if environ.get(OPT_OUT) or _jaxlib_release() not in CHECKED_JAXLIB:
    return []
  if targets_accelerator(environ):
    return []
  current = environ.get("XLA_FLAGS", "")
  if environ is os.environ and _users_flags is None:
    _users_flags = current
  named = {token.split("=", 1)[0] for token in current.split()}
  added = [f"{flag}={value}" for flag, value in CPU_FLAGS.items() if flag not in named]
  if added:
    environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
  return added
