"""Where a feature-map database keeps its frames, and how its folders are scanned.

  DIR/database.json                        optional metadata (label order, fps, trunk, ...)
  DIR/<subject>/<label>/<stem>.npy         one (7, 7, 256) float32 or float16 map per frame
  DIR/<subject>/<label>/_landmarks.npz     optional: stem -> (68, 2) float32 crop units

A stem is a capture timestamp `YYYYMMDD_hhmmss_ms` or a non-negative integer frame
index. Names starting with '_' or '.' (and database.json) belong to the database and are
never reported as strays. A `Layout` says which folder names are subjects and labels;
the general one takes them as they are, `featuredb.yonsei` normalises the Yonsei names.
Full description: docs/feature_database.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np

FEATURE_SHAPE = (7, 7, 256)
FEATURE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
FLOAT16_MAX = float(np.finfo(np.float16).max)
FLOAT16_MIN_NORMAL = float(np.finfo(np.float16).tiny)  # 2**-14
METADATA_NAME = "database.json"
LANDMARKS_NAME = "_landmarks.npz"

PROBLEM_KINDS = (
  "unreadable",
  "truncated",
  "bad_size",
  "wrong_shape",
  "wrong_dtype",
  "bad_name",
  "duplicate_frame",
  "nonfinite",
  "float16_overflow",
  "load_error",
  "bad_landmarks",
  "stray_file",
  "unexpected_folder",
  "missing_stage",
  "empty_recording",
  "no_clips",
)


def problem(kind: str, path: str, detail: str = "") -> dict[str, str]:
  assert kind in PROBLEM_KINDS, kind
  return {"kind": kind, "path": path, "detail": detail}


def rel(path: str, root: str) -> str:
  return os.path.relpath(path, root).replace(os.sep, "/")


def merge_stats(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
  """Counters add up; keys starting with 'max_' keep the maximum. Updates `total`."""
  for key, value in part.items():
    if key.startswith("max_"):
      total[key] = max(total.get(key, 0.0), value)
    else:
      total[key] = total.get(key, 0) + value
  return total


def is_private(name: str) -> bool:
  """Names the database itself uses (metadata, landmarks, hidden files): never strays."""
  return name.startswith(("_", ".")) or name == METADATA_NAME


# --------------------------------------------------------------------------- stems

_TIMESTAMP_RE = re.compile(r"^(\d{8})_(\d{6})_(\d{1,3})$")
_INDEX_RE = re.compile(r"^\d{1,12}$")
_EPOCH = datetime.datetime(1970, 1, 1)


def parse_timestamp_ms(stem: str) -> int | None:
  """'YYYYMMDD_hhmmss_ms' -> milliseconds since 1970 (None if not a valid timestamp).

  The last field is the millisecond of the second as an integer (1-3 digits), so
  '..._5' and '..._005' are the same instant. Exact integer arithmetic keeps ordering
  and gaps free of float rounding; full date parsing makes midnight crossings safe.
  """
  match = _TIMESTAMP_RE.match(stem)
  if not match:
    return None
  day, clock = match.group(1), match.group(2)
  try:
    moment = datetime.datetime(
      int(day[:4]), int(day[4:6]), int(day[6:]), int(clock[:2]), int(clock[2:4]), int(clock[4:])
    )
  except ValueError:
    return None
  delta = moment - _EPOCH
  return (delta.days * 86_400 + delta.seconds) * 1000 + int(match.group(3))


def format_timestamp(ms: int) -> str:
  """Inverse of `parse_timestamp_ms` (zero-padded milliseconds)."""
  moment = _EPOCH + datetime.timedelta(milliseconds=ms)
  return f"{moment:%Y%m%d_%H%M%S}_{ms % 1000:03d}"


def parse_index(stem: str) -> int | None:
  """'000123' -> 123: an integer frame index (None if the stem is not one)."""
  return int(stem) if _INDEX_RE.match(stem) else None


def format_index(index: int) -> str:
  return f"{index:06d}"


# ------------------------------------------------------------------------- layouts


@dataclasses.dataclass(frozen=True)
class Layout:
  """Which folders are subjects and labels, and which stems a recording may use.

  `subject(folder) -> split name or None`, `label(folder) -> label name or None`.
  With `required_labels`, a subject lacking one of `label_names` is reported
  (`missing_stage`). `stem_kinds` lists the accepted stems: "timestamp", "index".
  """

  label_names: tuple[str, ...]
  subject: Callable[[str], str | None]
  label: Callable[[str], str | None]
  required_labels: bool = False
  stem_kinds: tuple[str, ...] = ("timestamp", "index")
  name: str = "feature database"


_SPLIT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def general_subject(folder: str) -> str | None:
  # Subject folders become TFDS split names, which allow only these characters.
  return folder if _SPLIT_RE.match(folder) else None


def read_metadata(root: str) -> dict[str, Any]:
  """DIR/database.json as a dict ({} when absent); a broken file is a one-line error."""
  path = os.path.join(root, METADATA_NAME)
  if not os.path.isfile(path):
    return {}
  try:
    with open(path) as handle:
      metadata = json.load(handle)
  except (OSError, json.JSONDecodeError) as error:
    raise ValueError(f"{path} is not valid JSON: {error}") from None
  if not isinstance(metadata, dict):
    raise ValueError(f"{path} must hold a JSON object")
  names = metadata.get("label_names")
  if names is not None and (
    not isinstance(names, list)
    or not names
    or not all(isinstance(n, str) and n for n in names)
    or len(set(names)) != len(names)
  ):
    raise ValueError(f"{path}: label_names must be a list of distinct non-empty strings")
  return metadata


def _subfolders(path: str) -> list[os.DirEntry]:
  return sorted(
    (e for e in os.scandir(path) if e.is_dir() and not is_private(e.name)), key=lambda e: e.name
  )


def general_layout(root: str) -> Layout:
  """Labels from database.json's label_names, else the sorted label folder names."""
  names = read_metadata(root).get("label_names")
  if names is None:
    found = set()
    for subject in _subfolders(root):
      if general_subject(subject.name) is not None:
        found.update(child.name for child in _subfolders(subject.path))
    names = sorted(found)
  known = frozenset(names)
  return Layout(
    label_names=tuple(names),
    subject=general_subject,
    label=lambda folder: folder if folder in known else None,
  )


