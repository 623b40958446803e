"""The README's demo table is generated from a run's summary.json."""

import json

import pytest

from stress_jax import readme_results

SUMMARY = {
  "dataset": "stress_faces/synthetic",
  "fold": 0,
  "selected_step": 462,
  "test_subjects": ["s00", "s01", "s02"],
  "val_subjects": ["s03", "s04"],
  "label_names": ["no_stress", "weak", "strong"],
  "epochs": 12,
  "steps": 504,
  "wall_seconds": 571.4,
  "test": {
    "accuracy": 0.8819,
    "balanced_accuracy": 0.8756,
    "macro_f1": 0.8801,
    "num_clips": 288,
    "recall": {"no_stress": 0.95, "weak": 0.81, "strong": float("nan")},
  },
  "attention_faithfulness": {"temporal_auroc": 0.9081, "spatial_auroc": 0.5571, "temporal": 1.234},
}


def test_table_carries_the_summary_figures():
  table = readme_results.results_table(SUMMARY)
  assert "| 9 min 31 s (12 epochs, 504 steps) |" in table
  assert "| 0.882 / 0.876 / 0.880 |" in table
  assert "| 3 (288); checkpoint of step 462 chosen on 2 validation subjects |" in table
  assert "recall no_stress / weak / strong | 0.950 / 0.810 / n/a |" in table
  assert "spatial attention AUROC (cue region vs rest of the face) | 0.557 |" in table
  assert "temporal attention mass ratio, image stream | 1.23 |" in table
  assert "landmark stream" not in table  # absent figures are left out, not invented
  last = readme_results.results_table(
    {**SUMMARY, "selected_step": 504, "report_checkpoint": "last"}
  )
  assert "| 3 (288); checkpoint of step 504 (the last) |" in last


def test_main_rewrites_only_the_marked_block(tmp_path, monkeypatch):
  run = tmp_path / "run"
  run.mkdir()
  (run / "summary.json").write_text(json.dumps(SUMMARY))
  readme = tmp_path / "README.md"
  readme.write_text(f"intro\n{readme_results.START}\nold figures\n{readme_results.END}\ntail\n")
  readme_results.FLAGS(["readme_results", f"--workdir={run}", f"--markdown={readme}"])
  readme_results.main(["readme_results"])
  text = readme.read_text()
  assert "old figures" not in text and "0.882 / 0.876 / 0.880" in text
  assert text.startswith("intro\n") and text.endswith(f"{readme_results.END}\ntail\n")
  readme.write_text("no markers here\n")
  with pytest.raises(readme_results.ResultsError, match="no <!-- demo-results:start -->"):
    readme_results.main(["readme_results"])
