"""How far the same fold moves across seeds on the results page, beside one run's accuracy.

One run of one fold is a single draw: on another CPU, or with another seed, the same
command lands elsewhere (issue 25 saw 6 points of accuracy between two machines). The
ablation's results.json (stress_jax/results_page.py) holds the full model's runs of
every fold over several seeds; `python train.py` and the README's demo table print the
range the run's fold took there, or say plainly that the page has no figure for this
config and fold.
"""

from __future__ import annotations

import json
import pathlib

# The results the repository ships (docs/ is not part of an installed wheel).
RESULTS_JSON = pathlib.Path(__file__).resolve().parents[1] / "docs" / "results.json"
SHOWN_PATH = "docs/results.json"
MAX_LISTED = 4


def fold_range(config, results_path=None) -> tuple[dict | None, str]:
  """(the fold's accuracy across seeds {mean, std, n, min, max} or None, why not).

  The page's runs count only when their config equals `config` in every field but the
  seed and the fold (and those provenance ignores: paths, worker counts).
  """
  from stress_jax import provenance, results_page

  path = pathlib.Path(results_path) if results_path else RESULTS_JSON
  if not path.is_file():
    return None, f"{SHOWN_PATH} is not here (it ships with the repository, not the package)"
  table = json.loads(path.read_text())
  if "config" not in table or "seeds" not in table:
    return None, f"{SHOWN_PATH} predates the per-seed results page"
  ours = results_page.comparable_config(config)
  theirs = table["config"]

  # provenance's own comparison: a field added after the page's runs matches its old value.
  differ = provenance.changes({"config": theirs}, {"config": ours})
  if differ:
    listed = ", ".join(differ[:MAX_LISTED])
    more = f" and {len(differ) - MAX_LISTED} more" if len(differ) > MAX_LISTED else ""
    return None, f"its runs used another config ({listed}{more} differ)"
  fold = int(config.protocol.fold)
  stats = table["variants"].get("full", {}).get("fold_across_seeds", {}).get(str(fold))
  if not stats or not stats.get("n"):
    return None, f"it has no finished run of fold {fold}"
  return stats, ""


def range_text(config, accuracy=None, results_path=None) -> str:
  """One sentence: the fold's range across seeds on the page, or why there is none."""
  fold = int(config.protocol.fold)
  stats, why = fold_range(config, results_path)
  if stats is None:
    return f"no seed range for fold {fold} on the results page: {why}"
  text = (
    f"{stats['min']:.3f}-{stats['max']:.3f} across {stats['n']} seeds of fold {fold} on "
    f"docs/results.md (mean {stats['mean']:.3f} ± {stats['std']:.3f})"
  )
  if accuracy is not None and not stats["min"] <= accuracy <= stats["max"]:
    text += "; this run lies outside it"
  return text


def summary_line(config, summary: dict, results_path=None) -> str:
  """The line `python train.py` prints after its summary."""
  accuracy = (summary.get("test") or {}).get("accuracy")
  shown = "n/a" if accuracy is None else f"{accuracy:.3f}"
  return f"held-out accuracy {shown}; " + range_text(config, accuracy, results_path)
