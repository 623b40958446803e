"""Localisation AUROC of the attention against known cue frames and regions, on fixed fakes."""

from __future__ import annotations

import numpy as np
import pytest

from stress_jax import faithfulness


def test_temporal_auroc_perfect_reversed_constant_and_undefined():
  cues = np.array([[1, 1, 0, 0]] * 4, bool)
  mask = np.ones((4, 4), bool)
  weights = np.array(
    [
      [0.4, 0.3, 0.2, 0.1],  # cue frames on top: perfect
      [0.1, 0.2, 0.3, 0.4],  # cue frames at the bottom: reversed
      [0.25, 0.25, 0.25, 0.25],  # no ranking at all
      [0.4, 0.25, 0.3, 0.2],  # one of the four (cue, other) pairs out of order
    ]
  )
  aurocs = faithfulness.temporal_aurocs(weights, cues, mask)
  np.testing.assert_allclose(aurocs, [1.0, 0.0, 0.5, 0.75])
  # A clip whose valid frames are all cues (or none) has no AUROC.
  none = faithfulness.temporal_aurocs(weights[:2], [[1, 1, 1, 1], [0, 0, 0, 0]], mask[:2])
  assert np.isnan(none).all()


def test_temporal_auroc_ignores_masked_frames():
  # Masked frames carry huge weights (and one is a "cue") but must not count.
  weights = np.array([[0.5, 0.9, 0.2, 0.9]])
  cues = np.array([[1, 1, 0, 0]], bool)
  mask = np.array([[1, 0, 1, 0]], bool)
  assert faithfulness.temporal_aurocs(weights, cues, mask)[0] == pytest.approx(1.0)
  # Unmasking frame 3 (a non-cue frame above the only valid cue) lowers it to 0.5.
  mask_all = np.array([[1, 0, 1, 1]], bool)
  assert faithfulness.temporal_aurocs(weights, cues, mask_all)[0] == pytest.approx(0.5)


def _region_top_left():
  region = np.zeros((1, 112, 112), np.float32)
  region[0, :56, :56] = 1.0  # exactly the top-left cell of a 2x2 map
  return region


def test_spatial_auroc_perfect_reversed_constant():
  region = _region_top_left()
  good = np.array([[0.9, 0.1], [0.1, 0.1]])
  maps = np.stack([good, 1 - good, np.full((2, 2), 0.3)])[None]  # (1, 3, 2, 2)
  mask = np.ones((1, 3), bool)
  for frame, expected in enumerate([1.0, 0.0, 0.5]):
    cues = np.zeros((1, 3), bool)
    cues[0, frame] = True
    assert faithfulness.spatial_aurocs(maps, region, cues, mask)[0] == pytest.approx(expected)
  # Per clip: the mean over its valid cue frames.
  all_cues = np.ones((1, 3), bool)
  assert faithfulness.spatial_aurocs(maps, region, all_cues, mask)[0] == pytest.approx(0.5)


def test_spatial_auroc_skips_masked_non_cue_and_switched_off_frames():
  region = _region_top_left()
  good = np.array([[0.9, 0.1], [0.1, 0.1]])
  maps = np.stack([good, 1 - good, np.zeros((2, 2))])[None]
  cues = np.array([[1, 1, 1]], bool)
  # Frame 1 (reversed) is masked, frame 2's map is all zero (attention off): only frame 0.
  mask = np.array([[1, 0, 1]], bool)
  assert faithfulness.spatial_aurocs(maps, region, cues, mask)[0] == pytest.approx(1.0)
  # Frame 1 valid but not a cue frame: still only frame 0.
  cues = np.array([[1, 0, 0]], bool)
  assert faithfulness.spatial_aurocs(maps, region, cues, np.ones((1, 3), bool))[0] == 1.0
  # An empty region or all-zero maps give no figure.
  empty = np.zeros_like(region)
  assert np.isnan(faithfulness.spatial_aurocs(maps, empty, cues, np.ones((1, 3), bool))[0])
  off = np.zeros_like(maps)
  assert np.isnan(faithfulness.spatial_aurocs(off, region, cues, np.ones((1, 3), bool))[0])


