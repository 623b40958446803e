"""Is the image signal where the simulator puts the cues? Occlusion probes of a trained workdir.

  python docs/experiments/occlusion.py --workdir=runs/demo [--num_clips=32] [--output=o.json]

For test clips that carry cues (and a non-empty cue region) it measures, with the
checkpoint chosen on validation subjects:

  sensitivity map  each cell of the spatial-attention grid (h x w over the 112 crop)
                   greyed out in every frame, one at a time; the drop in the true class's
                   probability per cell. Its AUROC against the pooled cue region (as
                   faithfulness.spatial_aurocs scores the attention map) says whether the
                   model's evidence sits in the cue region; the attention map's AUROC on
                   the same clips is printed next to it, with the two maps' correlation.
  region test      the whole cue region (region >= 0.5 at crop resolution; stress_faces
                   2.0.0 stores one per frame, and each cue frame loses its own) greyed
                   out, against the same masks shifted elsewhere on the crop (the one
                   shift that overlaps the region least): mean drop of the true-class
                   probability and how often the prediction changes.

Greying sets pixels to 0.5 (mid grey), the value the pixel normalisation maps to 0.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

GREY = 128
SHIFTS = [(dy, dx) for dy in (-40, -24, 0, 24, 40) for dx in (-40, -24, 0, 24, 40) if dy or dx]


def _load(workdir):
  from stress_jax import evaluate

  config = evaluate.read_config(workdir)
  step, _ = evaluate.resolve_checkpoint(workdir, config, "best")
  trainer = evaluate._trainer(config, workdir)
  variables = evaluate.load_variables(workdir, step, trainer.model, trainer.handle.num_frames)
  return trainer, evaluate._state(trainer, variables, step)


def _predict(trainer, state, clips: list[dict]):
  """Probabilities and spatial maps for host clips (keys: inputs, landmarks, frame_mask, label)."""
  from stress_jax import input_pipeline

  batch = {
    "inputs": np.stack([c["inputs"] for c in clips]),
    "landmarks": np.stack([c["landmarks"] for c in clips]),
    "frame_mask": np.stack([c["frame_mask"] for c in clips]),
    "label": np.stack([c["label"] for c in clips]).astype(np.int32),
    "photometric": np.tile(np.array([0.0, 1.0], np.float32), (len(clips), 1)),
    "valid": np.ones(len(clips), bool),
  }
  probabilities, aux = trainer.p_eval_step(
    state, input_pipeline.to_global(batch, trainer.data_sharding)
  )
  return np.asarray(probabilities), {k: np.asarray(v) for k, v in aux.items()}


def pixel_regions(cue_region, num_frames: int) -> np.ndarray:
  """A clip's stored region -> (T, 112, 112) in [0, 1]: stress_faces 1.0.0's one (112, 112)
  map for every frame, or 2.0.0's per-frame (T, 28, 28) uint8 maps enlarged to the crop."""
  from stress_jax import faithfulness

  regions = faithfulness.frame_regions(np.asarray(cue_region)[None], num_frames)[0]
  scale = 112 // regions.shape[-1]
  return regions.repeat(scale, axis=-2).repeat(scale, axis=-1) if scale > 1 else regions


def _occluded(clip: dict, mask: np.ndarray) -> dict:
  """Grey where `mask` is set: (112, 112) on every frame, or (T, 112, 112) frame by frame."""
  inputs = clip["inputs"].copy()
  if mask.ndim == 2:
    inputs[:, mask] = GREY
  else:
    inputs[mask] = GREY
  return {**clip, "inputs": inputs}


def control_mask(region_mask: np.ndarray) -> np.ndarray:
  """The region moved by the one shift (the same for every frame) that overlaps the
  region (over all frames) least."""
  union = region_mask if region_mask.ndim == 2 else region_mask.any(0)
  best, best_overlap = None, None
  for dy, dx in SHIFTS:
    overlap = (np.roll(union, (dy, dx), axis=(0, 1)) & union).sum()
    if best is None or overlap < best_overlap:
      best, best_overlap = (dy, dx), overlap
  return np.roll(region_mask, best, axis=(-2, -1))


