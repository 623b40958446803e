"""The short summary printed at the end of a run."""

from __future__ import annotations


def _figure(value) -> str:
  """A metric to 3 decimals; n/a where it is undefined (e.g. a class never predicted)."""
  return "n/a" if value is None or value != value else f"{value:.3f}"


def attention_lines(figures: dict | None) -> list[str]:
  """Localisation AUROC and mass ratios (stress_jax/faithfulness.py), one line each."""
  if not figures:
    return []
  aurocs = {k[: -len("_auroc")]: v for k, v in figures.items() if k.endswith("_auroc")}
  ratios = {k: v for k, v in figures.items() if not k.endswith("_auroc")}
  lines = []
  if aurocs:
    lines.append(
      "   attention localisation AUROC (0.5 = chance, 1.0 = perfect): "
      + "  ".join(f"{k} {v:.3f}" for k, v in aurocs.items())
    )
  if ratios:
    lines.append(
      "   attention mass ratio (1.0 = uniform, ceiling 1 / cue share): "
      + "  ".join(f"{k} {v:.2f}" for k, v in ratios.items())
    )
  return lines


def format_summary(summary: dict, workdir) -> str:
  test = summary["test"]
  lines = [
    f"== {summary['dataset']} fold {summary['fold']}: held-out subjects "
    f"{', '.join(summary['test_subjects'])} (checkpoint of step {summary['selected_step']}, "
    + (
      "the last)"
      if summary.get("report_checkpoint") == "last"
      else "chosen on validation subjects)"
    ),
    f"   accuracy {test['accuracy']:.3f}   balanced accuracy {test['balanced_accuracy']:.3f}   "
    f"macro-F1 {test['macro_f1']:.3f}   clips {test['num_clips']}",
  ]
  for name, recall in test["recall"].items():
    lines.append(
      f"   {name:>16}: recall {_figure(recall)}  precision {_figure(test['precision'][name])}"
    )
  if test.get("absent_classes"):
    lines.append(f"   no test clip of: {', '.join(test['absent_classes'])} (their recall is n/a)")
  lines += attention_lines(summary.get("attention_faithfulness"))
  lines.append(f"   details: {workdir}/summary.json, TensorBoard: {workdir}/tensorboard")
  return "\n".join(lines)


def print_summary(summary: dict, workdir) -> None:
  print(format_summary(summary, workdir), flush=True)


def _metric_line(name: str, block: dict, count_key: str) -> str:
  auc = block.get("roc_auc_macro")
  auc_text = "n/a" if auc is None or auc != auc else f"{auc:.3f}"
  return (
    f"   {name:<6} accuracy {block['accuracy']:.3f}   balanced accuracy "
    f"{block['balanced_accuracy']:.3f}   macro-F1 {block['macro_f1']:.3f}   ROC-AUC {auc_text}"
    f"   {count_key} {block[count_key]}"
  )


def format_evaluation(result: dict) -> str:
  """What `python -m stress_jax.evaluate` prints: clip and video level, faithfulness, paths."""
  lines = [
    f"== {result['dataset']} fold {result['fold']}, {result['split']} subjects "
    f"({len(result['subjects'])}), checkpoint {result['checkpoint']} (step {result['step']})",
    _metric_line("clips", result["clip"], "num_clips"),
  ]
  if "video" in result:
    lines.append(_metric_line("videos", result["video"], "num_videos"))
  for name, recall in result["clip"]["recall"].items():
    lines.append(
      f"   {name:>16}: recall {_figure(recall)}  "
      f"precision {_figure(result['clip']['precision'][name])}"
    )
  lines += attention_lines(result.get("attention_faithfulness"))
  if "output_dir" in result:
    lines.append(f"   details: {result['output_dir']}/metrics.json")
  return "\n".join(lines)
