"""The Yonsei Stress Image Database: one instance of the feature-map database layout.

`<root>/<subject>/<stage>/<YYYYMMDD_hhmmss_ms>.npy`, float32 (7, 7, 256). Subject
folders are numbers ('01', 'S01', 'subject_1' -> split 's01'); stage folders are the
four session names (case, spaces, '_' and '-' do not matter), and every subject should
have all four. Records store the stage as label (0..3, the session order); a task maps
it when clips are read (`TASKS`), so one build serves all three tasks.
"""

from __future__ import annotations

import re

import numpy as np

from stress_jax.featuredb.layout import Layout

STAGE_NAMES = (
  "Native Language Script Reading",
  "Native Language Interview",
  "Non-native Language Script Reading",
  "Non-native Language Interview",
)
NUM_SUBJECTS = 50
NUM_FRAMES_TOTAL = 2_020_556

# task -> (class names in label order, stored stage label -> task label)
LABEL_TASKS = {
  "4class": (tuple(STAGE_NAMES), (0, 1, 2, 3)),
  # The two script readings are one class; each interview keeps its own.
  "3class": (
    ("Script Reading", "Native Language Interview", "Non-native Language Interview"),
    (0, 1, 0, 2),
  ),
  # Interviews are the stress condition, script readings the baseline.
  "binary": (("No Stress", "Stress"), (0, 1, 0, 1)),
}
TASKS = tuple(LABEL_TASKS)


def _check_task(task: str) -> None:
  if task not in LABEL_TASKS:
    raise ValueError(f"Unknown Yonsei task {task!r}; expected one of {TASKS}.")


def task_label_names(task: str) -> list[str]:
  """Class names of a task, in label order."""
  _check_task(task)
  return list(LABEL_TASKS[task][0])


def task_label_map(task: str) -> np.ndarray:
  """(4,) int32: stored stage label -> task label. Use as `task_label_map(task)[label]`."""
  _check_task(task)
  return np.asarray(LABEL_TASKS[task][1], dtype=np.int32)


def num_classes_for_task(task: str) -> int:
  return len(task_label_names(task))


def _normalize_folder(name: str) -> str:
  # Spaces, underscores and hyphens are interchangeable in the released folder names.
  return " ".join(re.split(r"[\s_\-]+", name.strip().lower())).strip()


_STAGE_BY_KEY = {_normalize_folder(name): name for name in STAGE_NAMES}
_SUBJECT_RE = re.compile(r"^(?:s|subject)?[\s_\-]*0*(\d+)$", re.IGNORECASE)


def canonical_stage(folder_name: str) -> str | None:
  """The stage a folder holds, or None. Case, spaces, '_' and '-' do not matter."""
  return _STAGE_BY_KEY.get(_normalize_folder(folder_name))


def subject_id(folder_name: str) -> str | None:
  """'01', '1', 'S01', 'subject_1' -> 's01'; anything else -> None."""
  match = _SUBJECT_RE.match(folder_name.strip())
  if not match or int(match.group(1)) == 0:
    return None
  return f"s{int(match.group(1)):02d}"


LAYOUT = Layout(
  label_names=STAGE_NAMES,
  subject=subject_id,
  label=canonical_stage,
  required_labels=True,
  stem_kinds=("timestamp",),
  name="Yonsei Stress Image Database",
)
