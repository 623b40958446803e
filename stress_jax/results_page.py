"""docs/results.md and results.json from the ablation's runs (variant, fold, seed).

collect() gathers every finished run's summary.json into a table (results.json): the runs,
mean +/- sample std over fold x seed per variant, each fold's spread across seeds, the
full model's paired wins (same fold, same seed) against each variant, and the goals of
issue 25 with the amount each misses by. page() renders it as markdown; it names no path
of the machine the runs sat on.
"""

from __future__ import annotations

import math

import numpy as np

# (row key, title) of the page's columns; localisation AUROCs only where measured.
COLUMNS = (
  ("accuracy", "accuracy"),
  ("macro_f1", "macro-F1"),
  ("faithfulness_temporal_auroc", "temporal AUROC"),
  ("faithfulness_landmark_temporal_auroc", "landmark temporal AUROC, all cues"),
  ("faithfulness_landmark_temporal_visible_auroc", "landmark temporal AUROC, point-moving cues"),
  ("faithfulness_spatial_auroc", "spatial AUROC"),
)
DESCRIPTIONS = {
  "full": "the config as given",
  "no_spatial_attention": "no CBAM spatial attention",
  "no_temporal_attention": "uniform frame weights in both streams",
  "no_landmark_stream": "image stream only",
  "no_image_stream": "landmark stream only",
  "triplet": "full model, triplet objective",
}
# Issue 25's goals for the full model (means over folds and seeds). The landmark stream
# is held to the frames it can see: appearance-only cues leave the 68 points where they
# were (faithfulness.py, "what each stream can see"); the all-cue score stays a column.
MEAN_GOALS = (
  ("accuracy", 0.90),
  ("faithfulness_spatial_auroc", 0.80),
  ("faithfulness_temporal_auroc", 0.90),
  ("faithfulness_landmark_temporal_visible_auroc", 0.87),
)
# The full model should beat each of these in WINS_NEEDED of WINS_OF paired runs.
PAIRED_GOALS = (
  "no_image_stream",
  "no_landmark_stream",
  "no_spatial_attention",
  "no_temporal_attention",
)
WINS_NEEDED, WINS_OF = 10, 12
MAX_SEED_STD = 0.03  # a fold's accuracy across seeds
TEMPORAL_KEYS = ("faithfulness_temporal_auroc", "faithfulness_landmark_temporal_visible_auroc")
# Fields a run's config may differ in and still be "the same config" as the page's.
PER_RUN_FIELDS = ("seed", "protocol.fold")


def comparable_config(config) -> dict:
  """The config's fingerprint without what differs between the page's runs (seed, fold)."""
  from stress_jax import provenance

  fingerprint = provenance.config_fingerprint(config)
  return {k: v for k, v in fingerprint.items() if k not in PER_RUN_FIELDS}


def population(config) -> str:
  """The dataset the runs read: a simulator override names its own population."""
  from stress_jax import input_pipeline

  return input_pipeline.dataset_name(config.data)


def _stats(values) -> dict:
  from stress_jax import metrics

  return metrics.mean_std(values)


def collect(runs: dict, num_folds: int, seeds, chosen_on: str, config=None) -> dict:
  """runs: {variant: [row]} with crossval fold rows plus "seed" -> the results table."""
  seeds = sorted({int(s) for s in seeds})
  table = {
    "num_folds": int(num_folds),
    "seeds": seeds,
    "chosen_on": chosen_on,
    "variants": {},
  }
  if config is not None:
    table["dataset"] = population(config)
    table["config"] = comparable_config(config)
  for name, rows in runs.items():
    rows = sorted(rows, key=lambda r: (r["fold"], r["seed"]))
    keys = [key for key, _ in COLUMNS] + ["balanced_accuracy", "roc_auc_macro"]
    by_fold = {}
    for row in rows:
      by_fold.setdefault(row["fold"], []).append(row.get("accuracy"))
    table["variants"][name] = {
      "runs": rows,
      "finished": len(rows),
      "expected": int(num_folds) * len(seeds),
      "mean_std": {
        key: _stats([r.get(key) for r in rows])
        for key in keys
        if any(r.get(key) is not None for r in rows)
      },
      "fold_across_seeds": {
        str(fold): {**_stats(values), "min": min(values), "max": max(values)}
        for fold, values in sorted(by_fold.items())
      },
    }
  table["paired"] = paired_wins(table)
  table["goals"] = goals(table)
  return table


def paired_wins(table: dict) -> dict:
  """Per variant: how often the full model's accuracy beats it on the same (fold, seed)."""
  variants = table["variants"]
  full = {
    (r["fold"], r["seed"]): r.get("accuracy") for r in variants.get("full", {}).get("runs", [])
  }
  paired = {}
  for name, variant in variants.items():
    if name == "full":
      continue
    wins = ties = pairs = 0
    differences = []
    for row in variant["runs"]:
      ours = full.get((row["fold"], row["seed"]))
      theirs = row.get("accuracy")
      if ours is None or theirs is None:
        continue
      pairs += 1
      wins += ours > theirs
      ties += ours == theirs
      differences.append(ours - theirs)
    paired[name] = {
      "wins": wins,
      "ties": ties,
      "pairs": pairs,
      "mean_difference": float(np.mean(differences)) if differences else None,
    }
  return paired


