"""The ablation command: every variant over the folds, one job at a time, and the results page."""

from __future__ import annotations

import json

import pytest

from stress_jax import ablation, crossval
from tests import tiny_config

# Mean test accuracy the stand-in training reports per variant (the same on every fold
# but for a +/- 0.05 spread); no_image_stream beats the full model on purpose.
ACCURACY = {
  "full": 0.8,
  "no_spatial_attention": 0.7,
  "no_temporal_attention": 0.6,
  "no_landmark_stream": 0.5,
  "no_image_stream": 0.9,
  "triplet": 0.75,
}


def fake_training(calls):
  def train(config, workdir):
    variant, fold = workdir.parent.name, int(config.protocol.fold)
    calls.append((variant, fold, config.train.objective, dict(config.model)))
    accuracy = ACCURACY[variant] + (0.05 if fold else -0.05)
    summary = {
      "dataset": config.data.name,
      "fold": fold,
      "selected_step": 5,
      "final_step": 5,
      "test_subjects": [f"s{fold}"],
      "val_subjects": [],
      "test": {
        "accuracy": accuracy,
        "balanced_accuracy": accuracy,
        "macro_f1": accuracy - 0.1,
        "roc_auc_macro": 0.9,
        "num_clips": 9,
      },
      "attention_faithfulness": {"temporal_auroc": 0.9, "spatial_auroc": 0.6},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "summary.json").write_text(json.dumps(summary))
    return summary

  return train


@pytest.fixture
def config(fake_data_dir):
  config = tiny_config.get_config()
  config.data.data_dir = str(fake_data_dir)
  config.protocol.num_folds = 2
  config.lock()
  return config


