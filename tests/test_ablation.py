"""The ablation command: every variant x fold x seed as resumable jobs, and the results page."""

from __future__ import annotations

import json

import pytest

from stress_jax import ablation, crossval, provenance, results_page
from tests import tiny_config

# Mean test accuracy the stand-in training reports per variant; no_image_stream beats the
# full model on purpose, no_temporal_attention ties it on fold 1.
ACCURACY = {
  "full": 0.8,
  "no_spatial_attention": 0.7,
  "no_temporal_attention": 0.8,
  "no_landmark_stream": 0.5,
  "no_image_stream": 0.9,
  "triplet": 0.75,
}


def fake_accuracy(variant: str, fold: int, seed: int) -> float:
  if variant == "no_temporal_attention":
    return 0.8 if fold else 0.7
  return ACCURACY[variant] + (0.05 if fold else -0.05) + 0.02 * seed


def fake_training(calls):
  def train(config, workdir):
    variant, fold, seed = workdir.parent.parent.name, int(config.protocol.fold), config.seed
    assert workdir.name == f"seed_{seed}" and workdir.parent.name == f"fold_{fold}"
    calls.append((variant, fold, seed, config.train.objective, dict(config.model)))
    accuracy = fake_accuracy(variant, fold, seed)
    # The landmark stream's attention collapses in one run of the full model, on the
    # cues it can see; against every cue frame it is always weak, and no goal reads that.
    landmark = 0.3 if (variant, fold, seed) == ("full", 1, 1) else 0.9
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
      "attention_faithfulness": {
        "temporal_auroc": 0.95,
        "landmark_temporal_auroc": 0.45,
        "landmark_temporal_visible_auroc": landmark,
        "spatial_auroc": 0.6,
      },
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