def wins_needed(pairs: int) -> int:
  """WINS_NEEDED of WINS_OF, scaled to the pairs there are (10 of 12 -> 5 of 6)."""
  return math.ceil(pairs * WINS_NEEDED / WINS_OF)


def goals(table: dict) -> list[dict]:
  """Each goal of issue 25 for the full model: value, met, and by how much it is missed."""
  full = table["variants"].get("full")
  titles = dict(COLUMNS)
  out = []

  def add(goal, target, value, met, miss, detail=""):
    out.append(
      {"goal": goal, "target": target, "value": value, "met": met, "miss": miss, "detail": detail}
    )

  for key, target in MEAN_GOALS:
    stats = (full or {}).get("mean_std", {}).get(key)
    if not stats or not stats["n"]:
      add(f"{titles[key]} (mean)", f">= {target:.2f}", None, None, None, "not measured")
      continue
    gap = stats["mean"] - target
    add(f"{titles[key]} (mean)", f">= {target:.2f}", stats["mean"], gap >= 0, max(-gap, 0.0))
  for name in PAIRED_GOALS:
    pair = table["paired"].get(name)
    if not pair or not pair["pairs"]:
      add(f"full beats `{name}`", f"{WINS_NEEDED} of {WINS_OF}", None, None, None, "no pairs")
      continue
    need = wins_needed(pair["pairs"])
    add(
      f"full beats `{name}`",
      f"{WINS_NEEDED} of {WINS_OF}",
      pair["wins"],
      pair["wins"] >= need,
      max(need - pair["wins"], 0),
      f"{pair['wins']} of {pair['pairs']} paired runs (needs {need})",
    )
  spreads = {
    fold: stats["std"]
    for fold, stats in (full or {}).get("fold_across_seeds", {}).items()
    if stats["n"] > 1
  }
  if spreads:
    fold, worst = max(spreads.items(), key=lambda item: item[1])
    add(
      "accuracy std across seeds, worst fold",
      f"<= {MAX_SEED_STD:.2f}",
      worst,
      worst <= MAX_SEED_STD,
      max(worst - MAX_SEED_STD, 0.0),
      f"fold {fold}",
    )
  else:
    add(
      "accuracy std across seeds, worst fold",
      f"<= {MAX_SEED_STD:.2f}",
      None,
      None,
      None,
      "no fold has two seeds",
    )
  lows = [
    (row.get(key), row["fold"], row["seed"], titles[key])
    for row in (full or {}).get("runs", [])
    for key in TEMPORAL_KEYS
    if row.get(key) is not None
  ]
  if lows:
    value, fold, seed, title = min(lows)
    below = sum(low[0] < 0.5 for low in lows)
    add(
      "lowest temporal AUROC of any run (no collapse)",
      ">= 0.50",
      value,
      value >= 0.5,
      max(0.5 - value, 0.0),
      f"{title}, fold {fold} seed {seed}; {below} stream-run(s) below 0.5",
    )
  else:
    add(
      "lowest temporal AUROC of any run (no collapse)", ">= 0.50", None, None, None, "not measured"
    )
  return out


def _cell(stats: dict | None) -> str:
  return "-" if not stats or not stats["n"] else f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _value(value, digits: int = 3) -> str:
  if value is None:
    return "-"
  return str(value) if isinstance(value, (int, np.integer)) else f"{value:.{digits}f}"


def _verdict(goal: dict) -> str:
  if goal["met"] is None:
    return goal["detail"] or "not measured"
  if goal["met"]:
    return "met"
  miss = goal["miss"]
  if isinstance(miss, int):
    return f"missed by {miss} win{'s' if miss != 1 else ''}"
  # Enough digits that a miss never reads as "missed by 0.000".
  return f"missed by {miss:.3f}" if miss >= 0.0005 else f"missed by {miss:.5f}"


def goal_lines(table: dict) -> list[str]:
  lines = ["| goal (full model) | target | value | verdict | where |", "|---|---|---|---|---|"]
  for goal in table["goals"]:
    value = goal["value"]
    shown = _value(value) if not isinstance(value, float) or value >= 0.0005 else f"{value:.5f}"
    where = goal["detail"] if goal["met"] is not None else ""
    lines.append(f"| {goal['goal']} | {goal['target']} | {shown} | {_verdict(goal)} | {where} |")
  return lines


