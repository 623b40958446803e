"""A workdir refuses a rerun of another config or dataset; crossval's skip uses the same check."""

from __future__ import annotations

import json

import pytest

from stress_jax import crossval, input_pipeline, provenance
from tests import tiny_config
from tests.conftest import train_error
from tests.test_crossval import FakeTraining


@pytest.fixture
def config(fake_data_dir):
  config = tiny_config.get_config()
  config.data.data_dir = str(fake_data_dir)
  return config


@pytest.fixture
def handle(config):
  return input_pipeline.open_dataset(config.data)


def test_fingerprint_names_what_changed(config, handle, tmp_path):
  recorded = provenance.fingerprint(config, handle)
  assert recorded["dataset"]["name"] == "fake_clips"
  assert recorded["dataset"]["splits"] and recorded["dataset"]["features"]
  provenance.record(tmp_path, recorded)
  changed = config.copy_and_resolve_references()
  changed.protocol.fold = 1
  changed.train.num_epochs = 5
  changed.data.data_dir = "/elsewhere"  # where the data lie is not what they are
  current = provenance.fingerprint(changed, handle)
  assert provenance.changes(recorded, current) == ["protocol.fold", "train.num_epochs"]
  assert provenance.changes(recorded, current, ("train",)) == ["protocol.fold"]
  with pytest.raises(provenance.ProvenanceError) as error:
    provenance.check(tmp_path, current, ("train.num_epochs",))
  message = str(error.value)
  assert "protocol.fold 0 -> 1" in message and "\n" not in message
  assert "num_epochs" not in message.split("--allow_config_change=")[1]
  # Allowed on purpose: no error.
  provenance.check(tmp_path, current, ("train.num_epochs", "protocol.fold"))
  # Another dataset (other split sizes) is refused too.
  other = json.loads(json.dumps(recorded))
  other["dataset"]["splits"]["s00"] = 999
  assert provenance.changes(other, recorded) == ["dataset.splits"]


def test_train_refuses_a_changed_config_before_writing(config, handle, tmp_path, fake_data_dir):
  workdir = tmp_path / "run"
  recorded = provenance.fingerprint(config, handle)
  recorded["config"]["model.head_width"] = 32  # as if the first run had a wider head
  provenance.record(workdir, recorded)
  before = sorted(p.name for p in workdir.iterdir())
  line = train_error(workdir, fake_data_dir)
  assert "model.head_width 32 -> 16" in line and "--allow_config_change" in line
  assert sorted(p.name for p in workdir.iterdir()) == before  # nothing written


def test_crossval_skips_only_folds_of_the_same_fingerprint(config, handle, tmp_path):
  class RecordingTraining(FakeTraining):
    def __call__(self, fold_config, workdir):
      summary = super().__call__(fold_config, workdir)
      provenance.record(workdir, provenance.fingerprint(fold_config, handle))
      return summary

  crossval.run(config, tmp_path, fold=0, train_fn=RecordingTraining())
  again = RecordingTraining()
  assert crossval.run(config, tmp_path, fold=0, train_fn=again)["skipped"] == [("full", 0)]
  longer = config.copy_and_resolve_references()
  longer.train.num_epochs = 4
  with pytest.raises(crossval.CrossValError, match=r"train\.num_epochs changed"):
    crossval.run(longer, tmp_path, fold=0, train_fn=again)
  # Allowed: the finished fold trains on instead of being skipped or refused.
  result = crossval.run(longer, tmp_path, fold=0, train_fn=again, allow=("train.num_epochs",))
  assert result["trained"] == [("full", 0)] and again.calls


def test_a_field_added_later_resumes_only_at_the_value_older_runs_had():
  recorded = {"config": {"model.head_width": 16}, "dataset": {}}
  current = {"config": {"model.head_width": 16, "model.modality_dropout": 0.0}, "dataset": {}}
  assert provenance.changes(recorded, current) == []
  current["config"]["model.modality_dropout"] = 0.3
  assert provenance.changes(recorded, current) == ["model.modality_dropout"]
  current["config"] = {"model.head_width": 16, "model.brand_new": 1}
  assert provenance.changes(recorded, current) == ["model.brand_new"]


def test_every_model_field_added_later_defaults_to_the_value_older_runs_had():
  from stress_jax.configs import common

  defaults = common.model_config()
  added = {k.removeprefix("model."): v for k, v in provenance.ADDED_LATER.items()}
  model_fields = {k: v for k, v in added.items() if k in defaults}
  assert {"modality_dropout", "image_reference", "image_reference_mode"} <= set(model_fields)
  for name, value in model_fields.items():
    assert defaults[name] == value, name
