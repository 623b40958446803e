"""Cross-validation driver: every fold / one fold, resume, ablation variants, the tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stress_jax import crossval
from tests import tiny_config
from tests.conftest import TINY_CONFIG, in_process_error

# Test accuracies the stand-in training reports per (variant, fold).
ACCURACY = {
  ("full", 0): 0.5,
  ("full", 1): 0.7,
  ("full", 2): 0.9,
}


class FakeTraining:
  """Records what train_and_evaluate would have been asked to do and writes its summary."""

  def __init__(self):
    self.calls = []

  def __call__(self, config, workdir):
    variant = workdir.parent.name if workdir.parent.name in crossval.VARIANTS else "full"
    fold = int(config.protocol.fold)
    self.calls.append((variant, fold, dict(config.model), str(workdir)))
    accuracy = ACCURACY.get((variant, fold), 0.1 * (fold + 1))
    summary = {
      "dataset": config.data.name,
      "fold": fold,
      "selected_step": 10 + fold,
      "final_step": 12,
      "test_subjects": [f"s{fold}"],
      "val_subjects": [],
      "test": {
        "accuracy": accuracy,
        "balanced_accuracy": accuracy - 0.1,
        "macro_f1": accuracy - 0.2,
        "roc_auc_macro": float("nan") if fold == 2 else 0.8,
        "num_clips": 9,
      },
      "attention_faithfulness": {"temporal": 1.0 + fold, "spatial_auroc": 0.5 + 0.1 * fold},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "summary.json").write_text(json.dumps(summary))
    return summary


@pytest.fixture
def config(fake_data_dir):
  config = tiny_config.get_config()
  config.data.data_dir = str(fake_data_dir)
  config.lock()
  return config


def test_all_folds_then_resume_and_table(config, tmp_path):
  fake = FakeTraining()
  result = crossval.run(config, tmp_path, train_fn=fake)
  assert [(v, f) for v, f, _, _ in fake.calls] == [("full", 0), ("full", 1), ("full", 2)]
  assert [w for *_, w in fake.calls] == [str(tmp_path / f"fold_{k}") for k in range(3)]
  assert config.protocol.fold == 0  # each fold trains on a copy

  table = json.loads((tmp_path / "crossval.json").read_text())
  full = table["variants"]["full"]
  assert full["finished"] == 3 and table["num_folds"] == 3
  accuracies = [0.5, 0.7, 0.9]
  assert full["mean_std"]["accuracy"]["mean"] == pytest.approx(0.7)
  assert full["mean_std"]["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
  assert full["mean_std"]["accuracy"]["std"] == pytest.approx(0.2)
  # NaN ROC-AUC of fold 2 is left out of the mean, not propagated.
  assert full["mean_std"]["roc_auc_macro"] == {
    "mean": pytest.approx(0.8),
    "std": 0.0,
    "n": 2,
    "dropped": 1,
  }
  assert full["mean_std"]["faithfulness_temporal"]["mean"] == pytest.approx(2.0)
  assert full["mean_std"]["faithfulness_spatial_auroc"]["mean"] == pytest.approx(0.6)
  md = (tmp_path / "crossval.md").read_text()
  assert "| spatial AUROC | temporal mass ratio |" in md
  assert "| 1 | s1 | 11 | 9 | 0.700 | 0.600 | 0.500 | 0.800 | 0.600 | 2.000 |" in md
  assert "0.700 ± 0.200" in md and "(3/3 folds)" in md
  assert result["trained"] == [("full", 0), ("full", 1), ("full", 2)]

  # Same command again: every fold is finished, nothing retrains.
  again = FakeTraining()
  result = crossval.run(config, tmp_path, train_fn=again)
  assert again.calls == [] and len(result["skipped"]) == 3


def test_single_fold_and_partial_table(config, tmp_path):
  fake = FakeTraining()
  crossval.run(config, tmp_path, fold=1, train_fn=fake)
  assert [(v, f) for v, f, _, _ in fake.calls] == [("full", 1)]
  table = json.loads((tmp_path / "crossval.json").read_text())
  assert table["variants"]["full"]["finished"] == 1
  assert table["variants"]["full"]["mean_std"]["accuracy"] == {
    "mean": 0.7,
    "std": 0.0,
    "n": 1,
    "dropped": 0,
  }
  assert "(1/3 folds)" in (tmp_path / "crossval.md").read_text()
  with pytest.raises(crossval.CrossValError, match="out of range"):
    crossval.run(config, tmp_path, fold=3, train_fn=fake)


def test_ablations_switch_one_thing_each(config, tmp_path):
  fake = FakeTraining()
  crossval.run(config, tmp_path, fold=0, ablations=True, train_fn=fake)
  models = {variant: model for variant, _, model, _ in fake.calls}
  assert list(models) == list(crossval.VARIANTS)
  switches = ("spatial_attention", "temporal_attention", "landmark_stream", "image_stream")
  assert all(models["full"][s] for s in switches)
  for switch in switches:
    changed = {s for s in switches if not models[f"no_{switch}"][s]}
    assert changed == {switch}
  for variant, _, _, workdir in fake.calls:
    assert workdir == str(tmp_path / variant / "fold_0")
  md = (tmp_path / "crossval.md").read_text()
  assert "## Ablations" in md
  for variant in crossval.VARIANTS:
    assert f"| {variant} | 1/3 |" in md


def test_cli_rejects_a_fold_out_of_range(fake_data_dir, tmp_path):
  line = in_process_error(
    "stress_jax.crossval",
    f"--config={TINY_CONFIG}",
    f"--workdir={tmp_path}",
    "--fold=7",
    f"--config.data.data_dir={fake_data_dir}",
  )
  assert line == "crossval: error: --fold=7 is out of range: this protocol has 3 folds"
