"""The ablation table: every variant on every fold with several seeds -> docs/results.md.

  python -m stress_jax.ablation                                  # every variant, fold, seed
  python -m stress_jax.ablation --variant=full --fold=2 --seed=1  # one job
  python -m stress_jax.ablation --variant=full,no_image_stream    # some variants
  python -m stress_jax.ablation --shard=0/2 & python -m stress_jax.ablation --shard=1/2
  python -m stress_jax.ablation --collect                        # only rewrite the page
  ... plus any config override, e.g. --config.train.num_epochs=4

Variants (stress_jax/crossval.py VARIANTS): full, no_spatial_attention,
no_temporal_attention, no_landmark_stream, no_image_stream, triplet. Each job (variant,
fold, seed) trains in `<workdir>/<variant>/fold_<i>/seed_<s>` with `config.seed = s`, so a
finished job is skipped and an interrupted one resumes; separate processes may run
different jobs at the same time (`--shard=k/n` deals the job list out to n of them).
After each job, and with --collect, every finished run is gathered into
`<results_dir>/results.{md,json,png}` (stress_jax/results_page.py): each run, mean +/- std
over fold x seed, the full model's paired wins against each variant, how far a fold moves
across seeds, and issue 25's goals with how much each misses by. `--chosen_on` says on
which population the settings were chosen; the page repeats it.
"""

from __future__ import annotations

import json
import os
import pathlib
import textwrap

import numpy as np
from absl import flags

from stress_jax import cli, crossval, jsonio, results_page
from stress_jax.models.stressnet import StressNetConfig

DEFAULT_SEEDS = (0, 1, 2)
NOT_SEPARATE = "the reported folds themselves (no separate development population yet)"

FLAGS = flags.FlagValues()
_CONFIG = cli.define_config_flag(FLAGS)
_WORKDIR = cli.define_workdir(FLAGS, "Root of the variant/fold/seed workdirs.", "runs/ablation")
_RESULTS_DIR = flags.DEFINE_string(
  "results_dir", "docs", "Where results.md/.json/.png are written.", flag_values=FLAGS
)
_FOLD, _COLLECT = cli.define_fold_flags(FLAGS, "page")
_VARIANT = flags.DEFINE_list(
  "variant",
  None,
  f"Run only these variants (comma-separated; of {', '.join(crossval.VARIANTS)}).",
  flag_values=FLAGS,
)
_SEEDS = flags.DEFINE_list(
  "seeds",
  [str(s) for s in DEFAULT_SEEDS],
  "The seeds every (variant, fold) runs with.",
  flag_values=FLAGS,
)
_SEED = flags.DEFINE_integer(
  "seed", -1, "Run only this seed (one of --seeds); -1 = all of them.", flag_values=FLAGS
)
_SHARD = flags.DEFINE_string(
  "shard",
  "",
  "k/n: run only every n-th job starting at the k-th (0-based), so n processes share the list.",
  flag_values=FLAGS,
)
_CHOSEN_ON = flags.DEFINE_string(
  "chosen_on",
  NOT_SEPARATE,
  "The population (dataset config, seed, subjects) the settings "
  "were chosen on; the page states it.",
  flag_values=FLAGS,
)


class AblationError(cli.UserError):
  """A request the ablation cannot run; the message names the flag."""


def parse_seeds(values) -> list[int]:
  try:
    seeds = sorted({int(v) for v in values})
  except ValueError:
    raise AblationError(f"--seeds must be integers, got {','.join(map(str, values))}") from None
  if not seeds:
    raise AblationError("--seeds is empty")
  return seeds


def parse_shard(text: str) -> tuple[int, int]:
  if not text:
    return 0, 1
  try:
    k, n = (int(part) for part in text.split("/"))
  except ValueError:
    raise AblationError(f"--shard must look like k/n (e.g. 0/2), got {text!r}") from None
  if not 0 <= k < n:
    raise AblationError(f"--shard={text}: k must be in [0, n)")
  return k, n


def run_directory(workdir, variant: str, fold: int, seed: int) -> pathlib.Path:
  return crossval.fold_directory(workdir, variant, fold, True) / f"seed_{seed}"


def run_config(config, variant: str, fold: int, seed: int):
  config = crossval.fold_config(config, fold, variant)
  with config.unlocked():
    config.seed = int(seed)
  return config


