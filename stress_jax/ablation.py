"""The ablation table: the demo protocol's folds for the full model, each switch, the triplet loss.

  python -m stress_jax.ablation                                  # every variant, every fold
  python -m stress_jax.ablation --fold=2 --variant=no_image_stream   # one job (run in parallel)
  python -m stress_jax.ablation --collect                        # only rewrite the page
  ... plus any config override, e.g. --config.train.num_epochs=4

Variants (stress_jax/crossval.py VARIANTS): full, no_spatial_attention,
no_temporal_attention, no_landmark_stream, no_image_stream, triplet. Each (variant, fold)
trains in `<workdir>/<variant>/fold_<i>` through crossval.run, so a finished one is
skipped and an interrupted one resumes; separate processes may run different
(variant, fold) pairs at the same time. After training (and with --collect) the finished
folds are gathered into `<workdir>/crossval.{md,json}` and the results page
`<results_dir>/results.md` with the bar chart `<results_dir>/results.png`: mean +/- std
over folds of accuracy, macro-F1 and the attention localisation AUROCs, and a sentence
naming every variant that the full model does not beat.
"""

from __future__ import annotations

import pathlib

import numpy as np
from absl import flags

from stress_jax import cli, crossval, jsonio
from stress_jax.models.stressnet import StressNetConfig

