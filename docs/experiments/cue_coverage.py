"""How much of a clip its stress cues fill, class by class, on a stress_faces population.

  python docs/experiments/cue_coverage.py --population=seed=7 > coverage.md

Per stored label, over every clip of every subject: the clips, the mean fraction of a
clip's valid frames that lie inside a cue event (`cue_frames`), and the share of clips
where cues fill at least half the frames. Where that share is high, a clip's median
frame is itself a cue frame, so "departure from the clip's median" marks the frames
*without* a cue (docs/development/README.md, decisions 4 and 5). Labels carry the
simulator's label noise, so a few no-stress clips hold cues.

Then, over the stressed clips, the mean per-clip ROC-AUC of each frame's departure from
its clip's mean or median (stress_jax/faithfulness.py's temporal score, with the
departure in place of attention weights) against its cue frames: for the image, the mean
absolute change of a 7x7 grid of cell colours against every cue's frames; for the
landmarks, the mean distance of the 68 points (in eye distances) against the frames of
the cues that move them. Below 0.5, the frames that depart most are the cue-free ones.
"""

from __future__ import annotations

import sys

import numpy as np
from absl import app, flags

REFERENCES = ("mean", "median")

_POPULATION = flags.DEFINE_string("population", "", "data.simulator overrides ('' = reported).")


def coverage_rows(labels, cue_frames, frame_masks, label_names) -> list[dict]:
  """Per label: clips, mean cue-frame fraction, share of clips at least half covered."""
  pairs = zip(cue_frames, frame_masks, strict=True)
  fractions = np.array([cues[mask].mean() if mask.any() else 0.0 for cues, mask in pairs])
  labels = np.asarray(labels)
  rows = []
  for index, name in enumerate(label_names):
    chosen = fractions[labels == index]
    if chosen.size:
      rows.append(
        {
          "label": name,
          "clips": int(chosen.size),
          "cue_fraction": float(chosen.mean()),
          "half_or_more": float((chosen >= 0.5).mean()),
        }
      )
  return rows


def departures(values: np.ndarray, mask: np.ndarray, reference: str) -> np.ndarray:
  """(T, ...) per-frame values -> (T,) mean absolute departure from the clip's mean or
  median over valid frames (0 on masked frames)."""
  valid = values[mask]
  centre = np.median(valid, 0) if reference == "median" else valid.mean(0)
  out = np.zeros(len(values))
  out[mask] = np.abs(valid - centre).reshape(len(valid), -1).mean(1)
  return out


def departure_rows(image_dep: dict, landmark_dep: dict, cues, visible, masks) -> list[dict]:
  """Per reference: the mean per-clip AUROC of the image departures against all cue frames
  and of the landmark departures against the point-moving cues' frames."""
  from stress_jax import faithfulness

  rows = []
  for reference in REFERENCES:
    image = faithfulness.temporal_aurocs(image_dep[reference], cues, masks)
    points = faithfulness.temporal_aurocs(landmark_dep[reference], visible, masks)
    rows.append(
      {
        "reference": reference,
        "image_auroc": float(np.nanmean(image)),
        "image_clips": int(np.isfinite(image).sum()),
        "landmark_auroc": float(np.nanmean(points)),
        "landmark_clips": int(np.isfinite(points).sum()),
      }
    )
  return rows


def markdown(rows: list[dict], population: str, departure: list[dict] = ()) -> str:
  lines = [
    f"Population: `{population}`.",
    "",
    "| label | clips | mean share of frames inside a cue | clips at least half inside cues |",
    "|---|---|---|---|",
  ]
  for row in rows:
    lines.append(
      f"| {row['label']} | {row['clips']} | {row['cue_fraction']:.2f} | {row['half_or_more']:.2f} |"
    )
  if departure:
    lines += [
      "",
      "| departure from the clip's | image vs cue frames (AUROC) | clips "
      "| landmarks vs point-moving cue frames (AUROC) | clips |",
      "|---|---|---|---|---|",
    ]
    for row in departure:
      lines.append(
        f"| {row['reference']} | {row['image_auroc']:.3f} | {row['image_clips']} "
        f"| {row['landmark_auroc']:.3f} | {row['landmark_clips']} |"
      )
  return "\n".join(lines)


def main(argv):
  del argv
  from stress_jax import input_pipeline
  from stress_jax.configs import demo

  config = demo.get_config()
  config.data.simulator = _POPULATION.value
  handle = input_pipeline.open_dataset(config.data)
  source = handle.source(handle.subjects)
  import simple_probe  # beside this script: the same 7x7 cell colours the probe reads

  from stress_jax import faithfulness

  labels, cues, masks, visible = [], [], [], []
  image_dep = {r: [] for r in REFERENCES}
  landmark_dep = {r: [] for r in REFERENCES}
  for i in range(len(source)):
    record = source[i]
    labels.append(int(handle.label_map[int(record["label"])]))
    mask = np.asarray(record["frame_mask"], bool)
    cues.append(np.asarray(record["cue_frames"], bool))
    masks.append(mask)
    events = np.asarray(record["cue_events"], np.float32)[None]
    visible.append(
      faithfulness.event_frames(events, len(mask), faithfulness.LANDMARK_VISIBLE_KINDS)[0]
    )
    # Every frame's cells (masked ones included; `departures` reads only the valid ones).
    cells = simple_probe.image_cells(np.stack(record["frames"]), np.ones(len(mask), bool))
    points = np.asarray(record["landmarks"], np.float32)
    eyes = np.linalg.norm(points[mask][:, 36:42].mean(1) - points[mask][:, 42:48].mean(1), axis=-1)
    points = points / max(float(np.median(eyes)), 1e-6)
    for reference in REFERENCES:
      image_dep[reference].append(departures(cells, mask, reference))
      landmark_dep[reference].append(departures(points, mask, reference))
  rows = coverage_rows(labels, cues, masks, handle.label_names)
  stressed = np.asarray(labels) > 0
  pick = lambda values: np.asarray(values)[stressed]  # noqa: E731
  departure = departure_rows(
    {r: pick(v) for r, v in image_dep.items()},
    {r: pick(v) for r, v in landmark_dep.items()},
    pick(cues),
    pick(visible),
    pick(masks),
  )
  print(markdown(rows, input_pipeline.dataset_name(config.data), departure))
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
