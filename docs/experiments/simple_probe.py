"""How much of the label a simple model reads from a clip's frame-to-frame change.

  python docs/experiments/simple_probe.py --simulator=seed=7 --fold=0 > probe.jsonl
  python docs/experiments/simple_probe.py --simulator=seed=7 --reference=rest
  python docs/experiments/simple_probe.py --fold=0,1,2,3 --markdown   # markdown table

A reference point for StressNet, not a rival: every stress cue of the simulator is an
event inside the clip, so a frame's departure from the clip's own median frame (and each
landmark's from its median position) is where the evidence lies, whoever the subject is.
This reads the demo config's data, fold and split, and per clip computes

  image      per cell of a 7x7 grid and colour channel, over the frames: the largest and
             the mean absolute departure from the median frame, the largest rise and the
             largest fall (588 numbers)
  landmarks  per point and axis, in units of the clip's median eye distance: the largest
             absolute departure from the median position and its std over the frames
             (272 numbers)

With `--reference=rest` the departures are taken instead from each subject's rest
recording: the median of the first 3 clips of its no-stress session, as a deployed
system could record before use; those calibration clips are then scored nowhere.
`--reference=clip_without_rest` keeps the clip's own median but leaves out the same
clips, so the two compare on the same clips.

The features go to a multinomial logistic regression (scikit-learn, standardised inputs)
fitted on the training subjects, choosing its inverse regularisation C on the validation subjects by
macro-F1 as training chooses its checkpoints; it prints one JSON line per feature set
(image, landmarks, both) with the held-out subjects' accuracy and macro-F1.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from absl import app, flags

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
SETS = ("image", "landmarks", "both")
REFERENCES = ("clip", "clip_without_rest", "rest")
REST_SESSION = "_session0"  # the simulator's recording without stress
REST_CLIPS = 3
GRID = 7

_SIMULATOR = flags.DEFINE_string("simulator", "", "data.simulator overrides ('' = reported).")
_FOLDS = flags.DEFINE_list("fold", ["0"], "Folds of the demo protocol to score.")
_REFERENCE = flags.DEFINE_enum(
  "reference", "clip", REFERENCES, "What departures are taken from (see the docstring)."
)
_MARKDOWN = flags.DEFINE_bool("markdown", False, "Print a markdown table instead of JSON lines.")


def image_cells(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """(T, H, W, 3) uint8 -> (valid T, 7, 7, 3): each cell's mean colour in [0, 1]."""
  x = frames[mask].astype(np.float32) / 255.0
  t, h, w, c = x.shape
  return x.reshape(t, GRID, h // GRID, GRID, w // GRID, c).mean((2, 4))


def image_features(frames: np.ndarray, mask: np.ndarray, reference=None) -> np.ndarray:
  """(T, H, W, 3) uint8 -> (588,): departures per cell from the clip's median frame, or
  from `reference` (7, 7, 3) cells, say the median of a rest recording."""
  cells = image_cells(frames, mask)
  d = cells - (np.median(cells, 0) if reference is None else reference)
  parts = (np.abs(d).max(0), np.abs(d).mean(0), d.max(0), -d.min(0))
  return np.concatenate([p.ravel() for p in parts])


def landmark_features(points: np.ndarray, mask: np.ndarray, reference=None) -> np.ndarray:
  """(T, 68, 2) -> (272,): per point and axis, the largest departure from the clip's
  median position (or `reference`, (68, 2)) and the std over the frames."""
  p = points[mask].astype(np.float32)
  median = np.median(p, 0) if reference is None else reference
  eyes = np.linalg.norm(median[36:42].mean(0) - median[42:48].mean(0)) or 1.0
  d = (p - median) / eyes
  return np.concatenate([np.abs(d).max(0).ravel(), d.std(0).ravel()])


def rest_clips(videos, starts, count: int = REST_CLIPS) -> np.ndarray:
  """Indices of one subject's calibration clips: the first `count` of its rest recording
  (the simulator's session 0, recorded without stress)."""
  videos, starts = np.asarray(videos), np.asarray(starts)
  rest = np.flatnonzero(np.char.endswith(videos.astype(str), REST_SESSION))
  return rest[np.argsort(starts[rest], kind="stable")[:count]]


def clip_table(handle, subjects, reference: str = "clip") -> tuple[dict, np.ndarray]:
  """Features and labels of the subjects' clips. reference "rest": departures from the
  median of each subject's calibration clips (rest_clips), which are then left out;
  "clip_without_rest": the clip's own median, on the same clips as "rest"."""
  from stress_jax import input_pipeline

  transform = input_pipeline.ClipTransform(handle, keep_metadata=True)
  image, points, labels = [], [], []
  for subject in subjects:
    source = handle.source([subject])
    clips = [transform(source[i]) for i in range(len(source))]
    keep = np.ones(len(clips), bool)
    image_ref = points_ref = None
    if reference != "clip":
      calibration = rest_clips([c["video"] for c in clips], [c["start_frame"] for c in clips])
      keep[calibration] = False
      if reference == "rest":
        chosen = [clips[i] for i in calibration]
        image_ref = np.median(
          np.concatenate([image_cells(c["inputs"], c["frame_mask"]) for c in chosen]), 0
        )
        points_ref = np.median(np.concatenate([c["landmarks"][c["frame_mask"]] for c in chosen]), 0)
    for clip in (c for c, k in zip(clips, keep, strict=True) if k):
      mask = clip["frame_mask"]
      image.append(image_features(clip["inputs"], mask, image_ref))
      points.append(landmark_features(clip["landmarks"], mask, points_ref))
      labels.append(int(clip["label"]))
  image, points = np.stack(image), np.stack(points)
  sets = {"image": image, "landmarks": points, "both": np.concatenate([image, points], 1)}
  return sets, np.asarray(labels)


def fit_and_score(train, val, test) -> dict:
  """(x, y) triples -> the held-out scores of the C chosen on validation."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.metrics import accuracy_score, f1_score
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  def model(c):
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(*train)

  val_f1 = {c: f1_score(val[1], model(c).predict(val[0]), average="macro") for c in C_GRID}
  best = max(C_GRID, key=lambda c: (val_f1[c], -c))
  predicted = model(best).predict(test[0])
  return {
    "C": best,
    "val_macro_f1": round(float(val_f1[best]), 4),
    "accuracy": round(float(accuracy_score(test[1], predicted)), 4),
    "macro_f1": round(float(f1_score(test[1], predicted, average="macro")), 4),
  }


def probe(simulator: str, fold: int, reference: str = "clip") -> list[dict]:
  from stress_jax import input_pipeline, protocols
  from stress_jax.configs import demo

  config = demo.get_config()
  config.data.simulator = simulator
  config.protocol.fold = fold
  handle = input_pipeline.open_dataset(config.data)
  split = protocols.split_subjects(config.protocol, handle.subjects)
  parts = {
    name: clip_table(handle, getattr(split, name), reference) for name in ("train", "val", "test")
  }
  rows = []
  for name in SETS:
    triples = [(parts[p][0][name], parts[p][1]) for p in ("train", "val", "test")]
    row = {
      "population": simulator or "reported",
      "fold": fold,
      "reference": reference,
      "features": name,
    }
    row.update(fit_and_score(*triples))
    rows.append(row)
  return rows


def table(rows: list[dict]) -> str:
  lines = [
    "| features | folds | accuracy (mean ± std over folds) | macro-F1 |",
    "|---|---|---|---|",
  ]
  for name in SETS:
    acc = [r["accuracy"] for r in rows if r["features"] == name]
    f1 = [r["macro_f1"] for r in rows if r["features"] == name]
    std = float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0
    lines.append(f"| {name} | {len(acc)} | {np.mean(acc):.3f} ± {std:.3f} | {np.mean(f1):.3f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  rows = []
  for fold in _FOLDS.value:
    for row in probe(_SIMULATOR.value, int(fold), _REFERENCE.value):
      rows.append(row)
      if not _MARKDOWN.value:
        print(json.dumps(row), flush=True)
  if _MARKDOWN.value:
    print(table(rows))
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
