"""The fold's range across seeds on the results page, printed beside a run's accuracy."""

from __future__ import annotations

import json

import pytest

from stress_jax import metrics, readme_results, results_page, seed_range
from stress_jax.configs import demo
from tests.test_readme_results import SUMMARY


def _row(fold, seed, accuracy):
  return {"fold": fold, "seed": seed, "accuracy": accuracy, "selected_step": 1}


@pytest.fixture
def results(tmp_path):
  """A results.json of the demo config: fold 0 over three seeds, nothing of fold 1."""
  runs = {"full": [_row(0, 0, 0.85), _row(0, 1, 0.90), _row(0, 2, 0.92)]}
  table = results_page.collect(runs, 2, [0, 1, 2], "dev", demo.get_config())
  path = tmp_path / "results.json"
  path.write_text(json.dumps(metrics.json_safe(table)))
  return path


def test_the_same_config_and_fold_gets_its_range_whatever_the_seed(results):
  config = demo.get_config()
  config.seed = 5  # another seed, and a data path, are still the page's config
  config.data.data_dir = "/elsewhere"
  # 0.85, 0.90, 0.92: mean 0.89, sample std 0.036.
  assert seed_range.range_text(config, 0.88, results) == (
    "0.850-0.920 across 3 seeds of fold 0 on docs/results.md (mean 0.890 ± 0.036)"
  )
  assert seed_range.range_text(config, 0.80, results).endswith("; this run lies outside it")
  assert seed_range.summary_line(config, {"test": {"accuracy": 0.9}}, results).startswith(
    "held-out accuracy 0.900; 0.850-0.920 across 3 seeds"
  )


def test_no_figure_says_why(results, tmp_path):
  config = demo.get_config()
  config.protocol.fold = 1
  assert seed_range.range_text(config, 0.9, results) == (
    "no seed range for fold 1 on the results page: it has no finished run of fold 1"
  )
  config = demo.get_config()
  config.optim.learning_rate = 0.1
  config.model.modality_dropout = 0.3
  assert seed_range.range_text(config, 0.9, results).endswith(
    "its runs used another config (model.modality_dropout, optim.learning_rate differ)"
  )
  assert "is not here" in seed_range.range_text(config, 0.9, tmp_path / "none.json")
  old = tmp_path / "old.json"
  old.write_text(json.dumps({"num_folds": 4, "variants": {}}))
  assert "predates the per-seed results page" in seed_range.range_text(config, 0.9, old)


def test_the_readme_table_shows_the_range_of_the_runs_config(results, tmp_path, monkeypatch):
  monkeypatch.setattr(seed_range, "RESULTS_JSON", results)
  run = tmp_path / "run"
  run.mkdir()
  (run / "summary.json").write_text(json.dumps(SUMMARY))
  (run / "config.json").write_text(demo.get_config().to_json_best_effort())
  readme = tmp_path / "README.md"
  readme.write_text(f"{readme_results.START}\n{readme_results.END}\n")
  readme_results.FLAGS(["readme_results", f"--workdir={run}", f"--markdown={readme}"])
  readme_results.main(["readme_results"])
  assert (
    "| the same fold across seeds (results page) | 0.850-0.920 across 3 seeds of fold 0 on "
    "docs/results.md (mean 0.890 ± 0.036) |" in readme.read_text()
  )
  (run / "config.json").unlink()
  readme_results.main(["readme_results"])
  assert "no seed range: the workdir has no config.json" in readme.read_text()


def test_a_page_older_than_a_config_field_still_matches_at_that_fields_old_value(results):
  table = json.loads(results.read_text())
  del table["config"]["model.image_reference"]  # the page's runs predate the field
  results.write_text(json.dumps(table))
  config = demo.get_config()
  config.model.image_reference = ""
  assert seed_range.range_text(config, 0.9, results).startswith("0.850-0.920 across 3 seeds")
  config.model.image_reference = "median"
  assert seed_range.range_text(config, 0.9, results).endswith(
    "its runs used another config (model.image_reference differ)"
  )
