"""Which cues each attention finds, kind by kind, on a trained workdir's test subjects.

  python docs/experiments/cue_kinds.py --workdir=RUN [--workdir=RUN2 ...] > kinds.jsonl
  python docs/experiments/cue_kinds.py --table=kinds.jsonl   # markdown: mean over seeds

stress_faces 2.0.0 records hold each clip's cue events (`cue_events`). A weakly stressed
clip holds exactly one event, so its frames and its region belong to one cue kind. For
each kind this scores, over the test clips whose only event is of that kind, the spatial
map's AUROC against each frame's region and both streams' temporal AUROC against the
event's frames (stress_jax/faithfulness.py), and prints one JSON line per workdir and kind
plus one line "all" over every clip with cues. Clips of two or more events count in
"all" only. --table prints the mean over each model's seeds (workdirs that differ only
in their last folder, seed_<s>) as a markdown table, one row per model and kind.
"""

from __future__ import annotations

import json

import numpy as np
from absl import app, flags

_WORKDIRS = flags.DEFINE_multi_string("workdir", [], "Trained workdirs on stress_faces 2.0.0.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "best, latest or step<N>.")
_TABLE = flags.DEFINE_string("table", "", "A JSONL this script wrote: print its markdown table.")
SCORES = ("spatial_auroc", "temporal_auroc", "landmark_temporal_auroc")


def _mean(values) -> float | None:
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  return round(float(values.mean()), 3) if values.size else None


def kind_scores(outputs: dict, kinds) -> list[dict]:
  """Per cue kind (and "all"): clips, spatial / temporal / landmark temporal AUROC."""
  from stress_jax import faithfulness as f

  events = np.asarray(outputs["cue_events"])
  used = events[..., 0] >= 0
  mask, cues = outputs["frame_mask"], outputs["cue_frames"]
  scores = {}
  if "aux/spatial_attention" in outputs:
    scores["spatial_auroc"] = f.spatial_aurocs(
      outputs["aux/spatial_attention"], outputs["cue_region"], cues, mask
    )
  for name in ("temporal", "landmark_temporal"):
    key = f"aux/{name}_attention"
    if key in outputs:
      scores[f"{name}_auroc"] = f.temporal_aurocs(outputs[key], cues, mask)
  groups = [("all", used.any(-1))]
  single = used.sum(-1) == 1
  for index, kind in enumerate(kinds):
    groups.append((kind, single & (events[:, 0, 0] == index)))
  rows = []
  for kind, chosen in groups:
    if chosen.any():
      row = {"kind": kind, "clips": int(chosen.sum())}
      row.update({name: _mean(values[chosen]) for name, values in scores.items()})
      rows.append(row)
  return rows


def table(lines) -> str:
  """Markdown: per model (workdir without its seed folder) and kind, the mean over seeds."""
  groups = {}
  for line in lines:
    row = json.loads(line)
    model = row["workdir"].rstrip("/").rsplit("/", 1)[0]
    group = groups.setdefault((model, row["kind"]), {"runs": 0, "clips": 0})
    group["runs"] += 1
    group["clips"] += row["clips"]
    for score in SCORES:
      if row.get(score) is not None:
        group.setdefault(score, []).append(row[score])
  out = [
    "| model | cue kind | runs | clips | " + " | ".join(SCORES) + " |",
    "|---|---|---|---|" + "---|" * len(SCORES),
  ]
  for (model, kind), group in groups.items():
    cells = [_mean(group[s]) if s in group else None for s in SCORES]
    cells = ["-" if c is None else f"{c:.3f}" for c in cells]
    out.append(
      f"| {model} | {kind} | {group['runs']} | {group['clips']} | " + " | ".join(cells) + " |"
    )
  return "\n".join(out)


def main(argv):
  del argv
  if _TABLE.value:
    with open(_TABLE.value) as lines:
      print(table(lines))
    return
  from stress_jax import cli, evaluate
  from stress_jax.datasets.synthetic.cues import EVENT_KINDS

  cli.quiet_logging("error")
  for workdir in _WORKDIRS.value:
    config = evaluate.read_config(workdir)
    trainer, state, step, _ = evaluate.restore(workdir, config, _CHECKPOINT.value)
    subjects = tuple(sorted(trainer.split.test))
    outputs = trainer.predict(state, subjects, keep_metadata=True)
    if "cue_events" not in outputs:
      raise SystemExit(f"{workdir}: its records hold no cue_events (stress_faces 2.0.0 only)")
    for row in kind_scores(outputs, EVENT_KINDS):
      print(json.dumps({"workdir": workdir, "step": step, **row}), flush=True)


if __name__ == "__main__":
  app.run(main)
