"""The short summary printed at the end of a run."""

from __future__ import annotations


def format_summary(summary: dict, workdir) -> str:
  test = summary["test"]
  lines = [
    f"== {summary['dataset']} fold {summary['fold']}: held-out subjects "
    f"{', '.join(summary['test_subjects'])} (checkpoint of step {summary['selected_step']}, "
    "chosen on validation subjects)",
    f"   accuracy {test['accuracy']:.3f}   balanced accuracy {test['balanced_accuracy']:.3f}   "
    f"macro-F1 {test['macro_f1']:.3f}   clips {test['num_clips']}",
  ]
  for name, recall in test["recall"].items():
    lines.append(f"   {name:>16}: recall {recall:.3f}  precision {test['precision'][name]:.3f}")
  faithfulness = summary.get("attention_faithfulness")
  if faithfulness:
    lines.append(
      "   attention faithfulness (1.0 = uniform): "
      + "  ".join(f"{k} {v:.2f}" for k, v in faithfulness.items())
    )
  lines.append(f"   details: {workdir}/summary.json, TensorBoard: {workdir}/tensorboard")
  return "\n".join(lines)


def print_summary(summary: dict, workdir) -> None:
  print(format_summary(summary, workdir), flush=True)
