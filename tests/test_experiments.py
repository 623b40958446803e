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


def test_simple_probe_reads_departures_from_the_clips_median_frame():
  probe = load("simple_probe")
  frames = np.full((5, 14, 14, 3), 100, np.uint8)
  frames[1, :2, :2, 0] = 200  # one frame reddens the top-left cell (2x2 pixels of 14x14)
  frames[4] = 0  # a masked frame: ignored
  mask = np.array([True, True, True, True, False])
  features = probe.image_features(frames, mask).reshape(4, 7, 7, 3)
  # |departure| max, |departure| mean, largest rise, largest fall; in [0, 1] pixel units.
  np.testing.assert_allclose(features[0, 0, 0, 0], 100 / 255, rtol=1e-5)
  np.testing.assert_allclose(features[1, 0, 0, 0], 100 / 255 / 4, rtol=1e-5)
  np.testing.assert_allclose(features[2, 0, 0, 0], 100 / 255, rtol=1e-5)
  assert features[3, 0, 0, 0] == 0
  features[:, 0, 0, 0] = 0
  assert not features.any()  # no other cell or channel moved
  points = np.zeros((3, 68, 2), np.float32)
  points[:, 36:42, 0], points[:, 42:48, 0] = 0.0, 0.5  # eyes 0.5 apart
  points[2, 10, 1] = 0.1  # one point moves on one frame
  landmarks = probe.landmark_features(points, np.ones(3, bool)).reshape(2, 68, 2)
  np.testing.assert_allclose(landmarks[0, 10, 1], 0.2, rtol=1e-5)  # 0.1 over 0.5
  landmarks[:, 10, 1] = 0
  assert not landmarks.any()


def test_simple_probe_chooses_its_regularisation_on_validation():
  probe = load("simple_probe")
  rng = np.random.default_rng(0)

  def data(n):
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, 5))
    x[:, 0] += 6 * y  # one informative feature
    return x, y

  scores = probe.fit_and_score(data(90), data(60), data(60))
  assert scores["C"] in probe.C_GRID
  assert scores["accuracy"] > 0.9
  rows = [
    {"features": name, "accuracy": acc, "macro_f1": acc}
    for name in probe.SETS
    for acc in (0.6, 0.8)
  ]
  assert "| image | 2 | 0.700 ± 0.141 | 0.700 |" in probe.table(rows)


def test_cue_coverage_counts_the_share_of_valid_frames_inside_cues():
  coverage = load("cue_coverage")
  cues = np.array([[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 1]], bool)
  masks = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]], bool)
  rows = coverage.coverage_rows([0, 1, 2, 2], cues, masks, ("none", "weak", "strong"))
  assert [r["clips"] for r in rows] == [1, 1, 2]
  assert rows[0]["cue_fraction"] == 0 and rows[1]["cue_fraction"] == 0.5
  # 3 of 4 frames, and 1 of the 2 valid frames (the masked cue frame does not count).
  np.testing.assert_allclose(rows[2]["cue_fraction"], (0.75 + 0.5) / 2)
  assert rows[1]["half_or_more"] == 1.0 and rows[2]["half_or_more"] == 1.0
  assert "| strong | 2 | 0.62 | 1.00 |" in coverage.markdown(rows, "p")


def test_simple_probe_takes_the_first_rest_clips_as_calibration():
  probe = load("simple_probe")
  videos = ["s01_session2", "s01_session0", "s01_session0", "s01_session1", "s01_session0"]
  starts = [0, 40, 0, 0, 20]
  np.testing.assert_array_equal(probe.rest_clips(videos, starts, 2), [2, 4])
  # A given reference replaces the clip's own median.
  frames = np.full((3, 14, 14, 3), 100, np.uint8)
  rest = np.full((7, 7, 3), 50 / 255, np.float32)
  features = probe.image_features(frames, np.ones(3, bool), rest).reshape(4, 7, 7, 3)
  np.testing.assert_allclose(features[2], 50 / 255, rtol=1e-5)  # every cell rose by 50
  np.testing.assert_allclose(probe.image_features(frames, np.ones(3, bool)), 0)


