"""Shared fixtures: a tiny dataset in the shared clip layout, built once per session."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "tiny_config.py"

# Tests see one CPU device unless a test asks for more in a subprocess.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA compilation cache in a stable folder outside the tree, shared by every test
# session and every train.py subprocess: XLA:CPU spends most of a tiny run compiling
# (the initialisers' random number generation alone takes seconds), and the programs
# of the tiny configs are the same from one session to the next, so a second session
# loads them. The cache is keyed on the program and the jax version, so a changed model
# simply compiles again. No size cap: jax's eviction deletes files that the parallel
# train.py subprocesses are reading, and warns on their stderr. Set before jax starts.
XLA_CACHE = pathlib.Path(
  os.environ.get("STRESS_JAX_TEST_XLA_CACHE")
  or pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
  / "stress_jax"
  / "xla-tests"
)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(XLA_CACHE))
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


def tiny_run_config(data_dir, **fields):
  """The tiny config over `data_dir` with dotted fields set, e.g. **{"train.num_steps": 3}."""
  from tests import tiny_config

  config = tiny_config.get_config()
  config.data.data_dir = str(data_dir)
  for dotted, value in fields.items():
    *parents, name = dotted.split(".")
    section = config
    for parent in parents:
      section = section[parent]
    section[name] = value
  return config


def train_in_process(workdir, data_dir, **fields) -> dict:
  """train.train_and_evaluate on the tiny config in this process: no interpreter to start."""
  from stress_jax import train

  return train.train_and_evaluate(tiny_run_config(data_dir, **fields), str(workdir))


def sigterm_at_start(command, env, timeout: int = 300) -> tuple[int, str, str]:
  """Runs a train.py command and sends SIGTERM on its "training ..." line, as the loop starts.

  Returns (exit status, stdout after that line, stderr).
  """
  import signal

  proc = subprocess.Popen(
    command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  try:
    for line in proc.stdout:  # the loop is about to start: the run has steps left
      if line.startswith("training "):
        proc.send_signal(signal.SIGTERM)
        break
    out, err = proc.communicate(timeout=timeout)
  finally:
    if proc.poll() is None:
      proc.kill()
  return proc.returncode, out, err


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


def run_tool(module: str, *args) -> tuple[int, str, str]:
  """`python -m module args` run inside this process: (exit status, stdout, stderr).

  The entry point's flags are parsed and its main() called as `cli.run` would (see
  cli.run_in_process). A real subprocess per entry point (one_line_error) still checks
  what only a fresh interpreter shows: library log lines, tracebacks of the import.
  """
  import contextlib
  import importlib
  import io

  from absl import flags

  from stress_jax import cli, distributed

  if "coordinator_address" not in flags.FLAGS:
    distributed.define_flags()  # what the tools that train define under __main__
  tool = importlib.import_module(module)
  name = module.removeprefix("stress_jax.").removeprefix("datasets.synthetic.")
  stderr, stdout = io.StringIO(), io.StringIO()
  with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
    status = cli.run_in_process(tool.main, tool.FLAGS, args, name)
  return status, stdout.getvalue(), stderr.getvalue()


def in_process_error(module: str, *args, code: int = 2) -> str:
  """run_tool(module, *args), which must fail with ONE stderr line; returns it."""
  status, _, stderr = run_tool(module, *args)
  lines = [line for line in stderr.splitlines() if line.strip() and "%|" not in line]
  assert status == code, f"exit {status}:\n{stderr[-3000:]}"
  assert len(lines) == 1, f"{len(lines)} stderr lines:\n{stderr[-3000:]}"
  return lines[0]


def train_error(workdir, data_dir=None, **fields) -> str:
  """The one line train.py prints for a config it refuses, found in this process."""
  from stress_jax import cli, train

  config = tiny_run_config(data_dir or "", **fields)
  if data_dir is None:
    config.data.data_dir = ""
  with pytest.raises(cli.UserError) as error:
    train.train_and_evaluate(config, str(workdir))
  return f"train.py: error: {cli.one_line(error.value)}"


# The shared trained runs (tests/trained_model.py), for every test module here. At the
# end: that module imports this one's helpers.
from tests.trained_model import (  # noqa: E402, F401
  exported_dir,
  tiny_run,
  trained_workdir,
  two_process_run,
)