# (crossval row key, title) of the page's columns; localisation AUROCs only where measured.
COLUMNS = (
  ("accuracy", "accuracy"),
  ("macro_f1", "macro-F1"),
  ("faithfulness_temporal_auroc", "temporal AUROC"),
  ("faithfulness_landmark_temporal_auroc", "landmark temporal AUROC"),
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

# Issue 14's goals for the full demo model on held-out subjects (accuracy: the demo's score
# before the localisation work); the page says how far the full variant's fold mean is.
GOALS = (
  ("accuracy", 0.882),
  ("faithfulness_temporal_auroc", 0.90),
  ("faithfulness_landmark_temporal_auroc", 0.87),
  ("faithfulness_spatial_auroc", 0.80),
)


FLAGS = flags.FlagValues()
_CONFIG = cli.define_config_flag(FLAGS)
_WORKDIR = cli.define_workdir(FLAGS, "Root of the variant/fold workdirs.", "runs/ablation")
_RESULTS_DIR = flags.DEFINE_string(
  "results_dir", "docs", "Where results.md/.png are written.", flag_values=FLAGS
)
_FOLD, _COLLECT = cli.define_fold_flags(FLAGS, "page")
_VARIANT = flags.DEFINE_enum(
  "variant", None, list(crossval.VARIANTS), "Run only this variant.", flag_values=FLAGS
)


def _stats(variant: dict, key: str) -> dict | None:
  stats = variant["mean_std"].get(key)
  return stats if stats and stats["n"] else None


def _cell(stats: dict | None) -> str:
  return "-" if stats is None else f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _fold_values(variant: dict, key: str) -> dict[int, float]:
  return {row["fold"]: row[key] for row in variant.get("folds", []) if row.get(key) is not None}


def verdict(table: dict) -> list[str]:
  """Sentences comparing the full model with each ablation on accuracy and macro-F1.

  Means are taken over the folds both finished, so a variant with fewer folds is not
  compared against the full model's mean over other folds.
  """
  variants = table["variants"]
  full = variants.get("full")
  if full is None or _stats(full, "accuracy") is None:
    return ["The full model has no finished fold yet, so nothing is compared."]
  lines, compared = [], False
  for name, variant in variants.items():
    if name == "full":
      continue
    means, folds = {}, None
    for key in ("accuracy", "macro_f1"):
      ours, theirs = _fold_values(full, key), _fold_values(variant, key)
      folds = sorted(set(ours) & set(theirs))
      if folds:
        means[key] = tuple(sum(values[f] for f in folds) / len(folds) for values in (ours, theirs))
    if "accuracy" not in means:
      continue
    compared = True
    if min(ours - theirs for ours, theirs in means.values()) > 0:
      continue
    where = ""
    if len(folds) < len(_fold_values(full, "accuracy")):
      where = f" (on the fold{'s' if len(folds) > 1 else ''} both finished: "
      where += ", ".join(str(f) for f in folds) + ")"
    lines.append(
      f"**The full model is not better than `{name}`**{where}: mean accuracy "
      + ", macro-F1 ".join(
        f"{means[key][0]:.3f} vs {means[key][1]:.3f}"
        for key in ("accuracy", "macro_f1")
        if key in means
      )
      + "."
    )
  if compared and not lines:
    lines.append(
      "The full model's mean accuracy and macro-F1 are above those of every finished "
      "ablation (each on the folds both finished)."
    )
  lines.append(
    "With few folds the standard deviations are wide; a difference smaller than them is not "
    "evidence either way."
  )
  return lines


def goal_lines(table: dict) -> list[str]:
  """A table of the full variant's fold means against GOALS, with the shortfall."""
  full = table["variants"].get("full")
  titles = dict(COLUMNS)
  lines = ["| goal (full model) | target | mean over folds | verdict |", "|---|---|---|---|"]
  for key, target in GOALS:
    stats = None if full is None else _stats(full, key)
    if stats is None:
      verdict_cell, mean_cell = "not measured", "-"
    else:
      gap = stats["mean"] - target
      # Enough digits that a miss never reads as "missed by 0.000".
      digits = 3 if gap >= 0 or -gap >= 0.0005 else 5
      mean_cell = f"{stats['mean']:.{digits}f}"
      verdict_cell = "met" if gap >= 0 else f"missed by {-gap:.{digits}f}"
    lines.append(f"| {titles[key]} | >= {target:.3f} | {mean_cell} | {verdict_cell} |")
  lines += [
    "",
    "What was tried for the spatial map, and why it does not localise: "
    "[spatial_attention.md](spatial_attention.md).",
  ]
  return lines


def bar_chart(path, table: dict) -> pathlib.Path:
  """Grouped bars (one group per column, one bar per variant) with std error bars."""
  from stress_jax import plots

  plt = plots._pyplot()
  columns = [
    (key, title)
    for key, title in COLUMNS
    if any(_stats(v, key) for v in table["variants"].values())
  ]
  names = list(table["variants"])
  fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(columns) + 1), 3.8))
  width = 0.8 / max(len(names), 1)
  for i, name in enumerate(names):
    stats = [_stats(table["variants"][name], key) for key, _ in columns]
    means = [s["mean"] if s else np.nan for s in stats]
    stds = [s["std"] if s else 0.0 for s in stats]
    x = np.arange(len(columns)) + (i - (len(names) - 1) / 2) * width
    ax.bar(x, means, width, yerr=stds, capsize=2, label=name)
  ax.set_xticks(
    np.arange(len(columns)), [title.replace(" AUROC", "\nAUROC") for _, title in columns]
  )
  ax.axhline(0.5, color="grey", lw=0.8, ls=":")
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("mean ± std over folds")
  ax.legend(fontsize=7, ncol=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.16))
  ax.set_title("Ablations on held-out subjects (dotted: AUROC chance)")
  return plots._save(fig, path)


def model_line(config) -> str:
  """The full model's image-stream, attention and loss settings, which the results depend on."""
  values = dict(config.model.to_dict() if hasattr(config.model, "to_dict") else config.model)
  # dtype "auto" is resolved only when a run starts; it does not change what is stated here.
  values["dtype"] = "float32"
  model = StressNetConfig.from_any(values)
  parts = []
  if model.input_mode == "pixels":
    grid = 112 // (4 * 2 ** (len(model.stage_widths) - 1))
    parts.append(f"trunk stages {'/'.join(map(str, model.stage_widths))}, so a {grid}x{grid} map")
  parts += [
    f"spatial map `{model.spatial_attention_mode}` on the {model.spatial_attention_position}'s "
    f"output, over `{model.spatial_attention_input}` input "
    f"({model.spatial_kernel_size}x{model.spatial_kernel_size} conv)",
    "per-stream heads "
    + (
      f"on (loss weight {config.train.get('stream_loss_weight', 0.0)})"
      if model.stream_heads
      else "off"
    ),
  ]
  if model.stream_heads:
    parts.append(
      "frame weights learn from "
      + ("their own stream's head only" if model.detach_stream_attention else "all losses")
    )
  parts.append(f"landmark deviation from the clip's {model.landmark_reference}")
  return "Full model: " + "; ".join(parts) + " (see `docs/method.md`)."


