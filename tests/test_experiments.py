"""The analysis scripts under docs/experiments: their arithmetic on hand-made outputs."""

import functools
import importlib.util
import pathlib

import numpy as np
import pytest

from stress_jax.datasets.synthetic.cues import EVENT_KINDS

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "experiments"


@functools.cache  # a script defines its absl flags when loaded: once per process
def load(name):
  spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_cue_kinds_scores_single_event_clips_by_their_kind():
  cue_kinds = load("cue_kinds")
  kind = EVENT_KINDS.index
  unused = [-1, 0, 0, 0]
  events = np.array(
    [
      [[kind("blink_burst"), 0, 2, 1.0], unused, unused, unused],
      [[kind("flush"), 0, 2, 1.0], unused, unused, unused],
      [[kind("flush"), 0, 1, 1.0], [kind("sweat"), 1, 2, 1.0], unused, unused],
      [unused] * 4,  # no stress: in no group
    ],
    np.float32,
  )
  cue_frames = np.array([[1, 1, 0, 0]] * 3 + [[0, 0, 0, 0]], bool)
  region = np.zeros((4, 4, 28, 28), np.uint8)
  region[:, :2, :14, :14] = 255  # the top-left quarter of the 2x2 map, on the cue frames
  hit = np.zeros((2, 2))
  hit[0, 0] = 1.0
  maps = np.broadcast_to(hit, (4, 4, 2, 2)).copy()
  maps[1] = 1.0 - hit  # the flush clip's map looks everywhere but the region
  outputs = {
    "cue_events": events,
    "cue_frames": cue_frames,
    "cue_region": region,
    "frame_mask": np.ones((4, 4), bool),
    "aux/spatial_attention": maps,
    "aux/temporal_attention": np.array([[0.4, 0.4, 0.1, 0.1]] * 4),
  }
  rows = {row["kind"]: row for row in cue_kinds.kind_scores(outputs, EVENT_KINDS)}
  assert set(rows) == {"all", "blink_burst", "flush"}
  assert rows["all"]["clips"] == 3 and rows["flush"]["clips"] == 1
  assert rows["blink_burst"]["spatial_auroc"] == pytest.approx(1.0)
  assert rows["flush"]["spatial_auroc"] == pytest.approx(0.0)
  assert rows["all"]["spatial_auroc"] == pytest.approx(2 / 3, abs=1e-3)
  assert rows["blink_burst"]["temporal_auroc"] == pytest.approx(1.0)
  assert "landmark_temporal_auroc" not in rows["all"]


def test_cue_kinds_table_averages_a_model_over_its_seeds():
  cue_kinds = load("cue_kinds")
  lines = [
    '{"workdir": "runs/a/full/fold_0/seed_0", "kind": "flush", "clips": 3, "spatial_auroc": 0.5}',
    '{"workdir": "runs/a/full/fold_0/seed_1", "kind": "flush", "clips": 2, "spatial_auroc": 0.7}',
    '{"workdir": "runs/b/full/fold_0/seed_0", "kind": "flush", "clips": 4, "spatial_auroc": 0.9}',
  ]
  text = cue_kinds.table(lines)
  assert "| runs/a/full/fold_0 | flush | 2 | 5 | 0.600 | - | - |" in text
  assert "| runs/b/full/fold_0 | flush | 1 | 4 | 0.900 | - | - |" in text