def test_every_variant_and_fold_then_the_page(config, tmp_path):
  calls = []
  docs = tmp_path / "docs"
  page, preempted = ablation.run(config, tmp_path / "runs", docs, train_fn=fake_training(calls))
  assert not preempted
  assert {(v, f) for v, f, _, _ in calls} == {(v, f) for v in crossval.VARIANTS for f in (0, 1)}
  objectives = {v: o for v, _, o, _ in calls}
  assert objectives["triplet"] == "triplet"
  assert all(o == "cross_entropy" for v, o in objectives.items() if v != "triplet")
  # The triplet variant is the full model with another loss.
  models = {v: m for v, _, _, m in calls}
  assert models["triplet"] == models["full"]

  text = page.read_text()
  assert page == docs / "results.md"
  assert (docs / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  header = (
    "| variant | what changes | folds | accuracy | macro-F1 | temporal AUROC | spatial AUROC |"
  )
  assert header in text
  # Mean +/- sample std over the two folds: (0.75, 0.85) -> 0.800 +/- 0.071.
  assert "| full | the config as given | 2/2 | 0.800 ± 0.071 | 0.700 ± 0.071 |" in text
  assert "The full model is not better than `no_image_stream`" in text
  for name in ("no_spatial_attention", "no_landmark_stream", "triplet"):
    assert f"not better than `{name}`" not in text
  assert "![ablation bar chart](results.png)" in text
  assert "so a 7x7 map; spatial map `softmax`" in text
  assert "frame weights learn from their own stream's head only" in text
  assert "| accuracy | >= 0.882 | 0.800 | missed by 0.082 |" in text
  assert "| temporal AUROC | >= 0.900 | 0.900 | met |" in text
  assert "| spatial AUROC | >= 0.800 | 0.600 | missed by 0.200 |" in text
  assert "| landmark temporal AUROC | >= 0.870 | - | not measured |" in text

  # Everything is finished: the same command trains nothing and rewrites the same page.
  again = []
  ablation.run(config, tmp_path / "runs", docs, train_fn=fake_training(again))
  assert again == [] and page.read_text() == text


def test_one_job_then_collect(config, tmp_path):
  calls = []
  runs, docs = tmp_path / "runs", tmp_path / "docs"
  ablation.run(
    config, runs, docs, fold=1, variant="no_landmark_stream", train_fn=fake_training(calls)
  )
  assert [(v, f) for v, f, _, _ in calls] == [("no_landmark_stream", 1)]
  text = (docs / "results.md").read_text()
  assert "| no_landmark_stream | image stream only | 1/2 |" in text
  assert "| full | the config as given | 0/2 |" in text
  assert "The full model has no finished fold yet" in text
  # --collect trains nothing.
  ablation.run(config, runs, docs, collect_only=True, train_fn=fake_training(calls))
  assert len(calls) == 1
  with pytest.raises(crossval.CrossValError, match="unknown variant 'nope'"):
    ablation.run(config, runs, docs, variant="nope", train_fn=fake_training(calls))


def test_triplet_variant_trains_for_real_and_reaches_the_page(fake_data_dir, tmp_path):
  config = tiny_config.get_config()
  config.data.data_dir = str(fake_data_dir)
  config.protocol.num_folds = 2
  config.train.num_steps = 2
  config.train.eval_every_steps = 2
  config.lock()
  runs, docs = tmp_path / "runs", tmp_path / "docs"
  ablation.run(config, runs, docs, fold=0, variant="triplet")
  summary = json.loads((runs / "triplet" / "fold_0" / "summary.json").read_text())
  assert summary["final_step"] == 2
  saved = json.loads((runs / "triplet" / "fold_0" / "config.json").read_text())
  assert saved["train"]["objective"] == "triplet"
  # The fake clips mark cue frames, so the temporal localisation AUROC is measured.
  assert 0.0 <= summary["attention_faithfulness"]["temporal_auroc"] <= 1.0
  rows = (runs / "triplet" / "fold_0" / "metrics.jsonl").read_text().splitlines()
  assert any("train/triplet" in row for row in rows)
  text = (docs / "results.md").read_text()
  assert "| triplet | full model, triplet objective | 1/2 |" in text


def test_a_goal_missed_by_less_than_the_shown_digits_says_so():
  def table(mean):
    stats = {"mean": mean, "std": 0.0, "n": 4}
    return {"variants": {"full": {"mean_std": {"accuracy": stats}}}}

  assert "| accuracy | >= 0.882 | 0.88181 | missed by 0.00019 |" in ablation.goal_lines(
    table(0.88181)
  )
  assert "| accuracy | >= 0.882 | 0.882 | met |" in ablation.goal_lines(table(0.8821))


def test_a_variant_with_fewer_folds_is_compared_on_the_folds_both_finished():
  def variant(accuracies):
    rows = [{"fold": f, "accuracy": a, "macro_f1": a} for f, a in accuracies.items()]
    mean = sum(accuracies.values()) / len(accuracies)
    stats = {"mean": mean, "std": 0.0, "n": len(rows)}
    return {"folds": rows, "mean_std": {"accuracy": stats, "macro_f1": stats}}

  # Over all four folds the full model's mean (0.8) is below the partial variant's 0.85,
  # but on fold 0, the one both finished, it is better (0.9 vs 0.85).
  table = {
    "variants": {
      "full": variant({0: 0.9, 1: 0.7, 2: 0.8, 3: 0.8}),
      "triplet": variant({0: 0.85}),
      "no_image_stream": variant({0: 0.95, 1: 0.75, 2: 0.85, 3: 0.85}),
    }
  }
  lines = ablation.verdict(table)
  assert not any("`triplet`" in line for line in lines)
  assert (
    "**The full model is not better than `no_image_stream`**: mean accuracy 0.800 vs 0.850, "
    "macro-F1 0.800 vs 0.850." in lines
  )
  table["variants"]["triplet"] = variant({0: 0.95, 2: 0.85})
  assert (
    "**The full model is not better than `triplet`** (on the folds both finished: 0, 2): "
    "mean accuracy 0.850 vs 0.900, macro-F1 0.850 vs 0.900." in ablation.verdict(table)
  )