@dataclasses.dataclass(frozen=True)
class Recording:
  """One (subject, label): the folder(s) that hold its frames."""

  subject: str
  label: str
  label_index: int
  dirs: tuple[str, ...]
  root: str
  stem_kinds: tuple[str, ...] = ("timestamp", "index")

  @property
  def video(self) -> str:
    return f"{self.subject}/{self.label}"


def scan_database(
  root: str, layout: Layout | None = None
) -> tuple[list[Recording], list[dict[str, str]]]:
  """Subject and label folders of the database (frame files are not listed here)."""
  root = os.path.abspath(root)
  layout = layout or general_layout(root)
  problems: list[dict[str, str]] = []
  folders: dict[tuple[str, str], list[str]] = {}
  subjects: set[str] = set()

  def named_folders(path: str, kind: str, parse):
    """(folder path, parsed name) of each `kind` folder in `path`; the rest noted."""
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
      if is_private(entry.name):
        continue
      if not entry.is_dir():
        problems.append(problem("stray_file", rel(entry.path, root), f"not a {kind} folder"))
        continue
      parsed = parse(entry.name)
      if parsed is None:
        problems.append(problem("unexpected_folder", rel(entry.path, root), f"not a {kind}"))
        continue
      yield entry.path, parsed

  for subject_dir, subject in named_folders(root, "subject", layout.subject):
    subjects.add(subject)
    for label_dir, label in named_folders(subject_dir, "label", layout.label):
      folders.setdefault((subject, label), []).append(label_dir)
  if layout.required_labels:
    for subject in sorted(subjects):
      for label in layout.label_names:
        if (subject, label) not in folders:
          problems.append(problem("missing_stage", subject, label))
  recordings = [
    Recording(
      subject=subject,
      label=label,
      label_index=index,
      dirs=tuple(folders[subject, label]),
      root=root,
      stem_kinds=layout.stem_kinds,
    )
    for subject in sorted(subjects)
    for index, label in enumerate(layout.label_names)
    if (subject, label) in folders
  ]
  return recordings, problems
