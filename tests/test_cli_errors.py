"""Every entry point answers a mistake the user can make with ONE line (exit status 2).

One case per entry point runs the real command in a subprocess, as a user would:
`one_line_error` fails on a traceback or on any other line (library logs, TFDS's
catalogue). The other cases call the same entry point inside this process
(`in_process_error`, `train_error`), which checks the same line without starting an
interpreter each time.
"""

from __future__ import annotations

import json

import pytest

from tests import tiny_config
from tests.conftest import REPO, TINY_CONFIG, in_process_error, one_line_error, train_error
from tests.test_ingest import write_manifest
from tests.test_preprocess import write_garbage


def _train(workdir, *overrides, config=TINY_CONFIG):
  return [REPO / "train.py", f"--config={config}", f"--workdir={workdir}", *overrides]


def _module(name, *args):
  return ["-m", name, *args]


def _manual(tmp_path, rows):
  manual = tmp_path / "manual"
  manual.mkdir()
  write_garbage(manual / "broken.mp4")
  write_garbage(manual / "noise.avi")
  write_manifest(manual, rows)
  return manual


def test_unknown_and_unbuilt_datasets(tmp_path, fake_data_dir):
  run = tmp_path / "run"
  data = f"--config.data.data_dir={fake_data_dir}"
  line = one_line_error(_train(run, data, "--config.protocol.fold=7"))
  assert line == "train.py: error: protocol.fold=7 is out of range: this protocol has 3 folds"
  line = train_error(run, **{"data.name": "nosuch_set"})
  assert "unknown dataset 'nosuch_set'; this project's datasets are " in line
  assert "stress_faces, ubfc_phys, yonsei_stress, feature_maps" in line
  unbuilt = {"data.name": "stress_faces/synthetic_tiny", "data.data_dir": str(tmp_path / "empty")}
  line = train_error(run, **unbuilt)
  assert "dataset stress_faces/synthetic_tiny is not built in" in line
  assert not run.exists()  # refused before anything was written
  line = one_line_error(
    _module("stress_jax.crossval", f"--config={TINY_CONFIG}", f"--workdir={run}")
    + [
      "--config.data.name=stress_faces/synthetic_tiny",
      f"--config.data.data_dir={tmp_path / 'empty'}",
    ]
  )
  assert line.startswith("crossval: error: dataset stress_faces/synthetic_tiny is not built")
  line = one_line_error(_module("stress_jax.data.build", "nosuch_set"))
  known = "feature_maps, stress_faces, ubfc_phys, yonsei_stress"
  assert line == f"data.build: error: unknown dataset 'nosuch_set'; known: {known}"
  line = in_process_error("stress_jax.data.build", "stress_faces", "--file_format=tfrecord")
  assert "--file_format" in line


def test_video_builds(tmp_path):
  data = tmp_path / "tfds"
  line = in_process_error("stress_jax.data.build", "stress_faces/video", f"--data_dir={data}")
  assert "stress_faces/video needs --manual_dir" in line
  # A misspelt label through train.py (which builds the missing dataset).
  manual = _manual(tmp_path, ["broken.mp4,p1,stress,,,", "noise.avi,p2,stres,,,"])
  line = train_error(
    tmp_path / "run",
    **{
      "data.name": "stress_faces/video",
      "data.manual_dir": str(manual),
      "data.data_dir": str(data),
      "data.build_if_missing": True,
    },
  )
  assert "line 3: unknown label 'stres' (known: no_stress, stress)" in line
  # Every source bad: nothing to write.
  write_manifest(manual, ["broken.mp4,p1,stress,,,", "noise.avi,p2,no_stress,,,"])
  line = in_process_error(
    "stress_jax.data.build", "stress_faces/video", f"--manual_dir={manual}", f"--data_dir={data}"
  )
  assert "no source gave a single clip" in line and "broken.mp4" in line
  assert not list(data.rglob("*.array_record*"))


