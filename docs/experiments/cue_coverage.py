"""How much of a clip its stress cues fill, class by class, on a stress_faces population.

  python docs/experiments/cue_coverage.py --population=seed=7 > coverage.md

Per stored label, over every clip of every subject: the clips, the mean fraction of a
clip's valid frames that lie inside a cue event (`cue_frames`), and the share of clips
where cues fill at least half the frames. Where that share is high, a clip's median
frame is itself a cue frame, so "departure from the clip's median" marks the frames
*without* a cue (docs/development/README.md, decisions 4 and 5). Labels carry the
simulator's label noise, so a few no-stress clips hold cues.
"""

from __future__ import annotations

import sys

import numpy as np
from absl import app, flags

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


def markdown(rows: list[dict], population: str) -> str:
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
  return "\n".join(lines)


def main(argv):
  del argv
  from stress_jax import input_pipeline
  from stress_jax.configs import demo

  config = demo.get_config()
  config.data.simulator = _POPULATION.value
  handle = input_pipeline.open_dataset(config.data)
  source = handle.source(handle.subjects)
  labels, cues, masks = [], [], []
  for i in range(len(source)):
    record = source[i]
    labels.append(int(handle.label_map[int(record["label"])]))
    cues.append(np.asarray(record["cue_frames"], bool))
    masks.append(np.asarray(record["frame_mask"], bool))
  rows = coverage_rows(labels, cues, masks, handle.label_names)
  print(markdown(rows, input_pipeline.dataset_name(config.data)))
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
