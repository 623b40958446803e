"""The `manifest.csv` of a video dataset: reading it, and refusing it whole if any row is bad.

Columns (header required, order free):
  path     video file or folder of frame images, relative to the manual dir
  subject  person id; one TFDS split per subject
  label    class name
  session  optional free text (e.g. the recording stage)
  start_s  optional segment start in seconds
  end_s    optional segment end in seconds
  follow   optional: whom to follow in this source when several faces are in view
           (PreprocessConfig.follow: prominent, largest, central or region:x0,y0,x1,y1
           in fractions of the frame); empty = the build's setting

Every problem in the file is collected before anything is processed, so one run
reports all of them: `ManifestError` lists each bad row by its line number in the
file (the header is line 1).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

from stress_jax import cli
from stress_jax.preprocess.config import parse_follow

MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("path", "subject", "label")
OPTIONAL_COLUMNS = ("session", "start_s", "end_s", "follow")


class ManifestError(cli.UserError, ValueError):
  """The manifest cannot be used; `problems` holds (line, reason) pairs."""

  def __init__(self, manifest_path, problems: Sequence[tuple[int, str]]):
    self.manifest_path = str(manifest_path)
    self.problems = list(problems)
    lines = [f"line {line}: {reason}" if line else reason for line, reason in self.problems]
    super().__init__(
      f"{self.manifest_path}: {len(self.problems)} problem(s), nothing was processed:\n  "
      + "\n  ".join(lines)
    )


@dataclasses.dataclass(frozen=True)
class Row:
  line: int  # line number in manifest.csv (header = 1)
  path: str  # as written, relative to the manual dir, '/'-separated
  subject: str
  label: str
  session: str
  start_s: float | None
  end_s: float | None
  split: str
  follow: str = ""  # PreprocessConfig.follow for this source; "" = the build's

  @property
  def video_id(self) -> str:
    """Names the source in records and the report; segments of one file stay distinct."""
    if self.start_s is None and self.end_s is None:
      return self.path
    start = "" if self.start_s is None else f"{self.start_s:g}"
    end = "" if self.end_s is None else f"{self.end_s:g}"
    return f"{self.path}@{start}-{end}"


@dataclasses.dataclass(frozen=True)
class Manifest:
  path: Path
  manual_dir: Path
  rows: tuple[Row, ...]
  label_names: tuple[str, ...]

  def source(self, row: Row) -> Path:
    return self.manual_dir / row.path

  @property
  def splits(self) -> dict[str, str]:
    """split name -> subject id."""
    return {row.split: row.subject for row in self.rows}


def split_name(subject: str) -> str:
  """TFDS split names allow [A-Za-z0-9_]; ids get a prefix so they never start with a digit."""
  return "s_" + re.sub(r"[^A-Za-z0-9_]", "_", subject.strip())


def _bad_path(text: str) -> str | None:
  if not text:
    return "empty path"
  if "\\" in text:
    return f"path {text!r} uses '\\'; write paths with '/'"
  if (
    PurePosixPath(text).is_absolute()
    or PureWindowsPath(text).is_absolute()
    or PureWindowsPath(text).drive
  ):
    return f"path {text!r} is absolute; paths must be relative to the manual dir"
  if ".." in PurePosixPath(text).parts:
    return f"path {text!r} leaves the manual dir ('..')"
  return None


def _seconds(text: str, column: str, problems: list[str]) -> float | None:
  if text == "":
    return None
  try:
    value = float(text)
  except ValueError:
    problems.append(f"{column} {text!r} is not a number")
    return None
  if not math.isfinite(value) or value < 0:
    problems.append(f"{column} {text!r} must be a finite number >= 0")
    return None
  return value


def read_manifest(
  manual_dir: str | os.PathLike, label_names: Sequence[str] | None = None
) -> Manifest:
  """Reads and checks `manual_dir/manifest.csv`; raises ManifestError listing every bad row.

  Args:
    manual_dir: the folder holding manifest.csv and the media.
    label_names: the class names, in label-index order. None takes the sorted
      unique labels of the manifest; otherwise every row's label must be one of them.
  """
  manual_dir = Path(manual_dir)
  manifest_path = manual_dir / MANIFEST_NAME
  if not manifest_path.is_file():
    raise ManifestError(manifest_path, [(0, f"no {MANIFEST_NAME} in {manual_dir}")])
  with open(manifest_path, newline="", encoding="utf-8-sig") as f:
    reader = csv.reader(f)
    lines = list(reader)
  if not lines:
    raise ManifestError(manifest_path, [(1, "the file is empty; expected a header row")])
  header = [h.strip().lower() for h in lines[0]]
  missing = [c for c in REQUIRED_COLUMNS if c not in header]
  unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
  duplicated = sorted({c for c in header if header.count(c) > 1})
  header_problems = []
  if missing:
    header_problems.append(f"missing column(s): {', '.join(missing)}")
  if unknown:
    header_problems.append(f"unknown column(s): {', '.join(unknown)}")
  if duplicated:
    header_problems.append(f"repeated column(s): {', '.join(duplicated)}")
  if header_problems:
    raise ManifestError(manifest_path, [(1, "; ".join(header_problems))])

  fixed_labels = None if label_names is None else tuple(label_names)
  if fixed_labels is not None and len(set(fixed_labels)) != len(fixed_labels):
    raise ManifestError(manifest_path, [(0, f"label names repeat: {list(fixed_labels)}")])

  problems: list[tuple[int, str]] = []
  rows: list[Row] = []
  first_line_of: dict[tuple, int] = {}
  subject_of_split: dict[str, tuple[str, int]] = {}
  for line_number, values in enumerate(lines[1:], start=2):
    if not any(v.strip() for v in values):
      continue  # blank lines carry nothing
    reasons: list[str] = []
    if len(values) != len(header):
      reasons.append(f"has {len(values)} fields, the header has {len(header)}")
      problems.append((line_number, "; ".join(reasons)))
      continue
    record = {name: value.strip() for name, value in zip(header, values, strict=True)}
    path_text = record["path"]
    bad = _bad_path(path_text)
    if bad:
      reasons.append(bad)
    else:
      normalised = PurePosixPath(path_text).as_posix()
      source = manual_dir / normalised
      if not source.exists():
        reasons.append(f"{path_text!r} does not exist in {manual_dir}")
      path_text = normalised
    subject = record["subject"]
    if not subject:
      reasons.append("empty subject")
    label = record["label"]
    if not label:
      reasons.append("empty label")
    elif fixed_labels is not None and label not in fixed_labels:
      reasons.append(f"unknown label {label!r} (known: {', '.join(fixed_labels)})")
    start_s = _seconds(record.get("start_s", ""), "start_s", reasons)
    end_s = _seconds(record.get("end_s", ""), "end_s", reasons)
    if start_s is not None and end_s is not None and end_s <= start_s:
      reasons.append(f"end_s {end_s:g} is not after start_s {start_s:g}")
    follow = record.get("follow", "")
    if follow:
      try:
        parse_follow(follow)
      except ValueError as error:
        reasons.append(str(error))
    split = split_name(subject) if subject else ""
    if subject:
      other = subject_of_split.setdefault(split, (subject, line_number))
      if other[0] != subject:
        reasons.append(
          f"subject {subject!r} and subject {other[0]!r} (line {other[1]}) both become "
          f"split {split!r}; rename one"
        )
    if not bad:
      # The same stretch of the same file twice would put identical clips in the data
      # (and, under two subjects, on both sides of a split).
      key = (path_text, start_s, end_s)
      if key in first_line_of:
        reasons.append(f"duplicate of line {first_line_of[key]} (same path and segment)")
      else:
        first_line_of[key] = line_number
    if reasons:
      problems.append((line_number, "; ".join(reasons)))
      continue
    rows.append(
      Row(
        line=line_number,
        path=path_text,
        subject=subject,
        label=label,
        session=record.get("session", ""),
        start_s=start_s,
        end_s=end_s,
        split=split,
        follow=follow,
      )
    )
  if not problems and not rows:
    problems.append((0, "the manifest lists no sources"))
  if problems:
    raise ManifestError(manifest_path, problems)
  names = fixed_labels if fixed_labels is not None else tuple(sorted({r.label for r in rows}))
  return Manifest(path=manifest_path, manual_dir=manual_dir, rows=tuple(rows), label_names=names)