@pytest.fixture
def workdir(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(tiny_config.get_config().to_json())
  return workdir


def test_evaluate_export_predict(workdir, tmp_path):
  line = one_line_error(_module("stress_jax.evaluate", f"--workdir={workdir}"))
  assert (
    line == f"evaluate: error: no checkpoints in {workdir} (expected {workdir / 'checkpoints'})"
  )
  taken = tmp_path / "taken.txt"
  taken.write_text("not a folder")
  line = one_line_error(_module("stress_jax.export", f"--workdir={workdir}", f"--output={taken}"))
  assert line == f"export: error: --output={taken} is a file; give a folder"
  line = one_line_error(_module("stress_jax.predict", f"--model={workdir}", f"--video={taken}"))
  assert "is not an export folder" in line
  feature_export = tmp_path / "features_export"
  feature_export.mkdir()
  (feature_export / "config.json").write_text(json.dumps({"input_mode": "features"}))
  (feature_export / "model.stablehlo").write_bytes(b"")
  line = in_process_error("stress_jax.predict", f"--model={feature_export}", f"--video={taken}")
  assert "is a feature-map model (input_mode=features" in line


def test_feature_writer_weights_converter_and_contact_sheet(tmp_path):
  not_a_run = tmp_path / "not_a_run"
  not_a_run.mkdir()
  output = tmp_path / "features"
  line = one_line_error(
    _module("stress_jax.featuredb.write", "--source=x", f"--output={output}")
    + [f"--workdir={not_a_run}"]
  )
  assert line.startswith(f"featuredb.write: error: {not_a_run}") and "config.json" in line
  line = in_process_error("stress_jax.featuredb.write", "--source=x", "--dtype=int8")
  assert line.startswith("featuredb.write: error: flag --dtype=int8:")
  assert not output.exists()
  line = one_line_error(_module("stress_jax.models.pretrained", "convert", "only_one.pth"))
  assert line == (
    "models.pretrained: error: expected the arguments convert IN.pth OUT.safetensors, "
    "got convert only_one.pth"
  )
  line = in_process_error(
    "stress_jax.models.pretrained", "convert", str(tmp_path / "a.pth"), "b.bin"
  )
  assert line == f"models.pretrained: error: pretrained weights {tmp_path / 'a.pth'}: no such file"
  sheet = ["stress_jax.datasets.synthetic.contact_sheet", f"--output={tmp_path / 's.png'}"]
  line = one_line_error(_module(*sheet, f"--data_dir={tmp_path / 'empty'}"))
  assert (
    line == f"contact_sheet: error: stress_faces/synthetic is not built in {tmp_path / 'empty'}"
  )
  line = in_process_error(*sheet, "--frames=0")
  assert line == "contact_sheet: error: flag --frames=0: 0 is not a positive integer"
  assert not (tmp_path / "s.png").exists()


def test_config_files_are_found_from_any_directory_or_named_in_one_line(tmp_path, monkeypatch):
  from stress_jax import cli

  monkeypatch.chdir(tmp_path)  # not the repository: the shipped configs are not here
  found = cli.shipped_config("stress_jax/configs/paper.py")
  assert found == str(REPO / "stress_jax" / "configs" / "paper.py")
  (tmp_path / "mine.py").write_text("")
  assert cli.shipped_config("mine.py") == "mine.py"  # the user's own file, as given
  assert cli.shipped_config("stress_jax/configs/nosuch.py") == "stress_jax/configs/nosuch.py"
  run = tmp_path / "run"
  line = in_process_error("stress_jax.crossval", "--config=configs/dmeo.py", f"--workdir={run}")
  assert line == "crossval: error: config file configs/dmeo.py does not exist"
  assert not run.exists()


def test_a_bad_model_field_is_refused_before_any_data_is_built(tmp_path):
  run, empty = tmp_path / "run", tmp_path / "empty"
  fields = {"model.image_reference": "medain", "data.data_dir": str(empty)}
  line = train_error(run, **fields)
  assert line == (
    "train.py: error: image_reference must be one of ('', 'mean', 'median'), got 'medain'"
  )
  assert not run.exists() and not empty.exists()
  fields = {"train.report_checkpoint": "lats", "data.data_dir": str(empty)}
  line = train_error(run, **fields)
  assert line == "train.py: error: train.report_checkpoint='lats' is not one of best, last"
  assert not run.exists() and not empty.exists()
