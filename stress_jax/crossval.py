"""Every fold of the subject-independent protocol, and the ablations, tabulated.

  python -m stress_jax.crossval --config=stress_jax/configs/demo.py --workdir=runs/cv
  python -m stress_jax.crossval --config=... --workdir=runs/cv --fold=3   # one fold (a cloud job)
  python -m stress_jax.crossval --config=... --workdir=runs/cv --collect  # only the tables
  python -m stress_jax.crossval --config=... --workdir=runs/cv --ablations [--fold=i]
  ... plus any config override, e.g. --config.train.num_epochs=5

Each fold trains with train.train_and_evaluate in `<workdir>/fold_<i>` (with
--ablations: `<workdir>/<variant>/fold_<i>` for the full model and each switch below),
so an interrupted fold resumes from its checkpoints and a finished fold (one with a
summary.json) is skipped. After every fold, and with --collect, the finished folds'
summaries are gathered into `<workdir>/crossval.json` and `<workdir>/crossval.md`:
per fold the held-out subjects, selected step and test metrics, and per variant the
mean +/- sample standard deviation over the folds finished so far (n/N says how many).

Ablation variants (the paper's model switches, one at a time, and the authors' objective):
  full                   the config as given
  no_spatial_attention   model.spatial_attention=False
  no_temporal_attention  model.temporal_attention=False (uniform frame weights)
  no_landmark_stream     model.landmark_stream=False
  no_image_stream        model.image_stream=False (landmarks only)
  triplet                train.objective=triplet (stress_jax/objectives.py)
`python -m stress_jax.ablation` runs the same variants one by one and writes docs/results.md.
"""

from __future__ import annotations

import functools
import json
import pathlib

from absl import flags

from stress_jax import cli, jsonio, storage

FLAGS = flags.FlagValues()
_CONFIG = cli.define_config_flag(FLAGS)
_WORKDIR = cli.define_workdir(FLAGS, "Root of the fold workdirs and the tables.", required=True)
_FOLD, _COLLECT = cli.define_fold_flags(FLAGS, "tables")
_ABLATIONS = flags.DEFINE_boolean(
  "ablations", False, "Also the four model switches.", flag_values=FLAGS
)
_ALLOW_CHANGE = flags.DEFINE_list(
  "allow_config_change",
  [],
  "Config fields (or sections) that may differ from folds already run, e.g. "
  "train.num_epochs: finished folds then train on instead of being skipped.",
  flag_values=FLAGS,
)

# Variant -> config overrides ("section.field": value).
VARIANTS = {
  "full": {},
  "no_spatial_attention": {"model.spatial_attention": False},
  "no_temporal_attention": {"model.temporal_attention": False},
  "no_landmark_stream": {"model.landmark_stream": False},
  "no_image_stream": {"model.image_stream": False},
  "triplet": {"train.objective": "triplet"},
}
# (summary key, column title) of the test metrics in the tables.
METRICS = (
  ("accuracy", "accuracy"),
  ("balanced_accuracy", "balanced acc."),
  ("macro_f1", "macro-F1"),
  ("roc_auc_macro", "ROC-AUC"),
)
# Attention scores (stress_jax/faithfulness.py): localisation AUROC, then mass ratios.
FAITHFULNESS = (
  "temporal_auroc",
  "landmark_temporal_auroc",
  "landmark_temporal_visible_auroc",
  "spatial_auroc",
  "temporal",
  "spatial",
  "landmark_temporal",
)


class CrossValError(cli.UserError):
  """A problem with the request; the message is one line naming it."""


def count_folds(config, handle=None) -> int:
  from stress_jax import input_pipeline, protocols

  handle = handle or input_pipeline.open_dataset(config.data)
  try:
    return protocols.num_folds(config.protocol, handle.subjects)
  except ValueError as error:
    raise CrossValError(str(error)) from None


def is_finished(directory, config, handle, allow=()) -> bool:
  """A fold with a summary of this very config and dataset is finished.

  One that finished with another fingerprint is refused (naming the fields), unless
  `allow` covers every difference: then it trains on (e.g. more epochs).
  """
  from stress_jax import provenance

  directory = storage.as_path(directory)
  if not (directory / "summary.json").is_file():
    return False
  recorded = provenance.read(directory)
  if recorded is None:  # a fold written before provenance.json existed
    return True
  current = provenance.fingerprint(config, handle)
  if not provenance.changes(recorded, current):
    return True
  # An evaluation-only change (which checkpoint to report) re-evaluates, never retrains.
  changed = provenance.training_changes(recorded, current, allow)
  if changed:
    raise CrossValError(
      f"{directory} finished with another config or dataset ({', '.join(changed)} changed); "
      f"use a new --workdir, or --allow_config_change={','.join(changed)} to train it on"
    )
  return False


