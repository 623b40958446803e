"""`python -m stress_jax.crossval` end to end: real training of two folds on tiny data.

tests/test_crossval.py drives the fold logic with a stand-in for training; this runs
the command itself (train.train_and_evaluate per fold, the tiny config, a few steps)
and checks that the tables hold both folds' held-out figures and their mean.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, TINY_CONFIG, subprocess_env


def test_two_fold_crossval_trains_evaluates_and_tabulates(fake_data_dir, tmp_path):
  workdir = tmp_path / "cv"
  command = [
    sys.executable,
    "-m",
    "stress_jax.crossval",
    f"--config={TINY_CONFIG}",
    f"--workdir={workdir}",
    f"--config.data.data_dir={fake_data_dir}",
    "--config.protocol.num_folds=2",
    "--config.train.num_steps=3",
    "--config.train.eval_every_steps=3",
  ]
  result = subprocess.run(
    command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=480
  )
  assert result.returncode == 0, result.stderr[-4000:]

  summaries = [json.loads((workdir / f"fold_{k}" / "summary.json").read_text()) for k in (0, 1)]
  tested = [set(s["test_subjects"]) for s in summaries]
  assert tested[0] and tested[1] and not tested[0] & tested[1]
  for summary in summaries:
    assert summary["final_step"] == 3
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0 and summary["test"]["num_clips"] > 0

  table = json.loads((workdir / "crossval.json").read_text())
  full = table["variants"]["full"]
  assert table["num_folds"] == 2 and full["finished"] == 2
  assert [row["fold"] for row in full["folds"]] == [0, 1]
  accuracies = [s["test"]["accuracy"] for s in summaries]
  assert [row["accuracy"] for row in full["folds"]] == pytest.approx(accuracies)
  assert full["mean_std"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
  assert full["mean_std"]["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))

  lines = (workdir / "crossval.md").read_text().splitlines()
  for fold, summary in enumerate(summaries):
    row = next(line for line in lines if line.startswith(f"| {fold} | "))
    assert f"| {summary['test']['accuracy']:.3f} |" in row
    assert ", ".join(summary["test_subjects"]) in row
  mean_row = next(line for line in lines if "**mean ± std** (2/2 folds)" in line)
  assert f"{np.mean(accuracies):.3f} ± {np.std(accuracies, ddof=1):.3f}" in mean_row
