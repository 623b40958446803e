"""Does the attention look where the synthetic stress cues are?

The synthetic records say which frames carry a cue (`cue_frames`, (T,) bool) and where
on each frame's face the cues act (`cue_region`, (T, 28, 28) uint8, 255 = inside; records
before stress_faces 2.0 hold one (112, 112) float map per clip, used for every frame).
Each frame's map is scored against that frame's own region. Two kinds of score.

Localisation AUROC (0.5 = chance, 1.0 = perfect ranking, 0.0 = exactly reversed):

  temporal  per clip with both valid cue frames and valid non-cue frames, the ROC-AUC
            of the frame weights for telling cue frames from the others; averaged over
            those clips.
  spatial   per valid cue frame whose map is not all zero, the ROC-AUC of the map's
            cells for telling cells inside that frame's cue region from those outside, the
            region pooled to the map's grid (region_cells). The pooled region is soft, so each
            cell counts as "inside" with weight r and as "outside" with weight 1 - r
            (sklearn's sample_weight): for a binary region this is the plain ROC-AUC,
            and a faint cue (head jitter, 0.4) counts partly. Averaged over a clip's
            frames, then over clips.

AUROC only asks whether cue frames (cells) get more weight than the others, so unlike
the mass ratios below it does not depend on how many frames carry a cue.

Mass ratios (1.0 = no better than uniform; the ceiling is 1 / (cue share), e.g. 2.0 when
half of the frames carry a cue, which is why good attention can still score small):

  temporal  attention mass on the clip's valid cue frames, divided by the cue frames'
            share of the valid frames. Uniform weights score exactly 1; all mass on the
            cue frames scores 1 / share. Averaged over clips with at least one valid
            cue frame (clips whose every valid frame is a cue score 1 whatever the
            weights, and are counted like the others).
  spatial   on each valid cue frame, the attention map's mass-weighted mean of that
            frame's region, divided by the region's mean over the map: with region
            weights r in [0, 1] (the region averaged over each attention cell) and map
            a, (sum a*r / sum a) / mean r. A binary region makes this "mass inside /
            area share"; the soft one keeps faint cues (head jitter, weight 0.4) in.
            Averaged over the frames of a clip with a non-empty region, then over
            clips. Frames whose map is all zero (spatial attention switched off) do
            not count, so a model without spatial attention gets no spatial figure.

Figures for the image stream's temporal attention, the landmark stream's, and the
spatial map are reported as "temporal", "landmark_temporal" and "spatial" (ratios) and
"temporal_auroc", "landmark_temporal_auroc" and "spatial_auroc".

What each stream can see. In stress_faces 2.0 four cue kinds change pixels only
(datasets/synthetic/cues.py APPEARANCE_KINDS): the 68 points stay where they were, so
the landmark stream cannot tell those frames from rest frames, and a clip whose only
cue is a flush gives its frame weights nothing to find. "landmark_temporal_visible_auroc"
scores the landmark stream's frame weights against the frames where a cue that moves
the points is active (from the records' `cue_events`); frames of appearance-only cues
count as negatives, since to the points they are rest. Clips without such a cue have
no score. "landmark_temporal_auroc" keeps scoring against every cue frame.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from stress_jax.datasets.synthetic.cues import APPEARANCE_KINDS, EVENT_KINDS

# cue_events kind indices (the builder metadata's cue_kinds) that move the 68 points.
LANDMARK_VISIBLE_KINDS = tuple(
  i for i, kind in enumerate(EVENT_KINDS) if kind not in APPEARANCE_KINDS
)


def temporal_ratios(weights, cue_frames, frame_mask) -> np.ndarray:
  """Per-clip ratio (N,) of (N, T) inputs; NaN where a clip has no valid cue frame."""
  weights = np.asarray(weights, np.float64)
  valid = np.asarray(frame_mask, bool)
  cues = np.asarray(cue_frames, bool) & valid
  num_valid = valid.sum(-1)
  num_cues = cues.sum(-1)
  total = np.where(valid, weights, 0.0).sum(-1)
  on_cues = np.where(cues, weights, 0.0).sum(-1)
  usable = (num_cues > 0) & (total > 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = (on_cues / total) / (num_cues / num_valid)
  return np.where(usable, ratio, np.nan)


def event_frames(cue_events, num_frames: int, kinds) -> np.ndarray:
  """(N, T) bool: frames where an event whose kind index is in `kinds` is active.

  cue_events (N, E, 4) rows (kind, start, end, intensity), frames [start, end); kind -1
  marks an unused row.
  """
  events = np.asarray(cue_events, np.float64)
  frames = np.arange(num_frames)
  chosen = np.isin(events[..., 0], kinds)  # (N, E)
  inside = (frames >= events[..., 1:2]) & (frames < events[..., 2:3])  # (N, E, T)
  return (inside & chosen[..., None]).any(axis=1)


def frame_regions(cue_region, num_frames: int) -> np.ndarray:
  """(N, T, H, W) float regions in [0, 1] from per-frame uint8 ones or one float map per clip."""
  region = np.asarray(cue_region)
  scale = 255.0 if region.dtype == np.uint8 else 1.0
  region = region.astype(np.float32) / scale
  if region.ndim == 3:  # one map per clip: every frame gets it
    region = np.broadcast_to(region[:, None], (region.shape[0], num_frames, *region.shape[1:]))
  return region


def region_cells(cue_region, map_shape: tuple[int, int]) -> np.ndarray:
  """(..., H, W) region in [0, 1] -> (..., h, w): the mean of the region over each map cell."""
  region = np.asarray(cue_region, np.float32)
  h, w = map_shape
  big_h, big_w = region.shape[-2:]
  lead = region.shape[:-2]
  if big_h % h == 0 and big_w % w == 0:
    return region.reshape(*lead, h, big_h // h, w, big_w // w).mean(axis=(-3, -1))
  # Cells that do not tile the region exactly: box filtering is still an area average.
  flat = region.reshape(-1, big_h, big_w)
  cells = np.stack(
    [np.asarray(Image.fromarray(np.ascontiguousarray(r)).resize((w, h), Image.BOX)) for r in flat]
  )
  return cells.reshape(*lead, h, w)


def spatial_ratios(maps, cue_region, cue_frames, frame_mask) -> np.ndarray:
  """Per-clip ratio (N,) from maps (N, T, h, w); NaN where nothing can be measured."""
  maps = np.asarray(maps, np.float64)
  regions = frame_regions(cue_region, maps.shape[1])
  cells = region_cells(regions, maps.shape[-2:]).astype(np.float64)  # (N, T, h, w)
  share = cells.mean(axis=(-2, -1))  # (N, T)
  mass = maps.sum(axis=(-2, -1))  # (N, T)
  inside = (maps * cells).sum(axis=(-2, -1))  # (N, T)
  frames = np.asarray(cue_frames, bool) & np.asarray(frame_mask, bool) & (mass > 0) & (share > 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    per_frame = (inside / mass) / share
  count = frames.sum(-1)
  total = np.where(frames, per_frame, 0.0).sum(-1)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(count > 0, total / count, np.nan)


def _auroc(scores, positive_weight, negative_weight) -> float:
  """ROC-AUC of `scores` with each item positive with one weight and negative with another."""
  scores = np.asarray(scores, np.float64)
  return float(
    roc_auc_score(
      np.r_[np.ones(scores.size), np.zeros(scores.size)],
      np.r_[scores, scores],
      sample_weight=np.r_[positive_weight, negative_weight],
    )
  )


def temporal_aurocs(weights, cue_frames, frame_mask) -> np.ndarray:
  """Per-clip ROC-AUC (N,) of frame weights, cue vs non-cue valid frames; NaN if undefined."""
  weights = np.asarray(weights, np.float64)
  valid = np.asarray(frame_mask, bool)
  cues = np.asarray(cue_frames, bool) & valid
  out = np.full(weights.shape[0], np.nan)
  for i in range(weights.shape[0]):
    positive, negative = cues[i], valid[i] & ~cues[i]
    if positive.any() and negative.any():
      keep = valid[i]
      out[i] = _auroc(weights[i][keep], positive[keep], negative[keep])
  return out


def spatial_aurocs(maps, cue_region, cue_frames, frame_mask) -> np.ndarray:
  """Per-clip mean over valid cue frames of the map's ROC-AUC, the frame's region vs the rest.

  maps (N, T, h, w); NaN where no frame can be scored (no cue frame, a frame region that
  is empty or covers everything, or all-zero maps, i.e. spatial attention switched off).
  """
  maps = np.asarray(maps, np.float64)
  regions = frame_regions(cue_region, maps.shape[1])
  cells = region_cells(regions, maps.shape[-2:]).astype(np.float64)
  cells = cells.reshape(*maps.shape[:2], -1)  # (N, T, h*w)
  frames = (
    np.asarray(cue_frames, bool)
    & np.asarray(frame_mask, bool)
    & (np.abs(maps).sum(axis=(-2, -1)) > 0)
  )
  out = np.full(maps.shape[0], np.nan)
  for i in range(maps.shape[0]):
    scores = []
    for t in np.flatnonzero(frames[i]):
      inside, outside = cells[i, t], 1.0 - cells[i, t]
      if inside.sum() > 0 and outside.sum() > 0:
        scores.append(_auroc(maps[i, t].ravel(), inside, outside))
    if scores:
      out[i] = float(np.mean(scores))
  return out


def _mean(ratios: np.ndarray) -> float | None:
  finite = ratios[np.isfinite(ratios)]
  return float(finite.mean()) if finite.size else None


def attention_faithfulness(outputs: dict) -> dict[str, float]:
  """The averaged ratios and AUROCs from evaluation outputs; measurable figures only.

  outputs: "frame_mask", "cue_frames", "cue_region" and any of "aux/temporal_attention",
  "aux/landmark_temporal_attention", "aux/spatial_attention" (what `Trainer.predict` with
  keep_metadata returns). Without cue annotations the result is empty.
  """
  if "cue_frames" not in outputs:
    return {}
  mask, cues = outputs["frame_mask"], outputs["cue_frames"]
  figures = {}
  for name in ("temporal", "landmark_temporal"):
    key = f"aux/{name}_attention"
    if key in outputs:
      figures[name] = _mean(temporal_ratios(outputs[key], cues, mask))
      figures[f"{name}_auroc"] = _mean(temporal_aurocs(outputs[key], cues, mask))
  key = "aux/landmark_temporal_attention"
  if key in outputs and "cue_events" in outputs:
    weights = outputs[key]
    visible = event_frames(outputs["cue_events"], weights.shape[1], LANDMARK_VISIBLE_KINDS)
    figures["landmark_temporal_visible_auroc"] = _mean(temporal_aurocs(weights, visible, mask))
  if "aux/spatial_attention" in outputs and "cue_region" in outputs:
    maps, region = outputs["aux/spatial_attention"], outputs["cue_region"]
    figures["spatial"] = _mean(spatial_ratios(maps, region, cues, mask))
    figures["spatial_auroc"] = _mean(spatial_aurocs(maps, region, cues, mask))
  return {k: v for k, v in figures.items() if v is not None}
