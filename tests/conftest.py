"""Shared fixtures: a tiny dataset in the shared clip layout, built once per session."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "tiny_config.py"

# Tests see one CPU device unless a test asks for more in a subprocess.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA compilation cache for this test session, shared with every train.py
# subprocess: runs that compile the same program (a resumed run, the reference of
# an equivalence test) load it instead of compiling it again. Set before jax starts.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="stress_jax_xla_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory) -> pathlib.Path:
  from tests import fake_clips

  data_dir = tmp_path_factory.mktemp("fake_data")
  fake_clips.build(data_dir)
  return data_dir


def free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def train_command(workdir, data_dir, *overrides, config=TINY_CONFIG) -> list[str]:
  return [
    sys.executable,
    str(REPO / "train.py"),
    f"--config={config}",
    f"--workdir={workdir}",
    f"--config.data.data_dir={data_dir}",
    *overrides,
  ]


def subprocess_env(num_devices: int = 1) -> dict:
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
  return env


def run_training(workdir, data_dir, *overrides, num_devices=1, timeout=240, config=TINY_CONFIG):
  result = subprocess.run(
    train_command(workdir, data_dir, *overrides, config=config),
    env=subprocess_env(num_devices),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  if result.returncode != 0:
    raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stderr[-4000:]}")
  return result


def cli_error_lines(module: str, *args: str) -> list[str]:
  """Runs `python -m module args`, which must fail; returns its stderr lines."""
  result = subprocess.run(
    [sys.executable, "-m", module, *args],
    env=subprocess_env(),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode != 0, result.stdout[-2000:]
  return result.stderr.strip().splitlines()


def one_line_error(args, *, code: int = 2, timeout: int = 240) -> str:
  """Runs `python args...`, which must fail with exit status `code` and ONE stderr line.

  Tracebacks and library log lines would make it several; the line is returned.
  Progress-bar lines are left out of the count.
  """
  result = subprocess.run(
    [sys.executable, *map(str, args)],
    env=subprocess_env(),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  # A progress bar (tqdm's "NN%|" lines) is output the user asked for, not an error.
  lines = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]
  assert result.returncode == code, f"exit {result.returncode}:\n{result.stderr[-3000:]}"
  assert len(lines) == 1, f"{len(lines)} stderr lines:\n{result.stderr[-3000:]}"
  return lines[0]
