"""Does the attention look where the synthetic stress cues are? (1.0 = no better than uniform)

The synthetic records say which frames carry a cue (`cue_frames`, (T,) bool) and where
on the face the cues act (`cue_region`, (112, 112) in [0, 1]). Two ratios:

  temporal  attention mass on the clip's valid cue frames, divided by the cue frames'
            share of the valid frames. Uniform weights score exactly 1; all mass on the
            cue frames scores 1 / share. Averaged over clips with at least one valid
            cue frame (clips whose every valid frame is a cue score 1 whatever the
            weights, and are counted like the others).
  spatial   on each valid cue frame, the attention map's mass-weighted mean of the
            region, divided by the region's mean over the map: with region weights r
            in [0, 1] (the crop-resolution map averaged over each attention cell) and
            map a, (sum a*r / sum a) / mean r. A binary region makes this "mass inside
            / area share"; the soft one keeps faint cues (head jitter, weight 0.4) in.
            Averaged over the frames of a clip, then over clips with a non-empty
            region. Frames whose map is all zero (spatial attention switched off) do
            not count, so a model without spatial attention gets no spatial figure.

Figures for the image stream's temporal attention, the landmark stream's, and the
spatial map are reported as "temporal", "landmark_temporal" and "spatial".
"""

from __future__ import annotations

import numpy as np
from PIL import Image


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


def region_cells(cue_region, map_shape: tuple[int, int]) -> np.ndarray:
  """(N, H, W) region in [0, 1] -> (N, h, w): the mean of the region over each map cell."""
  region = np.asarray(cue_region, np.float32)
  h, w = map_shape
  big_h, big_w = region.shape[-2:]
  if big_h % h == 0 and big_w % w == 0:
    return region.reshape(-1, h, big_h // h, w, big_w // w).mean(axis=(2, 4))
  # Cells that do not tile the crop exactly: box filtering is still an area average.
  return np.stack(
    [np.asarray(Image.fromarray(np.ascontiguousarray(r)).resize((w, h), Image.BOX)) for r in region]
  )


def spatial_ratios(maps, cue_region, cue_frames, frame_mask) -> np.ndarray:
  """Per-clip ratio (N,) from maps (N, T, h, w); NaN where nothing can be measured."""
  maps = np.asarray(maps, np.float64)
  cells = region_cells(cue_region, maps.shape[-2:]).astype(np.float64)  # (N, h, w)
  share = cells.mean(axis=(-2, -1))  # (N,)
  mass = maps.sum(axis=(-2, -1))  # (N, T)
  inside = (maps * cells[:, None]).sum(axis=(-2, -1))  # (N, T)
  frames = np.asarray(cue_frames, bool) & np.asarray(frame_mask, bool) & (mass > 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    per_frame = (inside / mass) / share[:, None]
  count = frames.sum(-1)
  total = np.where(frames, per_frame, 0.0).sum(-1)
  usable = (count > 0) & (share > 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(usable, total / count, np.nan)


def _mean(ratios: np.ndarray) -> float | None:
  finite = ratios[np.isfinite(ratios)]
  return float(finite.mean()) if finite.size else None


def attention_faithfulness(outputs: dict) -> dict[str, float]:
  """The averaged ratios from evaluation outputs; measurable figures only.

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
  if "aux/spatial_attention" in outputs and "cue_region" in outputs:
    figures["spatial"] = _mean(
      spatial_ratios(outputs["aux/spatial_attention"], outputs["cue_region"], cues, mask)
    )
  return {k: v for k, v in figures.items() if v is not None}