def fold_directory(workdir, variant: str, fold: int, ablations: bool) -> pathlib.Path:
  workdir = storage.as_path(workdir)
  return (workdir / variant if ablations else workdir) / f"fold_{fold}"


def fold_config(config, fold: int, variant: str):
  """A copy of `config` for one fold of one variant (the original is left alone)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.protocol.fold = int(fold)
    for key, value in VARIANTS[variant].items():
      section, field = key.split(".")
      config[section][field] = value
  return config


def is_full_model(config, variant: str) -> bool:
  """The variant changes nothing in this config (e.g. triplet when the objective is already
  triplet): its runs would be the full model's, trained again."""
  return variant != "full" and all(
    config[key.split(".")[0]][key.split(".")[1]] == value
    for key, value in VARIANTS[variant].items()
  )


def _train(config, workdir, allow=()):
  from stress_jax import train

  return train.train_and_evaluate(config, workdir, allow)


def _variants(ablations: bool, variants=None, config=None) -> list[str]:
  """The variants to train or tabulate. With `config`, one that changes nothing in it
  (is_full_model) is left out when not named, and refused when named."""
  if variants is None:
    named, variants = False, list(VARIANTS) if ablations else ["full"]
  else:
    named, variants = True, list(variants)
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise CrossValError(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
  same = [v for v in variants if config is not None and is_full_model(config, v)]
  if same and named:
    overrides = ", ".join(f"{k}={v}" for k, v in VARIANTS[same[0]].items())
    raise CrossValError(
      f"--variant={same[0]} is the full model under this config (it sets {overrides} already)"
    )
  return [v for v in variants if v not in same]


def run(
  config,
  workdir,
  fold: int | None = None,
  ablations: bool = False,
  train_fn=None,
  variants=None,
  allow=(),
) -> dict:
  """Trains the requested folds (skipping finished ones), then writes the tables.

  Returns {"trained": [(variant, fold)], "skipped": [...], "preempted": bool, "table": ...}.
  `train_fn(config, workdir) -> summary` is train.train_and_evaluate unless a test swaps it.
  `variants` (with ablations=True) trains only those; the tables still list every one.
  """
  from stress_jax import input_pipeline
  from stress_jax.data import build

  train_fn = train_fn or functools.partial(_train, allow=tuple(allow))
  build.ensure_built(config.data)
  handle = input_pipeline.open_dataset(config.data)
  num_folds = count_folds(config, handle)
  if fold is not None and not 0 <= fold < num_folds:
    raise CrossValError(f"--fold={fold} is out of range: this protocol has {num_folds} folds")
  folds = range(num_folds) if fold is None else [fold]
  variants = _variants(ablations, variants if ablations else None, config)
  trained, skipped, preempted, exit_code = [], [], False, 0
  for variant in variants:
    for k in folds:
      directory = fold_directory(workdir, variant, k, ablations)
      if is_finished(directory, fold_config(config, k, variant), handle, allow):
        skipped.append((variant, k))
        continue
      print(f"== {variant} fold {k}/{num_folds}: {directory}", flush=True)
      summary = train_fn(fold_config(config, k, variant), directory)
      if summary.get("preempted"):
        # 143 after SIGTERM, 130 after Ctrl-C (stress_jax/train.py).
        preempted, exit_code = True, summary.get("exit_code", 143)
        break
      trained.append((variant, k))
      write_tables(workdir, collect(workdir, num_folds, ablations, config), config)
    if preempted:
      break
  table = collect(workdir, num_folds, ablations, config)
  write_tables(workdir, table, config)
  return {
    "trained": trained,
    "skipped": skipped,
    "preempted": preempted,
    "exit_code": exit_code,
    "table": table,
  }


def _fold_row(summary: dict) -> dict:
  test = summary["test"]
  row = {
    "fold": int(summary["fold"]),
    "test_subjects": list(summary["test_subjects"]),
    "selected_step": int(summary["selected_step"]),
    "num_clips": int(test["num_clips"]),
    "absent_classes": list(test.get("absent_classes") or []),
  }
  for key, _ in METRICS:
    value = test.get(key)
    row[key] = None if value is None else float(value)
  faithfulness = summary.get("attention_faithfulness") or {}
  for key in FAITHFULNESS:
    if key in faithfulness:
      row[f"faithfulness_{key}"] = float(faithfulness[key])
  return row


def collect(workdir, num_folds: int, ablations: bool, config=None) -> dict:
  """Finished folds' summaries -> per-variant fold rows and mean/std (crossval.json).

  With `config`, a variant that changes nothing in it (is_full_model) gets no row.
  """
  from stress_jax import metrics

  variants = _variants(ablations, None, config)
  table = {"num_folds": int(num_folds), "ablations": bool(ablations), "variants": {}}
  for variant in variants:
    rows = []
    for k in range(num_folds):
      path = fold_directory(workdir, variant, k, ablations) / "summary.json"
      if path.is_file():
        try:
          summary = json.loads(path.read_text())
        except ValueError as error:
          raise CrossValError(
            f"{path} is not valid JSON ({error}); remove it and that fold is evaluated again"
          ) from None
        rows.append(_fold_row(summary))
    keys = [key for key, _ in METRICS] + [f"faithfulness_{k}" for k in FAITHFULNESS]
    aggregate = {
      key: metrics.mean_std([r.get(key) for r in rows])
      for key in keys
      if any(r.get(key) is not None for r in rows)
    }
    table["variants"][variant] = {"folds": rows, "finished": len(rows), "mean_std": aggregate}
  return table


def _cell(stats: dict | None) -> str:
  if not stats or not stats["n"]:
    return "-"
  cell = f"{stats['mean']:.3f} ± {stats['std']:.3f}"
  # Say when a mean leaves folds out (e.g. ROC-AUC undefined where a class is absent).
  dropped = stats.get("dropped", 0)
  return f"{cell} (n={stats['n']}, {dropped} undefined)" if dropped else cell


def _value(value) -> str:
  return "-" if value is None else f"{value:.3f}"


def faithfulness_title(key: str) -> str:
  """Column title of an attention score: "spatial AUROC", "temporal mass ratio"."""
  if key.endswith("_auroc"):
    return f"{key[: -len('_auroc')].replace('_', ' ')} AUROC"
  return f"{key.replace('_', ' ')} mass ratio"


def markdown(table: dict, title: str) -> str:
  num_folds = table["num_folds"]
  faith_keys = [
    k
    for k in FAITHFULNESS
    if any(f"faithfulness_{k}" in v["mean_std"] for v in table["variants"].values())
  ]
  faith_titles = [faithfulness_title(k) for k in faith_keys]
  lines = [f"# {title}", ""]
  if table["ablations"]:
    lines += [
      "## Ablations (test subjects, mean ± sample std over finished folds)",
      "",
    ]
    header = ["variant", "folds", *(t for _, t in METRICS), *faith_titles]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, variant in table["variants"].items():
      cells = [_cell(variant["mean_std"].get(key)) for key, _ in METRICS]
      cells += [_cell(variant["mean_std"].get(f"faithfulness_{k}")) for k in faith_keys]
      lines.append(f"| {name} | {variant['finished']}/{num_folds} | " + " | ".join(cells) + " |")
    lines.append("")
  for name, variant in table["variants"].items():
    if table["ablations"]:
      lines += [f"## {name}", ""]
    header = ["fold", "test subjects", "step", "clips", *(t for _, t in METRICS), *faith_titles]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in variant["folds"]:
      cells = [
        str(row["fold"]),
        ", ".join(row["test_subjects"]),
        str(row["selected_step"]),
        str(row["num_clips"]),
        *(_value(row.get(key)) for key, _ in METRICS),
        *(_value(row.get(f"faithfulness_{k}")) for k in faith_keys),
      ]
      lines.append("| " + " | ".join(cells) + " |")
    summary = [
      f"**mean ± std** ({variant['finished']}/{num_folds} folds)",
      "",
      "",
      "",
      *(_cell(variant["mean_std"].get(key)) for key, _ in METRICS),
      *(_cell(variant["mean_std"].get(f"faithfulness_{k}")) for k in faith_keys),
    ]
    lines += ["| " + " | ".join(summary) + " |", ""]
  return "\n".join(lines)


def write_tables(workdir, table: dict, config=None) -> None:

  workdir = storage.as_path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  title = "Cross-validation"
  if config is not None:
    protocol = config.protocol
    kind = "leave-one-subject-out" if protocol.kind == "loso" else f"{protocol.kind}"
    title = f"Cross-validation: {config.data.name}, {kind}, {table['num_folds']} folds"
  jsonio.write(workdir / "crossval.json", table)
  (workdir / "crossval.md").write_text(markdown(table, title))


def main(argv):
  cli.unexpected_arguments(argv)
  cli.quiet_logging("warning")
  from stress_jax import distributed

  distributed.initialize_from_flags()
  config = _CONFIG.value
  fold = None if _FOLD.value < 0 else _FOLD.value
  if _COLLECT.value:
    table = collect(_WORKDIR.value, count_folds(config), _ABLATIONS.value, config)
    write_tables(_WORKDIR.value, table, config)
    result = {"preempted": False}
  else:
    result = run(config, _WORKDIR.value, fold, _ABLATIONS.value, allow=_ALLOW_CHANGE.value)
  print((storage.as_path(_WORKDIR.value) / "crossval.md").read_text(), flush=True)
  if result["preempted"]:
    from stress_jax import train

    raise SystemExit(result.get("exit_code") or train.PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
  from stress_jax import distributed

  distributed.define_flags()
  cli.run(main, FLAGS, "crossval")
