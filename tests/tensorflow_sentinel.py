"""Runs Python code with a stand-in `tensorflow` package that records any import of it.

The project must work without TensorFlow. Checking `sys.modules` proves little where
TensorFlow is not installed (an import attempt fails quietly and leaves no trace), so
the code runs in a subprocess whose sys.path starts with a fake `tensorflow` package:
importing it writes the importer's stack to a log and then raises ImportError, as a
missing TensorFlow would. An empty log means nothing tried to import TensorFlow.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

_SENTINEL = """
import os, traceback
with open(os.environ["TF_SENTINEL_LOG"], "a") as log:
  log.write("".join(traceback.format_stack()) + "\\n")
raise ImportError("tensorflow must not be imported (tests/tensorflow_sentinel.py)")
"""


def tensorflow_imports(code: str, workdir: pathlib.Path, timeout: float = 600) -> str:
  """Runs `code` (it must succeed); returns the stacks of every tensorflow import, or ""."""
  package = workdir / "sentinel" / "tensorflow"
  package.mkdir(parents=True, exist_ok=True)
  (package / "__init__.py").write_text(_SENTINEL)
  log = workdir / "tensorflow_imports.log"
  env = dict(os.environ, TF_SENTINEL_LOG=str(log), JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join([str(package.parent), str(REPO), env.get("PYTHONPATH", "")])
  process = subprocess.run(
    [sys.executable, "-c", code],
    cwd=workdir,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  assert process.returncode == 0, process.stderr[-3000:]
  return log.read_text() if log.exists() else ""