def probe(workdir, num_clips: int) -> dict:
  from stress_jax import faithfulness, input_pipeline

  trainer, state = _load(workdir)
  handle = trainer.handle
  rows = []
  for batch in input_pipeline.eval_batches(
    handle, trainer.split.test, 32, keep_metadata=True, process_index=0, process_count=1
  ):
    for i in np.flatnonzero(batch["valid"]):
      row = {k: batch[k][i] for k in batch}
      cues = row["cue_frames"] & row["frame_mask"]
      row["pixel_region"] = pixel_regions(row["cue_region"], len(cues)) * cues[:, None, None]
      if cues.any() and (row["pixel_region"] >= 0.5).any():
        rows.append(row)
    if len(rows) >= num_clips:
      break
  rows = rows[:num_clips]
  sensitivity, attention, region_drop, control_drop, flips = [], [], [], [], []
  for row in rows:
    label = int(row["label"])
    base_prob, aux = _predict(trainer, state, [row])
    h, w = aux["spatial_attention"].shape[-2:]
    cell_h, cell_w = 112 // h, 112 // w
    occluded = []
    for y in range(h):
      for x in range(w):
        mask = np.zeros((112, 112), bool)
        mask[y * cell_h : (y + 1) * cell_h, x * cell_w : (x + 1) * cell_w] = True
        occluded.append(_occluded(row, mask))
    region_mask = row["pixel_region"] >= 0.5  # (T, 112, 112): each cue frame's region
    occluded += [_occluded(row, region_mask), _occluded(row, control_mask(region_mask))]
    probs, _ = _predict(trainer, state, occluded)
    drops = base_prob[0, label] - probs[:, label]
    sensitivity.append(drops[: h * w].reshape(h, w))
    attention.append(aux["spatial_attention"][0])
    region_drop.append(drops[h * w])
    control_drop.append(drops[h * w + 1])
    predicted = base_prob[0].argmax()
    flips.append((probs[h * w].argmax() != predicted, probs[h * w + 1].argmax() != predicted))
  sensitivity = np.stack(sensitivity)  # (N, h, w)
  attention = np.stack(attention)  # (N, T, h, w)
  regions = np.stack([r["cue_region"] for r in rows])
  cues = np.stack([r["cue_frames"] & r["frame_mask"] for r in rows])
  masks = np.stack([r["frame_mask"] for r in rows])
  ones = np.ones((len(rows), 1), bool)
  # One sensitivity map per clip, scored against its cue frames' mean region.
  cue_count = np.maximum(cues.sum(1), 1)[:, None, None]
  mean_region = np.stack([r["pixel_region"].sum(0) for r in rows]) / cue_count
  sens_auroc = faithfulness.spatial_aurocs(sensitivity[:, None], mean_region[:, None], ones, ones)
  attn_auroc = faithfulness.spatial_aurocs(attention, regions, cues, masks)
  mean_attention = (
    np.where(cues[..., None, None], attention, 0).sum(1) / np.maximum(cues.sum(1), 1)[:, None, None]
  )
  correlation = [
    float(np.corrcoef(s.ravel(), a.ravel())[0, 1]) if s.std() > 0 and a.std() > 0 else np.nan
    for s, a in zip(sensitivity, mean_attention, strict=True)
  ]
  flips = np.asarray(flips)
  return {
    "workdir": str(workdir),
    "num_clips": len(rows),
    "sensitivity_auroc": float(np.nanmean(sens_auroc)),
    "attention_auroc_same_clips": float(np.nanmean(attn_auroc)),
    "sensitivity_attention_correlation": float(np.nanmean(correlation)),
    "region_occlusion_drop": float(np.mean(region_drop)),
    "control_occlusion_drop": float(np.mean(control_drop)),
    "region_occlusion_flips": float(flips[:, 0].mean()),
    "control_occlusion_flips": float(flips[:, 1].mean()),
    "region_drop_larger_share": float(np.mean(np.asarray(region_drop) > np.asarray(control_drop))),
    "attention_map_mean": float(mean_attention.mean()),
    "attention_map_within_frame_std": float(mean_attention.std(axis=(1, 2)).mean()),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--num_clips", type=int, default=32)
  parser.add_argument("--output", default="")
  args = parser.parse_args(argv)
  result = probe(args.workdir, args.num_clips)
  text = json.dumps(result, indent=2)
  print(text)
  if args.output:
    with open(args.output, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  sys.exit(main())