def test_departures_rank_the_odd_frames_out_whatever_carries_the_cue():
  coverage = load("cue_coverage")
  # Three cue frames alike, one rest frame apart: the rest frame departs most.
  values = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [9.0, 9.0]])
  mask = np.array([True, True, True, True, False])
  median = coverage.departures(values, mask, "median")
  np.testing.assert_allclose(median, [0, 0, 0, 1, 0])
  np.testing.assert_allclose(coverage.departures(values, mask, "mean"), [0.25] * 3 + [0.75, 0])
  cues = np.array([[1, 1, 1, 0, 0]], bool)
  dep = {r: coverage.departures(values, mask, r)[None] for r in coverage.REFERENCES}
  rows = coverage.departure_rows(dep, dep, cues, cues, mask[None])
  assert [r["image_auroc"] for r in rows] == [0.0, 0.0]  # the cue frames rank last
  assert "| median | 0.000 | 1 | 0.000 | 1 |" in coverage.markdown([], "p", rows)


def test_occlusion_greys_each_frames_own_region_and_moves_the_control_off_it():
  occlusion = load("occlusion")
  region = np.zeros((3, 28, 28), np.uint8)
  region[1, :7, :7] = 255  # frame 1: the top-left 28x28 pixels of the crop
  pixels = occlusion.pixel_regions(region, 3)
  assert pixels.shape == (3, 112, 112)
  assert pixels[1, :28, :28].all() and pixels.sum() == 28 * 28
  old = np.zeros((112, 112), np.float32)  # stress_faces 1.0.0: one map for every frame
  old[50:60, 50:60] = 1.0
  assert occlusion.pixel_regions(old, 3).sum() == 3 * 100
  clip = {"inputs": np.zeros((3, 112, 112, 3), np.uint8)}
  greyed = occlusion._occluded(clip, pixels >= 0.5)["inputs"]
  assert (greyed[1, :28, :28] == occlusion.GREY).all() and greyed.sum() == 28 * 28 * 3 * 128
  control = occlusion.control_mask(pixels >= 0.5)
  assert control.sum() == 28 * 28 and not (control & (pixels >= 0.5)).any()
  assert control[1].any() and not control[0].any()  # the same frame, elsewhere


def test_checkpoint_choice_compares_best_and_latest_per_configuration_over_seeds():
  choice = load("checkpoint_choice")
  assert choice.configuration("runs/dev/demo/full/fold_0/seed_2/") == "runs/dev/demo/full"
  accuracies = {
    ("a", 0): (0.5, 0.6),
    ("a", 1): (0.7, 0.6),
    ("a", 2): (0.6, 0.6),
    ("b", 0): (0.4, 0.5),
    ("b", 1): (0.4, 0.3),
  }
  rows = [
    {"workdir": f"runs/{c}/full/fold_0/seed_{s}", "checkpoint": name, "test_accuracy": value}
    for (c, s), pair in accuracies.items()
    for name, value in zip(("best", "latest"), pair, strict=True)
  ]
  rows.append({"workdir": "runs/b/full/fold_0/seed_2", "checkpoint": "best", "test_accuracy": 0.9})
  table = choice.summarise(rows)
  # The seed without a latest row is left out of both choices, so they stay paired.
  assert table["runs/b/full"]["best"] == pytest.approx((0.4, 0.0, 2))
  assert table["runs/a/full"]["best"] == pytest.approx((0.6, 0.1, 3))
  assert table["runs/a/full"]["latest"] == pytest.approx((0.6, 0.0, 3))
  assert table["runs/a/full"]["latest_wins"] == 1
  best, latest = table["all"]["best"], table["all"]["latest"]
  assert best == pytest.approx((0.52, 0.05, 5))
  assert latest[0] == pytest.approx(0.52)
  assert latest[1] == pytest.approx(np.std([0.5, 0.3], ddof=1) / 2)
  assert table["all"]["paired"] == pytest.approx(0.0)
  assert table["all"]["latest_wins"] == 2
  assert "| all (std: mean over configurations) | 5 | 0.520, 0.050 |" in choice.markdown(table)