def jobs(
  num_folds: int, seeds, fold=None, variant=None, seed=None, shard=(0, 1), config=None
) -> list:
  """(variant, fold, seed) to run, in order, this shard's share only.

  Seed-major: every variant of (fold 0, first seed), then fold 1, ..., then the next seed,
  so that a list cut short still holds whole paired comparisons on every fold it reached.
  `variant` is one name or a list of them; `config` leaves out a variant it already is
  (crossval._variants).
  """
  if isinstance(variant, str):
    variant = [variant]
  variants = crossval._variants(True, None if variant is None else list(variant), config)
  if seed is not None and seed not in seeds:
    raise AblationError(f"--seed={seed} is not one of --seeds={','.join(map(str, seeds))}")
  folds = range(num_folds) if fold is None else [fold]
  picked = [(v, f, s) for s in (seeds if seed is None else [seed]) for f in folds for v in variants]
  k, n = shard
  return picked[k::n]


def gather(workdir, num_folds: int, config=None) -> tuple[dict, list[str]]:
  """Every finished run under workdir: ({variant: [crossval fold row + "seed"]}, left out).

  With `config`, a run whose provenance.json records another config than this one's job
  (say, from before a default changed) is left out, and named as variant/fold/seed with
  the fields that differ, so the page never reports old runs as the current config's.
  """
  from stress_jax import provenance

  runs, left_out = {}, []
  # A variant the config already is gets no row: the full model's runs are its runs.
  for variant in crossval._variants(True, None, config):
    rows = []
    for fold in range(num_folds):
      folder = crossval.fold_directory(workdir, variant, fold, True)
      for path in sorted(folder.glob("seed_*/summary.json")):
        seed = int(path.parent.name.removeprefix("seed_"))
        recorded = provenance.read(path.parent) if config is not None else None
        if recorded is not None:
          current = provenance.config_fingerprint(run_config(config, variant, fold, seed))
          changed = provenance.changes({"config": recorded.get("config")}, {"config": current})
          if changed:
            left_out.append(f"{variant}/fold_{fold}/seed_{seed} ({', '.join(changed[:3])})")
            continue
        row = crossval._fold_row(json.loads(path.read_text()))
        row["seed"] = seed
        rows.append(row)
    runs[variant] = rows
  return runs, left_out


def model_line(config) -> str:
  """The full model's image-stream, attention, fusion and loss settings."""
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
  parts.append(
    f"modality dropout {model.modality_dropout:g}"
    if model.modality_dropout
    else "no modality dropout"
  )
  parts.append(
    "prediction = mean of fused and stream heads' logits"
    if model.combine_stream_logits
    else "prediction = fused classifier"
  )
  reference = model.image_reference
  parts.append(
    "image maps as they are"
    if not reference
    else f"image maps minus the clip's {reference} map"
    + (", beside the maps themselves" if model.image_reference_mode == "append" else "")
  )
  parts.append(f"landmark deviation from the clip's {model.landmark_reference}")
  return "Full model: " + "; ".join(parts) + " (see `docs/method.md`)."


def write_results(
  workdir, config, results_dir, seeds=DEFAULT_SEEDS, chosen_on=NOT_SEPARATE, chart=True
):
  """Gathers the finished runs and writes results.md/.json(/.png); returns the page's path."""
  num_folds = crossval.count_folds(config)
  runs, left_out = gather(workdir, num_folds, config)
  if not any(runs.values()):
    # A mistyped --workdir must not replace a committed page with an empty one.
    other = f" ({len(left_out)} of another config, e.g. {left_out[0]})" if left_out else ""
    raise AblationError(
      f"{workdir} holds no finished run of this config{other}; nothing to collect, so "
      f"{pathlib.Path(results_dir) / 'results.md'} is left as it was (check --workdir)"
    )
  table = results_page.collect(runs, num_folds, seeds, chosen_on, config)
  table["left_out"] = left_out
  return write_files(results_dir, table, config, model_line(config), chart)


def bar_chart(path, table: dict) -> pathlib.Path:
  """Grouped bars (one group per column, one bar per variant) with std error bars."""
  from stress_jax import plots

  plt = plots._pyplot()
  variants = table["variants"]
  columns = [
    (key, title)
    for key, title in results_page.COLUMNS
    if any(v["mean_std"].get(key, {}).get("n") for v in variants.values())
  ]
  names = list(variants)
  fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(columns) + 1), 3.8))
  width = 0.8 / max(len(names), 1)
  for i, name in enumerate(names):
    stats = [variants[name]["mean_std"].get(key) for key, _ in columns]
    means = [s["mean"] if s and s["n"] else np.nan for s in stats]
    stds = [s["std"] if s and s["n"] else 0.0 for s in stats]
    x = np.arange(len(columns)) + (i - (len(names) - 1) / 2) * width
    ax.bar(x, means, width, yerr=stds, capsize=2, label=name)
  ax.set_xticks(
    np.arange(len(columns)), [textwrap.fill(title, 18) for _, title in columns], fontsize=9
  )
  ax.axhline(0.5, color="grey", lw=0.8, ls=":")
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("mean ± std over folds × seeds")
  ax.legend(fontsize=7, ncol=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.25))
  ax.set_title("Ablations on held-out subjects (dotted: AUROC chance)")
  return plots._save(fig, path)