def results_page(table: dict, config, workdir, chart_name: str) -> str:
  """docs/results.md from a crossval table (see crossval.collect)."""
  num_folds = table["num_folds"]
  columns = [
    (key, title)
    for key, title in COLUMNS
    if any(_stats(v, key) for v in table["variants"].values())
  ]
  lines = [
    "# Results: ablations on the demo protocol",
    "",
    "Generated by `python -m stress_jax.ablation --collect` from the fold summaries in "
    f"`{workdir}`; do not edit by hand. Dataset `{config.data.name}`, "
    f"{config.protocol.kind} protocol with {num_folds} folds of held-out subjects; each "
    "fold's checkpoint is chosen on validation subjects. Mean ± sample standard deviation "
    "over the finished folds (the folds column says how many). Localisation AUROC: 0.5 is "
    "chance, 1.0 perfect (`stress_jax/faithfulness.py`).",
    "",
    f"Training: {config.train.num_epochs} epochs"
    + (f" ({config.train.num_steps} steps)" if config.train.num_steps > 0 else "")
    + f", batch {config.input.batch_size}, learning rate {config.optim.learning_rate}.",
    "",
    model_line(config),
    "",
  ]
  header = ["variant", "what changes", "folds", *(title for _, title in columns)]
  lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, variant in table["variants"].items():
    cells = [name, DESCRIPTIONS.get(name, ""), f"{variant['finished']}/{num_folds}"]
    cells += [_cell(_stats(variant, key)) for key, _ in columns]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", *verdict(table), "", "## Goals", "", *goal_lines(table)]
  lines += ["", f"![ablation bar chart]({chart_name})", ""]
  lines += [
    "Per-fold figures: `crossval.md` in the workdir. Regenerate everything with "
    "`python -m stress_jax.ablation` (or per job: `--variant=NAME --fold=i`, then "
    "`--collect`).",
    "",
  ]
  return "\n".join(lines)


def write_results(workdir, config, results_dir, table: dict | None = None) -> pathlib.Path:
  """Collects the finished folds and writes results.md and results.png into results_dir."""

  num_folds = crossval.count_folds(config)
  if table is None:
    table = crossval.collect(workdir, num_folds, ablations=True)
  crossval.write_tables(workdir, table, config)
  results_dir = pathlib.Path(results_dir)
  results_dir.mkdir(parents=True, exist_ok=True)
  bar_chart(results_dir / "results.png", table)
  jsonio.write(results_dir / "results.json", table)
  page = results_dir / "results.md"
  page.write_text(results_page(table, config, workdir, "results.png"))
  return page


def run(config, workdir, results_dir, fold=None, variant=None, collect_only=False, train_fn=None):
  """Trains what was asked (unless collect_only), then writes the results page."""
  preempted = False
  if not collect_only:
    variants = None if variant is None else [variant]
    result = crossval.run(
      config, workdir, fold, ablations=True, train_fn=train_fn, variants=variants
    )
    # The exit status the interrupted fold asks for (130 after Ctrl-C), else False.
    preempted = result["preempted"] and result.get("exit_code", True)
  return write_results(workdir, config, results_dir), preempted


def main(argv):
  cli.unexpected_arguments(argv)
  cli.quiet_logging("warning")
  fold = None if _FOLD.value < 0 else _FOLD.value
  page, preempted = run(
    _CONFIG.value,
    _WORKDIR.value,
    _RESULTS_DIR.value,
    fold=fold,
    variant=_VARIANT.value,
    collect_only=_COLLECT.value,
  )
  print(page.read_text(), flush=True)
  if preempted:
    from stress_jax import train

    raise SystemExit(train.PREEMPTED_EXIT_CODE if preempted is True else int(preempted))


if __name__ == "__main__":
  cli.run(main, FLAGS, "ablation")