def test_spatial_auroc_pools_the_region_to_the_map_grid():
  # The region covers a 28x28 block: a quarter of the top-left 2x2-map cell. Pooled,
  # that cell is 0.25 inside / 0.75 outside, the others fully outside.
  region = np.zeros((1, 112, 112), np.float32)
  region[0, :28, :28] = 1.0
  cells = faithfulness.region_cells(region, (2, 2))
  np.testing.assert_allclose(cells[0], [[0.25, 0.0], [0.0, 0.0]])
  maps = np.array([[[[0.9, 0.1], [0.1, 0.1]]]])
  cues = np.ones((1, 1), bool)
  mask = np.ones((1, 1), bool)
  # Positive weight 0.25 at 0.9; negative weight 0.75 at 0.9 (a tie, counts half) and
  # 3 x 1.0 at 0.1: AUROC = 0.25 * (0.75 * 0.5 + 3) / (0.25 * 3.75) = 0.9.
  assert faithfulness.spatial_aurocs(maps, region, cues, mask)[0] == pytest.approx(0.9)


def test_attention_faithfulness_reports_auroc_alongside_ratios():
  region = _region_top_left()
  good = np.array([[0.9, 0.1], [0.1, 0.1]])
  outputs = {
    "frame_mask": np.ones((1, 4), bool),
    "cue_frames": np.array([[1, 1, 0, 0]], bool),
    "cue_region": region,
    "aux/temporal_attention": np.array([[0.4, 0.3, 0.2, 0.1]]),
    "aux/landmark_temporal_attention": np.array([[0.1, 0.2, 0.3, 0.4]]),
    "aux/spatial_attention": np.broadcast_to(good, (1, 4, 2, 2)),
  }
  figures = faithfulness.attention_faithfulness(outputs)
  assert figures["temporal_auroc"] == pytest.approx(1.0)
  assert figures["landmark_temporal_auroc"] == pytest.approx(0.0)
  assert figures["spatial_auroc"] == pytest.approx(1.0)
  # The mass ratios stay: 0.7 of the weight on half of the frames -> 1.4.
  assert figures["temporal"] == pytest.approx(1.4)
  assert set(figures) == {
    "temporal",
    "temporal_auroc",
    "landmark_temporal",
    "landmark_temporal_auroc",
    "spatial",
    "spatial_auroc",
  }


def test_each_frame_is_scored_against_its_own_region():
  # Per-frame uint8 regions (stress_faces 2): the cue sits top-left in frame 0 and
  # bottom-right in frame 1, and each frame's map looks exactly there.
  region = np.zeros((1, 2, 28, 28), np.uint8)
  region[0, 0, :12, :12] = 255  # 3 x 3 of the 7 x 7 map cells
  region[0, 1, 16:, 16:] = 255
  maps = np.zeros((1, 2, 7, 7))
  maps[0, 0, :3, :3] = 1.0
  maps[0, 1, 4:, 4:] = 1.0
  cues, mask = np.ones((1, 2), bool), np.ones((1, 2), bool)
  assert faithfulness.spatial_aurocs(maps, region, cues, mask)[0] == pytest.approx(1.0)
  # Scored against the clip's union instead, half of each frame's region is missed.
  union = region.max(axis=1)
  assert faithfulness.spatial_aurocs(maps, union, cues, mask)[0] < 0.9
  # Mass ratio: all the mass inside a region of 9 of the 49 cells.
  assert faithfulness.spatial_ratios(maps, region, cues, mask)[0] == pytest.approx(49 / 9)
  # A frame without a cue has an empty region and does not count.
  region[0, 1] = 0
  cues[0, 1] = False
  assert faithfulness.spatial_aurocs(maps, region, cues, mask)[0] == pytest.approx(1.0)
