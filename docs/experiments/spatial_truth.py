"""Which region should a frame's spatial map be scored against? A probe of a trained workdir.

  python docs/experiments/spatial_truth.py --workdir=runs/demo [--clips_per_class=4] [--occlusion]

The dataset stores one cue region per clip: the union of the regions of all the clip's
cue events. A strongly stressed clip holds two or three events (brows, lips, eyes, head)
at different times, so on a frame where only the brows are furrowed that union also
marks the lips, and a map that finds exactly the active cue cannot score 1. This probe
re-renders the test clips of the workdir's fold with the simulator (deterministic: the
same frames the dataset holds), runs the checkpoint chosen on validation, and scores
every cue frame's map three ways:

  union     the stored per-clip region (what the dataset has had so far)
  active    the region of the events acting on that frame only
  ceiling   the union score of a map equal to the active region (the best a map that
            finds exactly the frame's own cue can get against the union)

Figures are means over clips (each clip's mean over its cue frames), by number of
events in the clip and by the kind of a single-event clip.

With --occlusion it also asks, for single-event clips, whether the model's evidence for
each kind of cue sits where that cue acts: the event's region (>= 0.5) greyed out on the
event's frames, against the same mask shifted to where it overlaps the region least
(as occlusion.py does); the mean drop in the true class's probability, by kind.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import occlusion  # noqa: E402


def _frame_regions(clip) -> np.ndarray:
  from stress_jax.datasets.synthetic import cue_effects

  regions = []
  for f in range(len(clip.frames)):
    active = [e for e in clip.events if e.start <= f < e.end]
    regions.append(cue_effects.cue_region(active, clip.landmarks))
  return np.stack(regions)


def _frame_auroc(score_map, region) -> float:
  """One frame's map (h, w) against a region (H, W), as faithfulness scores a clip's frames."""
  from stress_jax import faithfulness

  one = np.ones((1, 1), bool)
  return float(faithfulness.spatial_aurocs(score_map[None, None], region[None], one, one)[0])


def _occlusion_drops(trainer, state, clip, row, base) -> tuple[float, float]:
  from stress_jax.datasets.synthetic import cue_effects

  (event,) = clip.events
  mask = cue_effects.cue_region([event], clip.landmarks) >= 0.5
  drops = []
  for where in (mask, occlusion._control_mask(mask)):
    inputs = row["inputs"].copy()
    for f in range(event.start, event.end):
      inputs[f][where] = occlusion.GREY
    probabilities, _ = occlusion._predict(trainer, state, [{**row, "inputs": inputs}])
    drops.append(float(base[0, row["label"]] - probabilities[0, row["label"]]))
  return drops[0], drops[1]


def probe(workdir, clips_per_class: int, with_occlusion: bool = False) -> dict:
  from stress_jax import faithfulness
  from stress_jax.datasets import synthetic
  from tfds_builders.stress_faces import stress_faces_dataset_builder as builder

  trainer, state = occlusion._load(workdir)
  from stress_jax import evaluate

  name = evaluate.read_config(workdir).data.name.split("/")[-1]
  sim = {c.name: c for c in builder.StressFaces.BUILDER_CONFIGS}[name].simulator
  test = set(trainer.split.test)
  scores = collections.defaultdict(list)
  drops = collections.defaultdict(list)
  for subject in range(sim.num_subjects):
    if synthetic.split_name(subject, sim.num_subjects) not in test:
      continue
    for session in range(1, sim.num_classes):
      for index in range(min(clips_per_class, sim.clips_per_class_per_subject)):
        clip = synthetic.simulate_clip(sim, subject, session, index)
        if not clip.cue_frames.any():
          continue
        row = {
          "inputs": clip.frames,
          "landmarks": clip.landmarks,
          "frame_mask": np.ones(len(clip.frames), bool),
          "label": clip.label,
        }
        base, aux = occlusion._predict(trainer, state, [row])
        maps = aux["spatial_attention"][0]
        active = _frame_regions(clip)
        frames = np.flatnonzero(clip.cue_frames)
        union = [_frame_auroc(maps[f], clip.cue_region) for f in frames]
        own = [_frame_auroc(maps[f], active[f]) for f in frames]
        shape = maps.shape[-2:]
        ceiling = [
          _frame_auroc(faithfulness.region_cells(active[f][None], shape)[0], clip.cue_region)
          for f in frames
        ]
        kinds = sorted({e.kind for e in clip.events})
        key = f"{len(clip.events)} events" if len(clip.events) > 1 else f"1 event: {kinds[0]}"
        for group in ("all", key):
          scores[group].append((np.nanmean(union), np.nanmean(own), np.nanmean(ceiling)))
        if with_occlusion and len(clip.events) == 1:
          drops[clip.events[0].kind].append(_occlusion_drops(trainer, state, clip, row, base))
  result = {"workdir": str(workdir)}
  for group, rows in sorted(scores.items()):
    rows = np.asarray(rows)
    result[group] = {
      "clips": len(rows),
      "union": round(float(np.nanmean(rows[:, 0])), 3),
      "active": round(float(np.nanmean(rows[:, 1])), 3),
      "ceiling": round(float(np.nanmean(rows[:, 2])), 3),
    }
  for kind, rows in sorted(drops.items()):
    rows = np.asarray(rows)
    result[f"occlusion: {kind}"] = {
      "clips": len(rows),
      "cue region drop": round(float(rows[:, 0].mean()), 3),
      "control drop": round(float(rows[:, 1].mean()), 3),
    }
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--clips_per_class", type=int, default=4)
  parser.add_argument("--occlusion", action="store_true")
  parser.add_argument("--output", default="")
  args = parser.parse_args(argv)
  text = json.dumps(probe(args.workdir, args.clips_per_class, args.occlusion), indent=2)
  print(text)
  if args.output:
    pathlib.Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
  sys.exit(main())