def test_every_variant_fold_and_seed_then_the_page(config, tmp_path):
  calls = []
  docs, runs = tmp_path / "docs", tmp_path / "runs"
  page, preempted = ablation.run(
    config,
    runs,
    docs,
    seeds=["0", "1"],
    chosen_on="synthetic seed 7",
    train_fn=fake_training(calls),
  )
  assert not preempted
  expected = {(v, f, s) for v in crossval.VARIANTS for f in (0, 1) for s in (0, 1)}
  assert {(v, f, s) for v, f, s, _, _ in calls} == expected and len(calls) == len(expected)
  objectives = {v: o for v, _, _, o, _ in calls}
  assert objectives["triplet"] == "triplet"
  assert all(o == "cross_entropy" for v, o in objectives.items() if v != "triplet")
  models = {v: m for v, _, _, _, m in calls}
  assert models["triplet"] == models["full"]

  text = page.read_text()
  assert page == docs / "results.md"
  assert (docs / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert sorted(p.name for p in docs.iterdir()) == ["results.json", "results.md", "results.png"]
  assert str(tmp_path) not in text and "/tmp" not in text
  assert "Settings chosen on: synthetic seed 7 (`--chosen_on`)." in text
  assert "seeds 0, 1 (`config.seed`" in text
  # full: fold 0 -> 0.75, 0.77; fold 1 -> 0.85, 0.87: mean 0.810, sample std 0.0589.
  assert "| full | the config as given | 4/4 | 0.810 ± 0.059 | 0.710 ± 0.059 |" in text
  assert "| no_image_stream | 0 | 4 | -0.100 |" in text
  assert "| no_spatial_attention | 4 | 4 | +0.100 |" in text
  assert "| full | 0.760 ± 0.014, 0.750-0.770 (n=2) | 0.860 ± 0.014, 0.850-0.870 (n=2) |" in text
  assert "| accuracy (mean) | >= 0.90 | 0.810 | missed by 0.090 |" in text
  assert "| full beats `no_image_stream` | 10 of 12 | 0 | missed by 4 wins | 0 of 4" in text
  assert "| full beats `no_spatial_attention` | 10 of 12 | 4 | met | 4 of 4" in text
  assert "| spatial AUROC (mean) | >= 0.80 | 0.600 | missed by 0.200 |" in text
  assert "| temporal AUROC (mean) | >= 0.90 | 0.950 | met |" in text
  assert "| accuracy std across seeds, worst fold | <= 0.03 | 0.014 | met | fold" in text
  assert (
    "| lowest temporal AUROC of any run (no collapse) | >= 0.50 | 0.300 | missed by 0.200 | "
    "landmark temporal AUROC, point-moving cues, fold 1 seed 1; 1 stream-run(s) below 0.5 |" in text
  )
  # (0.9 * 3 + 0.3) / 4 = 0.75 on the cues the points carry; the all-cue 0.45 is no goal.
  assert (
    "| landmark temporal AUROC, point-moving cues (mean) | >= 0.87 | 0.750 | missed by 0.120 |"
    in text
  )
  assert "all cues (mean)" not in text
  assert "| full | 1 | 1 | 5 | 0.870 | 0.770 | 0.950 | 0.450 | 0.300 | 0.600 |" in text
  saved = json.loads((docs / "results.json").read_text())
  assert saved["seeds"] == [0, 1] and saved["chosen_on"] == "synthetic seed 7"
  assert saved["paired"]["no_landmark_stream"] == {
    "wins": 4,
    "ties": 0,
    "pairs": 4,
    "mean_difference": pytest.approx(0.3),
  }
  assert saved["config"] == results_page.comparable_config(config)
  assert saved["variants"]["full"]["fold_across_seeds"]["1"]["min"] == pytest.approx(0.85)

  # Everything is finished: the same command trains nothing and rewrites the same page.
  again = []
  ablation.run(
    config, runs, docs, seeds=[0, 1], chosen_on="synthetic seed 7", train_fn=fake_training(again)
  )
  assert again == [] and page.read_text() == text


def test_one_job_then_collect_and_shards(config, tmp_path):
  calls = []
  runs, docs = tmp_path / "runs", tmp_path / "docs"
  ablation.run(
    config,
    runs,
    docs,
    fold=1,
    variant="no_landmark_stream",
    seed=2,
    train_fn=fake_training(calls),
  )
  assert [(v, f, s) for v, f, s, _, _ in calls] == [("no_landmark_stream", 1, 2)]
  assert (runs / "no_landmark_stream" / "fold_1" / "seed_2" / "summary.json").is_file()
  text = (docs / "results.md").read_text()
  assert "| no_landmark_stream | image stream only | 1/6 |" in text
  assert "| full | the config as given | 0/6 |" in text
  assert f"Settings chosen on: {ablation.NOT_SEPARATE}" in text
  # --collect trains nothing.
  ablation.run(config, runs, docs, collect_only=True, train_fn=fake_training(calls))
  assert len(calls) == 1
  # A run recorded with another config (here: another learning rate) is left out, by name.
  ablation.run(config, runs, docs, fold=0, variant="full", seed=0, train_fn=fake_training(calls))
  job = ablation.run_config(config, "no_landmark_stream", 1, 2)
  recorded = provenance.config_fingerprint(job)
  recorded["optim.learning_rate"] = 0.5
  folder = runs / "no_landmark_stream" / "fold_1" / "seed_2"
  (folder / "provenance.json").write_text(json.dumps({"config": recorded}))
  ablation.run(config, runs, docs, collect_only=True)
  text = (docs / "results.md").read_text()
  assert "| no_landmark_stream | image stream only | 0/6 |" in text
  assert (
    "**Left out: 1 finished run(s) of another config** (variant/fold/seed, fields that "
    "differ): no_landmark_stream/fold_1/seed_2 (optim.learning_rate)." in text
  )
  (folder / "provenance.json").write_text(
    json.dumps({"config": provenance.config_fingerprint(job)})
  )
  ablation.run(config, runs, docs, collect_only=True)
  assert "| no_landmark_stream | image stream only | 1/6 |" in (docs / "results.md").read_text()
  # Two shards share the job list without overlap.
  every = ablation.jobs(2, [0, 1, 2])
  halves = [ablation.jobs(2, [0, 1, 2], shard=(k, 2)) for k in (0, 1)]
  assert sorted(halves[0] + halves[1]) == sorted(every) and not set(halves[0]) & set(halves[1])
  assert len(every) == len(crossval.VARIANTS) * 2 * 3
  # Seed-major: a list cut short after its first len(VARIANTS) jobs already holds every
  # variant of (fold 0, seed 0), so the page has paired runs from the start.
  first = every[: len(crossval.VARIANTS)]
  assert {(f, s) for _, f, s in first} == {(0, 0)} and {v for v, _, _ in first} == set(
    crossval.VARIANTS
  )
  some = ablation.jobs(2, [0, 1], variant=["full", "no_image_stream"])
  assert some[:4] == [
    ("full", 0, 0),
    ("no_image_stream", 0, 0),
    ("full", 1, 0),
    ("no_image_stream", 1, 0),
  ]
  with pytest.raises(crossval.CrossValError, match="unknown variant 'nope'"):
    ablation.run(config, runs, docs, variant="nope", train_fn=fake_training(calls))
  with pytest.raises(ablation.AblationError, match="--seed=5 is not one of --seeds=0,1,2"):
    ablation.run(config, runs, docs, seed=5, train_fn=fake_training(calls))
  with pytest.raises(ablation.AblationError, match="--shard must look like k/n"):
    ablation.parse_shard("half")
  with pytest.raises(ablation.AblationError, match="k must be in"):
    ablation.parse_shard("2/2")


def test_collecting_nothing_keeps_the_page_it_would_have_replaced(config, tmp_path):
  runs, docs = tmp_path / "runs", tmp_path / "docs"
  ablation.run(config, runs, docs, fold=0, variant="full", seed=0, train_fn=fake_training([]))
  page = (docs / "results.md").read_text()
  assert "| full | the config as given | 1/6 |" in page
  # A mistyped --workdir: one line, and the page is as it was.
  with pytest.raises(ablation.AblationError, match="runz holds no finished run of this config"):
    ablation.run(config, tmp_path / "runz", docs, collect_only=True)
  assert (docs / "results.md").read_text() == page
  # Only runs of another config: the error names one.
  folder = runs / "full" / "fold_0" / "seed_0"
  recorded = provenance.config_fingerprint(ablation.run_config(config, "full", 0, 0))
  recorded["optim.learning_rate"] = 0.5
  (folder / "provenance.json").write_text(json.dumps({"config": recorded}))
  with pytest.raises(
    ablation.AblationError, match=r"1 of another config, e\.g\. full/fold_0/seed_0"
  ):
    ablation.run(config, runs, docs, collect_only=True)
  assert (docs / "results.md").read_text() == page

  # Stopped (SIGTERM) before any run of a new workdir finished: no page, no error, the
  # exit status the run asked for.
  def stopped(config, workdir):
    return {"preempted": True, "exit_code": 143}

  assert ablation.run(config, tmp_path / "new", docs, train_fn=stopped) == (None, 143)
  assert (docs / "results.md").read_text() == page


def test_a_variant_the_config_already_is_neither_trains_nor_gets_a_row(fake_data_dir, tmp_path):
  config = tiny_config.get_config()
  config.data.data_dir = str(fake_data_dir)
  config.protocol.num_folds = 2
  config.train.objective = "triplet"
  config.lock()
  calls, runs, docs = [], tmp_path / "runs", tmp_path / "docs"
  ablation.run(config, runs, docs, seeds="0", train_fn=fake_training(calls))
  assert sorted({v for v, *_ in calls}) == sorted(set(crossval.VARIANTS) - {"triplet"})
  assert {objective for _, _, _, objective, _ in calls} == {"triplet"}
  text = (docs / "results.md").read_text()
  assert "| full | the config as given | 2/2 |" in text
  assert "| triplet |" not in text and "objective triplet." in text
  with pytest.raises(crossval.CrossValError, match="--variant=triplet is the full model"):
    ablation.run(config, runs, docs, variant="triplet", train_fn=fake_training(calls))
  # crossval --ablations skips it too.
  trained = crossval.run(config, tmp_path / "cv", ablations=True, train_fn=lambda c, w: {})
  assert {v for v, _ in trained["trained"]} == set(crossval.VARIANTS) - {"triplet"}
  assert set(trained["table"]["variants"]) == set(crossval.VARIANTS) - {"triplet"}


def _row(fold, seed, accuracy, **extra):
  return {"fold": fold, "seed": seed, "accuracy": accuracy, "selected_step": 1, **extra}


def test_a_missing_dataset_is_built_before_the_jobs(tmp_path):
  # A fresh machine: the ablation's first job finds no data, as train.py would.
  config = tiny_config.get_config()
  config.data.name, config.data.data_dir = "stress_faces/synthetic_tiny", str(tmp_path / "tfds")
  config.data.build_if_missing, config.data.num_frames = True, 0
  calls = []
  ablation.run(
    config, tmp_path / "runs", tmp_path / "docs", fold=0, variant="full", seeds=[0],
    train_fn=fake_training(calls),
  )  # fmt: skip
  assert (tmp_path / "tfds" / "stress_faces" / "synthetic_tiny").is_dir()
  assert [(v, f) for v, f, *_ in calls] == [("full", 0)]


def test_goals_count_ties_as_losses_scale_the_wins_and_find_the_worst_fold():
  runs = {
    "full": [_row(0, 0, 0.9), _row(0, 1, 0.96), _row(1, 0, 0.9), _row(1, 1, 0.91)],
    # One tie (fold 0 seed 0), one loss, two wins.
    "no_image_stream": [_row(0, 0, 0.9), _row(0, 1, 0.97), _row(1, 0, 0.8), _row(1, 1, 0.8)],
    "no_spatial_attention": [_row(0, 0, 0.5)],
  }
  table = results_page.collect(runs, 2, [0, 1], "dev")
  assert table["paired"]["no_image_stream"] == {
    "wins": 2,
    "ties": 1,
    "pairs": 4,
    "mean_difference": pytest.approx(0.05),
  }
  goals = {goal["goal"]: goal for goal in table["goals"]}
  # 10 of 12 scaled to 4 pairs needs 4 wins (ceil(3.33)); to 1 pair, 1.
  assert results_page.wins_needed(4) == 4 and results_page.wins_needed(12) == 10
  assert goals["full beats `no_image_stream`"]["miss"] == 2
  assert goals["full beats `no_spatial_attention`"]["met"] is True
  assert goals["full beats `no_landmark_stream`"]["met"] is None
  # Fold 0's seeds: 0.9 and 0.96 -> std 0.0424, the worst; missed by 0.0124.
  spread = goals["accuracy std across seeds, worst fold"]
  assert spread["detail"] == "fold 0" and spread["miss"] == pytest.approx(0.06 / 2**0.5 - 0.03)
  assert goals["accuracy (mean)"]["met"] is True
  assert goals["lowest temporal AUROC of any run (no collapse)"]["met"] is None
  lines = results_page.goal_lines(table)
  assert "| accuracy (mean) | >= 0.90 | 0.917 | met |  |" in lines
  assert any(
    line.startswith("| spatial AUROC (mean) | >= 0.80 | - | not measured") for line in lines
  )


def test_triplet_variant_trains_for_real_and_reaches_the_page(fake_data_dir, tmp_path):
  config = tiny_config.get_config()
  config.data.data_dir = str(fake_data_dir)
  config.protocol.num_folds = 2
  config.train.num_steps = 2
  config.train.eval_every_steps = 2
  config.lock()
  runs, docs = tmp_path / "runs", tmp_path / "docs"
  ablation.run(config, runs, docs, fold=0, variant="triplet", seeds=[3])
  workdir = runs / "triplet" / "fold_0" / "seed_3"
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["final_step"] == 2
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["train"]["objective"] == "triplet" and saved["seed"] == 3
  # The fake clips mark cue frames, so the temporal localisation AUROC is measured.
  assert "temporal_auroc" in summary["attention_faithfulness"]
  rows = (workdir / "metrics.jsonl").read_text().splitlines()
  assert any("train/triplet" in row for row in rows)
  text = (docs / "results.md").read_text()
  assert "| triplet | full model, triplet objective | 1/2 |" in text


def test_the_page_names_the_simulated_population_it_read():
  from stress_jax.configs import demo

  config = demo.get_config()
  config.data.simulator = "seed=7"
  table = results_page.collect({"full": []}, 4, [0], "elsewhere", config)
  assert table["dataset"] == "stress_faces/synthetic-seed7"
  assert "Dataset `stress_faces/synthetic-seed7`, kfold" in results_page.page(table, config, "")


def test_the_page_says_which_checkpoint_each_run_reports():
  from stress_jax.configs import demo

  config = demo.get_config()
  table = results_page.collect({"full": []}, 4, [0], "elsewhere", config)
  assert "Each run reports its last checkpoint." in results_page.page(table, config, "")
  config.train.report_checkpoint = "best"
  assert "checkpoint is chosen on validation subjects" in results_page.page(table, config, "")
