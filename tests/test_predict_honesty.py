"""An export says what it learnt from; predict says so when that was simulated faces."""

from __future__ import annotations

import json
import shutil

import ml_collections
import pytest

from stress_jax import export_settings, predict
from tests.trained_model import exported_dir, feat_video, trained_workdir  # noqa: F401


def _config(name: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"data": {"name": name}})


def test_the_export_records_its_training_data(exported_dir):  # noqa: F811
  recorded = json.loads((exported_dir / "config.json").read_text())["training_data"]
  assert recorded["name"] == "fake_clips" and recorded["source"] == "provenance.json"
  assert recorded["simulated"] is False


def test_simulated_data_is_recognised_from_provenance_or_the_config(tmp_path):
  provenance = {
    "dataset": {"name": "stress_faces", "config": "synthetic", "version": "1.0.0"},
    "dataset_metadata": {"kind": "synthetic", "simulator": {}},
  }
  (tmp_path / "provenance.json").write_text(json.dumps(provenance))
  recorded = export_settings.training_data(tmp_path, _config("stress_faces/synthetic"))
  assert recorded == dict(
    name="stress_faces",
    config="synthetic",
    version="1.0.0",
    simulated=True,
    source="provenance.json",
  )
  empty = tmp_path / "no_provenance"
  empty.mkdir()
  for name, simulated in [("stress_faces/synthetic_small", True), ("stress_faces/video", False)]:
    recorded = export_settings.training_data(empty, _config(name))
    assert recorded["simulated"] is simulated and recorded["source"] == "training config"
  # An export made before training_data existed: its training config tells.
  older = {"training_config": {"data": {"name": "stress_faces/synthetic"}}}
  assert export_settings.simulated_training(older) is True


@pytest.fixture
def simulated_export(exported_dir, tmp_path):  # noqa: F811
  """The tiny export as if its run had trained on stress_faces/synthetic."""
  copy = tmp_path / "simulated_model"
  shutil.copytree(exported_dir, copy)
  config = json.loads((copy / "config.json").read_text())
  config["training_data"].update(name="stress_faces", config="synthetic", simulated=True)
  (copy / "config.json").write_text(json.dumps(config))
  return copy


@pytest.mark.parametrize("stream", [False, True], ids=["windows", "stream"])
def test_predict_says_once_that_the_model_never_saw_a_real_face(
  simulated_export, tmp_path, capsys, stream
):
  predict.run(
    simulated_export,
    str(feat_video()),
    tmp_path / "out",
    stream=stream,
    max_frames=8,
    num_pictures=0,
  )
  printed = capsys.readouterr().out.splitlines()
  notes = [line for line in printed if "trained on simulated faces" in line]
  assert notes == [predict.SIMULATED_NOTE.format(data="stress_faces/synthetic")]
  assert printed.index(notes[0]) == 0  # before any score
  rows = [json.loads(line) for line in (tmp_path / "out" / "single_face.jsonl").open()]
  assert rows and all(row["trained_on_simulated_faces"] is True for row in rows)


def test_a_model_trained_on_real_data_gets_no_note(exported_dir):  # noqa: F811
  config = json.loads((exported_dir / "config.json").read_text())
  assert export_settings.simulated_training(config) is False


def test_an_unknown_follow_rule_is_one_clear_error(exported_dir):  # noqa: F811
  with pytest.raises(predict.PredictError, match="--follow: follow 'tallest' must be one of"):
    predict.run(exported_dir, str(feat_video()), follow="tallest")
