"""Writes a run's results into a marked block of a markdown file (the README's demo table).

  python -m stress_jax.readme_results --workdir=runs/demo --markdown=README.md

The block between `<!-- demo-results:start -->` and `<!-- demo-results:end -->` is
replaced by a table built from `<workdir>/summary.json`, so the figures a reader sees
are the ones the run wrote, never typed by hand.
"""

from __future__ import annotations

import json

from absl import flags

from stress_jax import cli, storage

START = "<!-- demo-results:start -->"
END = "<!-- demo-results:end -->"

FLAGS = flags.FlagValues()
_WORKDIR = cli.define_workdir(FLAGS, "A finished run's workdir.", "runs/demo")
_MARKDOWN = flags.DEFINE_string(
  "markdown", "README.md", "The file whose marked block is rewritten.", flag_values=FLAGS
)


class ResultsError(cli.UserError):
  """No finished run, or no marked block to write into."""


def _f(value, digits: int = 3) -> str:
  return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def _duration(seconds) -> str:
  if seconds is None:
    return "n/a"
  minutes, rest = divmod(int(round(seconds)), 60)
  return f"{minutes} min {rest} s"


def results_table(summary: dict, seed_range_text: str | None = None) -> str:
  """The markdown table of one run's summary.json (and, if given, the fold's seed range)."""
  test = summary["test"]
  names = list(summary["label_names"])
  attention = summary.get("attention_faithfulness") or {}
  rows = [
    (
      "wall time of this run (dataset build included)",
      f"{_duration(summary.get('wall_seconds'))} ({summary.get('epochs', 'n/a')} epochs, "
      f"{summary.get('steps', 'n/a')} steps)",
    ),
    (
      "held-out subjects (clips)",
      f"{len(summary['test_subjects'])} ({test['num_clips']}); checkpoint of step "
      f"{summary['selected_step']} "
      + (
        "(the last)"
        if summary.get("report_checkpoint") == "last"
        else f"chosen on {len(summary['val_subjects'])} validation subjects"
      ),
    ),
    (
      "accuracy / balanced accuracy / macro-F1",
      f"{_f(test['accuracy'])} / {_f(test['balanced_accuracy'])} / {_f(test['macro_f1'])}",
    ),
  ]
  if seed_range_text is not None:
    rows.append(("the same fold across seeds (results page)", seed_range_text))
  rows += [
    (
      "recall " + " / ".join(names),
      " / ".join(_f(test["recall"][name]) for name in names),
    ),
  ]
  labels = {
    "temporal_auroc": "temporal attention AUROC, image stream (cue frames vs others)",
    "landmark_temporal_auroc": "temporal attention AUROC, landmark stream (every cue frame)",
    "landmark_temporal_visible_auroc": (
      "temporal attention AUROC, landmark stream (frames of cues that move the points)"
    ),
    "spatial_auroc": "spatial attention AUROC (cue region vs rest of the face)",
    "temporal": "temporal attention mass ratio, image stream",
    "landmark_temporal": "temporal attention mass ratio, landmark stream",
    "spatial": "spatial attention mass ratio",
  }
  for key, label in labels.items():
    if key in attention:
      rows.append((label, _f(attention[key], 3 if key.endswith("auroc") else 2)))
  lines = ["| | |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in rows]
  return "\n".join(lines)


def _seed_range(workdir, summary: dict) -> str:
  from stress_jax import seed_range

  config_path = workdir / "config.json"
  if not config_path.exists():
    return "no seed range: the workdir has no config.json to compare with the page's"
  import ml_collections

  config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  return seed_range.range_text(config, summary["test"].get("accuracy"))


def update(markdown: str, table: str) -> str:
  start, end = markdown.find(START), markdown.find(END)
  if start < 0 or end < start:
    raise ResultsError(f"no {START} ... {END} block to write into")
  return markdown[: start + len(START)] + "\n" + table + "\n" + markdown[end:]


def main(argv):
  cli.unexpected_arguments(argv)
  path = storage.as_path(_WORKDIR.value) / "summary.json"
  if not path.exists():
    raise ResultsError(f"{path} does not exist: the run has not finished")
  summary = json.loads(path.read_text())
  table = results_table(summary, _seed_range(path.parent, summary))
  markdown = storage.as_path(_MARKDOWN.value)
  if not markdown.exists():
    raise ResultsError(f"{markdown} does not exist")
  markdown.write_text(update(markdown.read_text(), table))
  print(table)


if __name__ == "__main__":
  cli.run(main, FLAGS, "readme_results")
