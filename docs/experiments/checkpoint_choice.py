"""Which checkpoint a run should report: the one chosen on validation, or the last.

  python docs/experiments/checkpoint_choice.py --workdir=RUN [--workdir=RUN2 ...] > rows.jsonl
  python docs/experiments/checkpoint_choice.py --table=rows.jsonl     # markdown summary

Training keeps the checkpoint that scores best on the validation subjects. With three
validation subjects (about a hundred clips) that score moves by several points between
evaluations, so the pick may be a lucky evaluation rather than a better model, and the
reported accuracy may move across seeds for that reason alone. This scores, for each
trained workdir and without training again, the `best` and the `latest` (final)
checkpoint on the test and validation subjects, one JSON line per workdir and
checkpoint. `--table` groups the lines by configuration (the workdir without its
`fold_i/seed_s` tail) and prints, per configuration and over all, each choice's mean
test accuracy, its std across seeds, and the paired difference. Run it on
development-population workdirs only: the choice it informs must not see the reported
folds.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS

CHOICES = ("best", "latest")


def configuration(workdir: str) -> str:
  """'runs/dev/demo/full/fold_0/seed_2' -> 'runs/dev/demo/full' (what a seed repeats)."""
  return re.sub(r"/fold_\d+/seed_\d+/?$", "", str(workdir).rstrip("/"))


def summarise(rows: list[dict]) -> dict:
  """{config: {choice: (mean, seed std, n)}, "paired": mean latest - best, ...} from rows.

  A row is {"workdir", "checkpoint", "test_accuracy"}; the std is the sample std over
  a configuration's seeds. "all" holds each choice's mean over every run and the mean
  over configurations of the seed std, which is what decision 6's rule reads.
  """
  by_config: dict[str, dict[str, dict[str, float]]] = {}
  for row in rows:
    runs = by_config.setdefault(configuration(row["workdir"]), {})
    runs.setdefault(row["workdir"], {})[row["checkpoint"]] = row["test_accuracy"]
  table, stds, accuracies, paired = {}, {c: [] for c in CHOICES}, {c: [] for c in CHOICES}, []
  for config, runs in sorted(by_config.items()):
    complete = [r for r in runs.values() if all(c in r for c in CHOICES)]
    entry = {}
    for choice in CHOICES:
      values = np.array([r[choice] for r in complete])
      std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
      entry[choice] = (float(values.mean()), std, len(values))
      accuracies[choice] += list(values)
      if len(values) > 1:
        stds[choice].append(std)
    differences = [r["latest"] - r["best"] for r in complete]
    entry["paired"] = float(np.mean(differences))
    entry["latest_wins"] = int(sum(d > 0 for d in differences))
    paired += differences
    table[config] = entry
  table["all"] = {
    **{
      c: (float(np.mean(accuracies[c])), float(np.mean(stds[c])), len(accuracies[c]))
      for c in CHOICES
    },
    "paired": float(np.mean(paired)),
    "latest_wins": int(sum(d > 0 for d in paired)),
  }
  return table


def markdown(table: dict) -> str:
  lines = [
    "| configuration | runs | best: mean, seed std | latest: mean, seed std "
    "| latest - best | latest higher |",
    "|---|---|---|---|---|---|",
  ]
  for config, entry in table.items():
    best, latest = entry["best"], entry["latest"]
    name = "all (std: mean over configurations)" if config == "all" else f"`{config}`"
    lines.append(
      f"| {name} | {best[2]} | {best[0]:.3f}, {best[1]:.3f} | {latest[0]:.3f}, {latest[1]:.3f} "
      f"| {entry['paired']:+.3f} | {entry['latest_wins']} of {best[2]} |"
    )
  return "\n".join(lines)


def score(workdir: str) -> list[dict]:
  from stress_jax import evaluate

  config = evaluate.read_config(workdir)
  rows, scored = [], {}
  for choice in CHOICES:
    step, _ = evaluate.resolve_checkpoint(workdir, config, choice)
    if step not in scored:  # the best checkpoint is often the last one
      trainer, state, _, _ = evaluate.restore(workdir, config, str(step))
      scored[step] = {}
      for split in ("test", "val"):
        outputs = trainer.predict(state, tuple(sorted(getattr(trainer.split, split))))
        correct = outputs["probabilities"].argmax(-1) == outputs["label"]
        scored[step][f"{split}_accuracy"] = float(correct.mean())
    rows.append({"workdir": workdir, "checkpoint": choice, "step": step, **scored[step]})
  return rows


def main(argv):
  del argv
  if FLAGS.table:
    rows = [json.loads(line) for line in pathlib.Path(FLAGS.table).read_text().splitlines() if line]
    print(markdown(summarise(rows)))
    return
  from stress_jax import cli

  cli.quiet_logging("error")
  for workdir in FLAGS.workdir:
    for row in score(workdir):
      print(json.dumps(row), flush=True)
  sys.stdout.flush()


if __name__ == "__main__":
  # Defined here, not on import: the tests load several of these scripts in one process.
  flags.DEFINE_multi_string("workdir", [], "Trained workdirs.")
  flags.DEFINE_string("table", None, "Summarise these JSON lines instead.")
  app.run(main)