def _write_atomic(path: pathlib.Path, text: str) -> None:
  # Two ablation jobs may finish together; each replaces the page whole.
  partial = path.with_name(f".{path.name}.{os.getpid()}")
  partial.write_text(text)
  os.replace(partial, path)


def write_files(results_dir, table: dict, config, line: str, chart: bool = True) -> pathlib.Path:
  """results.json, results.png (with `chart`) and results.md; returns the page's path."""

  results_dir = pathlib.Path(results_dir)
  results_dir.mkdir(parents=True, exist_ok=True)
  if chart:
    # Same reason as _write_atomic; the suffix stays .png for matplotlib.
    partial = results_dir / f".{os.getpid()}.results.png"
    os.replace(bar_chart(partial, table), results_dir / "results.png")
  _write_atomic(results_dir / "results.json", jsonio.dumps(table, indent=2) + "\n")
  path = results_dir / "results.md"
  _write_atomic(path, results_page.page(table, config, line))
  return path


def run(
  config,
  workdir,
  results_dir,
  fold=None,
  variant=None,
  seeds=DEFAULT_SEEDS,
  seed=None,
  shard=(0, 1),
  chosen_on=NOT_SEPARATE,
  collect_only=False,
  train_fn=None,
):
  """Trains this shard's unfinished jobs (unless collect_only), then writes the page.

  `train_fn(config, workdir) -> summary` is train.train_and_evaluate unless a test swaps it.
  Returns (the page's path, or None when preempted before any run finished; whether a job
  was preempted). Raises AblationError when no finished run of this config is found.
  """
  from stress_jax import input_pipeline
  from stress_jax.data import build

  seeds = parse_seeds(seeds)
  preempted = False
  if not collect_only:
    train_fn = train_fn or crossval._train
    build.ensure_built(config.data)  # as train.py does: a fresh machine has no data yet
    handle = input_pipeline.open_dataset(config.data)
    num_folds = crossval.count_folds(config, handle)
    if fold is not None and not 0 <= fold < num_folds:
      raise AblationError(f"--fold={fold} is out of range: this protocol has {num_folds} folds")
    for v, f, s in jobs(num_folds, seeds, fold, variant, seed, shard, config):
      directory = run_directory(workdir, v, f, s)
      job_config = run_config(config, v, f, s)
      if crossval.is_finished(directory, job_config, handle):
        continue
      print(f"== {v} fold {f} seed {s}", flush=True)
      summary = train_fn(job_config, directory)
      if summary.get("preempted"):
        # The exit status the interrupted run asks for (130 after Ctrl-C, else 143).
        preempted = summary.get("exit_code", True)
        break
      # The page after every job (the chart, a second's drawing, once at the end).
      write_results(workdir, config, results_dir, seeds, chosen_on, chart=False)
  try:
    return write_results(workdir, config, results_dir, seeds, chosen_on), preempted
  except AblationError:
    if preempted:  # stopped before any run finished: no page yet, and no error either
      return None, preempted
    raise


def main(argv):
  cli.unexpected_arguments(argv)
  cli.quiet_logging("warning")
  page, preempted = run(
    _CONFIG.value,
    _WORKDIR.value,
    _RESULTS_DIR.value,
    fold=None if _FOLD.value < 0 else _FOLD.value,
    variant=_VARIANT.value,
    seeds=_SEEDS.value,
    seed=None if _SEED.value < 0 else _SEED.value,
    shard=parse_shard(_SHARD.value),
    chosen_on=_CHOSEN_ON.value,
    collect_only=_COLLECT.value,
  )
  if page is not None:
    print(page.read_text(), flush=True)
  if preempted:
    from stress_jax import train

    raise SystemExit(train.PREEMPTED_EXIT_CODE if preempted is True else int(preempted))


if __name__ == "__main__":
  cli.run(main, FLAGS, "ablation")
