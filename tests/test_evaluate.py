"""Evaluation: metrics by hand, video-level aggregation, faithfulness arithmetic, the CLI."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from stress_jax import evaluate, faithfulness, metrics, report
from stress_jax.datasets.synthetic import cues
from tests.conftest import in_process_error
from tests.trained_model import trained_workdir  # noqa: F401  (fixture)

LABELS = ("low", "mid", "high")


class FixedLogitModel:
  """Stands in for StressNet: `apply` returns the logits it was built with, per clip index."""

  def __init__(self, probabilities):
    self.logits = np.log(np.asarray(probabilities, np.float64))

  def apply(self, variables, clip_index, *args, **kwargs):
    del variables, args, kwargs
    return self.logits[np.asarray(clip_index)], {}


# Six clips: (label, video, subject, probabilities). Predictions 0,1,1,1,0,2.
CLIPS = [
  (0, "v0", "s1", [0.7, 0.2, 0.1]),
  (0, "v0", "s1", [0.3, 0.6, 0.1]),
  (1, "v1", "s1", [0.2, 0.5, 0.3]),
  (1, "v1", "s2", [0.1, 0.8, 0.1]),
  (2, "v2", "s2", [0.5, 0.1, 0.4]),
  (2, "v3", "s2", [0.1, 0.2, 0.7]),
]


def fixed_outputs():
  model = FixedLogitModel([c[3] for c in CLIPS])
  logits, _ = model.apply({}, np.arange(len(CLIPS)))
  return {
    "probabilities": np.asarray(jax.nn.softmax(logits, -1)),
    "label": np.array([c[0] for c in CLIPS]),
    "video": np.array([c[1] for c in CLIPS]),
    "subject": np.array([c[2] for c in CLIPS]),
  }


def test_clip_metrics_match_hand_computation():
  result = evaluate.clip_and_video_metrics(fixed_outputs(), LABELS)
  clip = result["clip"]
  assert clip["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
  assert clip["accuracy"] == pytest.approx(4 / 6)
  assert clip["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
  assert clip["precision"] == pytest.approx({"low": 0.5, "mid": 2 / 3, "high": 1.0})
  assert clip["recall"] == pytest.approx({"low": 0.5, "mid": 1.0, "high": 0.5})
  assert clip["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
  # Rank-sum AUC: class 0 positives 0.7, 0.3 against 0.2, 0.1, 0.5, 0.1 win 7 of 8 pairs.
  assert clip["roc_auc"] == pytest.approx({"low": 7 / 8, "mid": 7 / 8, "high": 1.0})
  assert clip["num_clips"] == 6 and clip["num_subjects"] == 2
  assert result["per_subject"] == {
    "s1": {"accuracy": pytest.approx(2 / 3), "num_clips": 3},
    "s2": {"accuracy": pytest.approx(2 / 3), "num_clips": 3},
  }


def test_video_level_averages_clip_probabilities():
  result = evaluate.clip_and_video_metrics(fixed_outputs(), LABELS)
  video = result["video"]
  # v0 -> mean [0.5, 0.4, 0.1] right, v1 right, v2 predicts low for high, v3 right.
  assert result["videos"] == ["v0", "v1", "v2", "v3"]
  assert video["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
  assert video["accuracy"] == pytest.approx(3 / 4)
  assert video["num_videos"] == 4 and video["num_subjects"] == 2

  labels, probabilities, names = metrics.video_level(
    [1, 2, 0], [[0.2, 0.3, 0.5], [0.4, 0.4, 0.2], [1, 0, 0]], ["x", "x", "y"]
  )
  assert names.tolist() == ["x", "y"]
  assert labels.tolist() == [1, 0]  # a tie between clip labels goes to the lower class
  np.testing.assert_allclose(probabilities, [[0.3, 0.35, 0.35], [1, 0, 0]])


def test_temporal_faithfulness_by_hand():
  weights = [[0.4, 0.1, 0.1, 0.4], [0.5, 0.5, 0.0, 0.0], [0.25] * 4]
  mask = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]]
  # Clip 1's cue on its masked frame 3 does not count; clip 2 has no cue.
  cues = [[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0]]
  ratios = faithfulness.temporal_ratios(weights, cues, mask)
  np.testing.assert_allclose(ratios[:2], [0.4 / 0.25, 0.5 / 0.5])
  assert np.isnan(ratios[2])
  uniform = faithfulness.temporal_ratios(np.full((1, 4), 0.25), [[1, 1, 0, 0]], np.ones((1, 4)))
  np.testing.assert_allclose(uniform, [1.0])


def test_landmark_stream_is_scored_on_the_cues_that_move_the_points():
  kind = cues.EVENT_KINDS.index
  unused = [-1, 0, 0, 0]
  events = np.array(
    [
      [[kind("blink_burst"), 1, 3, 1.0], [kind("flush"), 3, 5, 1.0], unused, unused],
      [[kind("sweat"), 0, 2, 1.0], unused, unused, unused],  # nothing the points carry
    ],
    np.float32,
  )
  frames = faithfulness.event_frames(events, 6, faithfulness.LANDMARK_VISIBLE_KINDS)
  assert frames.tolist() == [[0, 1, 1, 0, 0, 0], [0] * 6]
  outputs = {
    "aux/landmark_temporal_attention": np.array([[0.1, 0.3, 0.3, 0.1, 0.1, 0.1], [1 / 6] * 6]),
    "cue_frames": np.array([[0, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]], bool),
    "cue_events": events,
    "frame_mask": np.ones((2, 6), bool),
  }
  figures = faithfulness.attention_faithfulness(outputs)
  # All cues: clip 0 has 4 wins and 4 ties of 8 pairs (0.75), clip 1 is flat (0.5).
  assert figures["landmark_temporal_auroc"] == pytest.approx(0.625)
  # The blink's frames rank first, the flush counts as rest; clip 1 has nothing to score.
  assert figures["landmark_temporal_visible_auroc"] == pytest.approx(1.0)


def spatial_example():
  maps = np.zeros((2, 2, 2, 2))
  maps[0, 0] = [[0.6, 0.2], [0.1, 0.1]]  # frame 1 of clip 0 stays all zero: not counted
  maps[1, 0] = 0.25
  maps[1, 1] = [[1.0, 0.0], [1.0, 0.0]]
  region = np.zeros((2, 4, 4), np.float32)
  region[0, :2, :2] = 1.0  # the top-left cell, a quarter of the map
  region[1, :, :2] = 0.5  # a soft left half: cells [[.5, 0], [.5, 0]], mean 0.25
  cues = np.ones((2, 2), bool)
  mask = np.ones((2, 2), bool)
  return maps, region, cues, mask


def test_spatial_faithfulness_by_hand():
  maps, region, cues, mask = spatial_example()
  ratios = faithfulness.spatial_ratios(maps, region, cues, mask)
  # Clip 0: 0.6 of the mass inside / 0.25 area. Clip 1: frames 0.25/0.25 and 0.5/0.25.
  np.testing.assert_allclose(ratios, [2.4, 1.5])
  outputs = {
    "aux/spatial_attention": maps,
    "aux/temporal_attention": np.array([[0.8, 0.2], [0.5, 0.5]]),
    "cue_region": region,
    "cue_frames": np.array([[True, False], [True, True]]),
    "frame_mask": mask,
  }
  figures = faithfulness.attention_faithfulness(outputs)
  # Clip 1 (all frames cues) scores 1 temporally; clip 0: 0.8 / 0.5.
  # AUROC: clip 1 has no non-cue frame, clip 0 ranks its cue first (1.0). Spatially,
  # clip 0's one scored frame is perfect; clip 1 is constant (0.5) then a map equal to
  # the soft region, whose inside halves tie their outside halves: (0.5 + 2) / 3.
  assert figures == pytest.approx(
    {
      "temporal": (1.6 + 1.0) / 2,
      "spatial": (2.4 + 1.5) / 2,
      "temporal_auroc": 1.0,
      "spatial_auroc": (1.0 + (0.5 + 2.5 / 3) / 2) / 2,
    }
  )
  assert faithfulness.attention_faithfulness({"frame_mask": mask}) == {}


def _strict_json(path):
  def refuse(value):
    raise AssertionError(f"{path} holds {value}, which is not JSON")

  return json.loads(path.read_text(), parse_constant=refuse)


def test_evaluate_workdir_writes_metrics_and_pictures(trained_workdir):  # noqa: F811
  result = evaluate.evaluate(trained_workdir, split="test", num_pictures=1)
  summary = json.loads((trained_workdir / "summary.json").read_text())
  # Same checkpoint, same subjects: evaluate reproduces the end-of-training test metrics.
  assert result["step"] == summary["selected_step"]
  assert result["subjects"] == summary["test_subjects"]
  assert result["clip"]["confusion_matrix"] == summary["test"]["confusion_matrix"]
  assert result["clip"]["accuracy"] == pytest.approx(summary["test"]["accuracy"])
  # train.final_evaluation reports the same faithfulness (fake data: cue frames, no region).
  assert set(summary["attention_faithfulness"]) == {
    "temporal",
    "landmark_temporal",
    "temporal_auroc",
    "landmark_temporal_auroc",
  }
  assert result["attention_faithfulness"] == pytest.approx(summary["attention_faithfulness"])
  printed = report.format_summary(summary, trained_workdir)
  assert "attention localisation AUROC" in printed and "attention mass ratio" in printed
  assert "attention localisation AUROC" in report.format_evaluation(result)

  out = trained_workdir / "eval" / "test_latest"
  written = _strict_json(out / "metrics.json")
  for level, count in (("clip", "num_clips"), ("video", "num_videos")):
    block = written[level]
    for key in (
      "accuracy",
      "balanced_accuracy",
      "macro_f1",
      "precision",
      "recall",
      "roc_auc",
      "confusion_matrix",
      "num_subjects",
      count,
    ):
      assert key in block, (level, key)
    assert set(block["precision"]) == set(LABELS)
  assert written["clip"]["num_clips"] == 18 and written["clip"]["num_subjects"] == 2
  assert written["video"]["num_videos"] == 6  # 2 subjects x 3 videos
  pictures = sorted((out / "attention").glob("*.png"))
  assert [p.name.split("_")[0] for p in pictures] == sorted(LABELS)  # one clip per class
  for path in [
    out / "confusion_matrix.png",
    trained_workdir / "eval" / "training_curves.png",
    *pictures,
  ]:
    with Image.open(path) as image:
      assert image.width > 300 and image.height > 200, path
  assert "videos" in report.format_evaluation(result)


def test_missing_or_empty_workdir_is_one_line(tmp_path):
  with pytest.raises(evaluate.EvaluationError, match="does not exist"):
    evaluate.evaluate(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(evaluate.EvaluationError, match="config.json is missing"):
    evaluate.evaluate(tmp_path / "empty")
  line = in_process_error("stress_jax.evaluate", f"--workdir={tmp_path / 'nowhere'}")
  assert line == f"evaluate: error: workdir {tmp_path / 'nowhere'} does not exist"


def test_incompatible_checkpoint_names_the_parameter(trained_workdir, tmp_path):  # noqa: F811
  config = json.loads((trained_workdir / "config.json").read_text())
  config["model"]["head_width"] = 32
  other = tmp_path / "other"
  other.mkdir()
  (other / "config.json").write_text(json.dumps(config))
  shutil.copytree(trained_workdir / "checkpoints", other / "checkpoints")
  with pytest.raises(evaluate.EvaluationError) as error:
    evaluate.evaluate(other)
  message = str(error.value)
  assert "\n" not in message
  assert "does not fit the config's model" in message and "head" in message
  assert "(32,)" in message or ", 32)" in message

  with pytest.raises(evaluate.EvaluationError, match=r"no checkpoint of step 999 .*saved steps"):
    evaluate.evaluate(trained_workdir, checkpoint="999")
  with pytest.raises(evaluate.EvaluationError, match="best, latest or a step number"):
    evaluate.evaluate(trained_workdir, checkpoint="newest")


def test_a_finished_run_reports_its_other_checkpoint_without_training_again(
  trained_workdir,  # noqa: F811
  fake_data_dir,
  tmp_path,
):
  from stress_jax import checkpointing, metric_writer, provenance
  from tests.conftest import train_in_process
  from tests.trained_model import TINY_RUN_STEPS

  workdir = tmp_path / "run"
  shutil.copytree(trained_workdir, workdir)
  # The demo config (and so the tiny one) reports the last checkpoint.
  trained = json.loads((workdir / "summary.json").read_text())
  assert trained["report_checkpoint"] == "last"
  assert trained["selected_step"] == trained["final_step"] == TINY_RUN_STEPS
  fields = {
    "train.num_steps": TINY_RUN_STEPS,
    "train.eval_every_steps": 2,
    "train.checkpoint_every_steps": 1000,
    "optim.name": "sgd",
    "optim.learning_rate": 0.05,
  }
  train_rows = [r for r in metric_writer.read_metrics(workdir) if "train/loss" in r]

  best = train_in_process(workdir, fake_data_dir, **fields, **{"train.report_checkpoint": "best"})
  config = evaluate.read_config(workdir)
  manager = checkpointing.CheckpointManager(workdir, config.train, read_only=True)
  assert best["report_checkpoint"] == "best"
  assert best["selected_step"] == manager.best_step()
  assert best["final_step"] == TINY_RUN_STEPS
  assert best["wall_seconds"] == trained["wall_seconds"]  # the training's, not this rerun's
  rows = metric_writer.read_metrics(workdir)
  assert [r for r in rows if "train/loss" in r] == train_rows  # no step trained again
  assert len([r for r in rows if "test/accuracy" in r]) == 1  # the old test row is gone
  assert provenance.read(workdir)["config"]["train.report_checkpoint"] == "best"
  assert evaluate.resolve_checkpoint(workdir, config) == (manager.best_step(), "best")
  trainer, state, _, _ = evaluate.restore(workdir, config)
  out = trainer.predict(state, trainer.split.test)
  accuracy = float((out["probabilities"].argmax(-1) == out["label"]).mean())
  assert best["test"]["accuracy"] == pytest.approx(accuracy)

  # And back to the last checkpoint, as the run first reported it.
  last = train_in_process(workdir, fake_data_dir, **fields)
  assert last["selected_step"] == TINY_RUN_STEPS
  assert last["test"]["accuracy"] == pytest.approx(trained["test"]["accuracy"])
  assert evaluate.resolve_checkpoint(workdir, evaluate.read_config(workdir))[1] == "latest"

  # A field that changes what is trained is still refused.
  with pytest.raises(provenance.ProvenanceError, match="optim.learning_rate"):
    train_in_process(workdir, fake_data_dir, **{**fields, "optim.learning_rate": 0.1})