def checkpoint_sentence(config) -> str:
  """Which checkpoint each run reports (config.train.report_checkpoint), as a sentence."""
  if config.train.get("report_checkpoint", "best") == "last":
    return "Each run reports its last checkpoint."
  return "Each run's checkpoint is chosen on validation subjects."


def page(table: dict, config, model_line: str) -> str:
  """The markdown of docs/results.md."""
  variants = table["variants"]
  columns = [
    (key, title)
    for key, title in COLUMNS
    if any(v["mean_std"].get(key, {}).get("n") for v in variants.values())
  ]
  seeds = ", ".join(str(s) for s in table["seeds"])
  lines = [
    "# Results: ablations on the demo protocol, over folds and seeds",
    "",
    "Generated by `python -m stress_jax.ablation --collect` from each run's summary "
    "(one workdir per variant, fold and seed); do not edit by hand. Dataset "
    f"`{population(config)}`, {config.protocol.kind} protocol with {table['num_folds']} folds "
    f"of held-out subjects, seeds {seeds} (`config.seed`: initialisation, dropout and data "
    "order; the folds stay the same). "
    + checkpoint_sentence(config)
    + " Localisation AUROC: 0.5 is chance, 1.0 perfect (`stress_jax/faithfulness.py`). "
    "The landmark stream's frame weights are scored twice: against every cue frame, and "
    "against the frames of the cues that move the 68 points (blinks, brows, lips, head "
    "jitter), the only ones it can sense; its goal reads the second.",
    "",
    f"Settings chosen on: {table['chosen_on']} (`--chosen_on`).",
    "",
  ]
  left_out = table.get("left_out") or []
  if left_out:
    shown = "; ".join(left_out[:5]) + (
      f"; and {len(left_out) - 5} more" if len(left_out) > 5 else ""
    )
    lines += [
      f"**Left out: {len(left_out)} finished run(s) of another config** (variant/fold/seed, "
      f"fields that differ): {shown}. Rerun them in a fresh workdir.",
      "",
    ]
  lines += [
    f"Training: {config.train.num_epochs} epochs"
    + (f" ({config.train.num_steps} steps)" if config.train.num_steps > 0 else "")
    + f", batch {config.input.batch_size}, learning rate {config.optim.learning_rate}, "
    f"objective {config.train.objective}.",
    "",
    model_line,
    "",
    "## Mean ± sample std over fold × seed",
    "",
  ]
  header = ["variant", "what changes", "runs", *(title for _, title in columns)]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, variant in variants.items():
    cells = [name, DESCRIPTIONS.get(name, ""), f"{variant['finished']}/{variant['expected']}"]
    cells += [_cell(variant["mean_std"].get(key)) for key, _ in columns]
    lines.append("| " + " | ".join(cells) + " |")
  lines += [
    "",
    "## The full model against each variant, run by run",
    "",
    "Same fold and seed; a win is a strictly higher test accuracy.",
    "",
    "| variant | full model wins | paired runs | mean accuracy difference (full - variant) |",
    "|---|---|---|---|",
  ]
  for name, pair in table["paired"].items():
    lines.append(
      f"| {name} | {pair['wins']} | {pair['pairs']} | "
      + ("-" if pair["mean_difference"] is None else f"{pair['mean_difference']:+.3f}")
      + " |"
    )
  folds = sorted({int(f) for v in variants.values() for f in v["fold_across_seeds"]})
  lines += [
    "",
    "## How far one fold moves across seeds (accuracy: mean ± std, min-max)",
    "",
    "| variant | " + " | ".join(f"fold {f}" for f in folds) + " |",
    "|---|" + "---|" * len(folds),
  ]
  for name, variant in variants.items():
    cells = []
    for fold in folds:
      stats = variant["fold_across_seeds"].get(str(fold))
      cells.append(
        "-"
        if stats is None
        else f"{_cell(stats)}, {stats['min']:.3f}-{stats['max']:.3f} (n={stats['n']})"
      )
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines += ["", "## Goals (issue 25)", "", *goal_lines(table), ""]
  lines += [
    "What was tried for the spatial map: [spatial_attention.md](spatial_attention.md). "
    "What was tried on the development population, with each rule and its outcome: "
    "[development/README.md](development/README.md).",
    "",
    "![ablation bar chart](results.png)",
    "",
    "## Every run",
    "",
  ]
  header = ["variant", "fold", "seed", "step", *(title for _, title in columns)]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, variant in variants.items():
    for row in variant["runs"]:
      cells = [name, str(row["fold"]), str(row["seed"]), str(row["selected_step"])]
      cells += [_value(row.get(key)) for key, _ in columns]
      lines.append("| " + " | ".join(cells) + " |")
  lines += [
    "",
    "Regenerate: `python -m stress_jax.ablation` (every variant, fold and seed), or per job "
    "`--variant=NAME --fold=i --seed=s`, two at a time with `--shard=0/2` and `--shard=1/2`; "
    "then `--collect`.",
    "",
  ]
  return "\n".join(lines)
