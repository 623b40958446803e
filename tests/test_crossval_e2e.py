"""`python -m stress_jax.crossval` end to end: real training of two folds on tiny data.

tests/test_crossval.py drives the fold logic with a stand-in for training; this runs
the command's main() in this process (train.train_and_evaluate per fold, the tiny
config, a few steps) and checks that the tables hold both folds' held-out figures and their mean.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

import tests.fake_clips  # noqa: F401  (registers the fake_clips builder)
from tests.conftest import TINY_CONFIG, run_tool


def test_two_fold_crossval_trains_evaluates_and_tabulates(fake_data_dir, tmp_path):
  workdir = tmp_path / "cv"
  status, _, stderr = run_tool(
    "stress_jax.crossval",
    f"--config={TINY_CONFIG}",
    f"--workdir={workdir}",
    f"--config.data.data_dir={fake_data_dir}",
    "--config.protocol.num_folds=2",
    "--config.train.num_steps=3",
    "--config.train.eval_every_steps=3",
  )
  assert status == 0, stderr[-4000:]

  summaries = [json.loads((workdir / f"fold_{k}" / "summary.json").read_text()) for k in (0, 1)]
  tested = [set(s["test_subjects"]) for s in summaries]
  assert tested[0] and tested[1] and not tested[0] & tested[1]
  built = tfds.builder("fake_clips", data_dir=str(fake_data_dir))
  for summary in summaries:
    assert summary["final_step"] == 3
    # Each fold scored every clip of its held-out subjects, and no other.
    held_out = sum(built.info.splits[s].num_examples for s in summary["test_subjects"])
    assert summary["test"]["num_clips"] == held_out

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
