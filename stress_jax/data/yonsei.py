"""The Yonsei Stress Image Database: scanning, validation, clip planning and task labels.

The database ships no images: every frame is a ResNet-18 stage-3 feature map saved as
`<root>/<subject>/<stage>/<YYYYMMDD_hhmmss_ms>.npy`, float32 of shape (7, 7, 256).

Building clips happens in three steps so that each can run on a different worker
(a multiprocessing pool or an Apache Beam runner) and memory never depends on the size
of the database:

  1. `scan_database(root)`: the subject and stage folders only (no frame files). One
     `Recording` per (subject, stage), plus layout problems.
  2. `plan_recording(recording, spec)`: lists one stage folder, checks every `.npy`
     header (cheap: no array is read), orders frames by their timestamp names, cuts
     the recording into gap-free runs and the runs into `ClipPlan`s (file lists).
  3. `make_clip(plan, spec)`: reads the T files of one clip, converts to float16 and
     returns one record in the layout of `stress_jax.data.records.clip_features`.

Bad input never enters a record and never stops the build; it is listed as a
`Problem` (kind, path relative to the root, detail):

  Found while planning; the file is left out of the recording, so it acts like a frame
  the camera lost (the max-gap rule then decides whether the run is cut there):
    unreadable     not a readable .npy (bad magic, bad header, I/O error)
    truncated      fewer bytes than the header promises (or trailing bytes: `bad_size`)
    wrong_shape    shape != (7, 7, 256)
    wrong_dtype    dtype != float32
    bad_name       a .npy whose name is not a YYYYMMDD_hhmmss_ms timestamp
    duplicate_frame  a second valid file with the same timestamp (the first is kept)
  Found while writing a clip; the frame keeps its place in time but is masked
  (frame_mask False, features zero), because the clip plan is already fixed:
    nonfinite      NaN or inf in the float32 map
    float16_overflow  a finite value beyond float16's range (|x| > 65504)
    load_error     a file that passed the header check but could not be read later
  Layout (reported only):
    stray_file     a file that is not a .npy anywhere in the tree
    unexpected_folder  a folder that is neither a subject, nor a stage, where expected
    missing_stage  a subject without one of the four stage folders
    empty_recording  a stage folder with no valid frame
    no_clips       a subject none of whose recordings yields a clip (it gets no split)

Clips: runs are cut wherever two consecutive valid frames are more than `max_gap_s`
apart. Clips of T frames start every `stride` frames of a run. A run's tail shorter than
T becomes one zero-padded clip (frame_mask False on the padding) when it holds at least
`ceil(min_valid * T)` frames, otherwise it is dropped and counted. The same threshold
applies to the valid (unmasked) frames of every written clip.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

FEATURE_SHAPE = (7, 7, 256)
FEATURE_DTYPE = np.dtype(np.float32)
FRAME_BYTES = int(np.prod(FEATURE_SHAPE)) * FEATURE_DTYPE.itemsize
FLOAT16_MAX = float(np.finfo(np.float16).max)
FLOAT16_MIN_NORMAL = float(np.finfo(np.float16).tiny)  # 2**-14

# Stage order = label index of the stored `label` feature (the order of the sessions).
STAGE_NAMES = (
  "Native Language Script Reading",
  "Native Language Interview",
  "Non-native Language Script Reading",
  "Non-native Language Interview",
)
NUM_SUBJECTS = 50
NUM_FRAMES_TOTAL = 2_020_556

TASKS = ("4class", "3class", "binary")
_TASK_LABELS = {
  "4class": (list(STAGE_NAMES), [0, 1, 2, 3]),
  # The two script readings are one class; each interview keeps its own.
  "3class": (
    ["Script Reading", "Native Language Interview", "Non-native Language Interview"],
    [0, 1, 0, 2],
  ),
  # Interviews are the stress condition, script readings the baseline.
  "binary": (["No Stress", "Stress"], [0, 1, 0, 1]),
}

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
  "stray_file",
  "unexpected_folder",
  "missing_stage",
  "empty_recording",
  "no_clips",
)


def _check_task(task: str) -> None:
  if task not in _TASK_LABELS:
    raise ValueError(f"Unknown Yonsei task {task!r}; expected one of {TASKS}.")


def task_label_names(task: str) -> list[str]:
  """Class names of a task, in label order."""
  _check_task(task)
  return list(_TASK_LABELS[task][0])


def task_label_map(task: str) -> np.ndarray:
  """(4,) int32: stored stage label -> task label. Use as `task_label_map(task)[label]`."""
  _check_task(task)
  return np.asarray(_TASK_LABELS[task][1], dtype=np.int32)


def num_classes_for_task(task: str) -> int:
  return len(task_label_names(task))


# ---------------------------------------------------------------------------- names


def _normalize_folder(name: str) -> str:
  # Spaces, underscores and hyphens are interchangeable in the released folder names.
  return " ".join(re.split(r"[\s_\-]+", name.strip().lower())).strip()


_STAGE_BY_KEY = {_normalize_folder(name): name for name in STAGE_NAMES}
_SUBJECT_RE = re.compile(r"^(?:s|subject)?[\s_\-]*0*(\d+)$", re.IGNORECASE)
_TIMESTAMP_RE = re.compile(r"^(\d{8})_(\d{6})_(\d{1,3})$")
_EPOCH = datetime.datetime(1970, 1, 1)


def canonical_stage(folder_name: str) -> str | None:
  """The stage a folder holds, or None. Case, spaces, '_' and '-' do not matter."""
  return _STAGE_BY_KEY.get(_normalize_folder(folder_name))


def subject_id(folder_name: str) -> str | None:
  """'01', '1', 'S01', 'subject_1' -> 's01'; anything else -> None."""
  match = _SUBJECT_RE.match(folder_name.strip())
  if not match or int(match.group(1)) == 0:
    return None
  return f"s{int(match.group(1)):02d}"


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


# ------------------------------------------------------------------------- problems


def problem(kind: str, path: str, detail: str = "") -> dict[str, str]:
  assert kind in PROBLEM_KINDS, kind
  return {"kind": kind, "path": path, "detail": detail}


def _rel(path: str, root: str) -> str:
  return os.path.relpath(path, root).replace(os.sep, "/")


def merge_stats(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
  """Counters add up; keys starting with 'max_' keep the maximum. Updates `total`."""
  for key, value in part.items():
    if key.startswith("max_"):
      total[key] = max(total.get(key, 0.0), value)
    else:
      total[key] = total.get(key, 0) + value
  return total


# ------------------------------------------------------------------------- npy files


class NpyError(Exception):
  def __init__(self, kind: str, detail: str):
    super().__init__(f"{kind}: {detail}")
    self.kind = kind
    self.detail = detail


_MAGIC = b"\x93NUMPY"
_MAX_HEADER = 10_000  # numpy's own limit for headers it will parse safely


def _parse_header(stream) -> tuple[tuple[int, ...], bool, np.dtype, int]:
  """(shape, fortran_order, dtype, data offset) from the start of an .npy stream."""
  prefix = stream.read(10)
  if len(prefix) < 10 or prefix[:6] != _MAGIC:
    raise NpyError("unreadable", "not an .npy file (bad magic string)")
  if prefix[6] == 1:
    length, start = int.from_bytes(prefix[8:10], "little"), 10
  elif prefix[6] in (2, 3):
    prefix += stream.read(2)
    length, start = int.from_bytes(prefix[8:12], "little"), 12
  else:
    raise NpyError("unreadable", f"unsupported .npy version {prefix[6]}.{prefix[7]}")
  if length > _MAX_HEADER:
    raise NpyError("unreadable", f"header of {length} bytes")
  header = stream.read(length)
  if len(header) < length:
    raise NpyError("unreadable", "header cut short")
  return (*_decode_header(prefix[:start] + header), start + length)


@functools.lru_cache(maxsize=64)
def _decode_header(blob: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
  # Every frame of the database carries the same header bytes: parse them once.
  stream = io.BytesIO(blob)
  try:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
      return np.lib.format.read_array_header_1_0(stream)
    # 3.0 differs from 2.0 only in allowing utf-8 field names, never in a float map.
    return np.lib.format.read_array_header_2_0(stream)
  except (ValueError, EOFError, SyntaxError, TypeError) as error:
    raise NpyError("unreadable", str(error) or type(error).__name__) from error


def _check_header(shape, dtype: np.dtype) -> None:
  if dtype.kind != "f" or dtype.itemsize != FEATURE_DTYPE.itemsize or dtype.fields:
    raise NpyError("wrong_dtype", f"dtype {dtype.str}, expected float32")
  if tuple(shape) != FEATURE_SHAPE:
    raise NpyError("wrong_shape", f"shape {tuple(shape)}, expected {FEATURE_SHAPE}")


def _check_size(size: int, data_offset: int) -> None:
  expected = data_offset + FRAME_BYTES
  if size < expected:
    raise NpyError("truncated", f"{size} bytes, expected {expected}")
  if size > expected:
    raise NpyError("bad_size", f"{size} bytes, expected {expected}")


def check_npy(path: str) -> None:
  """Raises NpyError unless `path` is a complete float32 (7, 7, 256) .npy.

  Reads only the header (a few hundred bytes) and the file size, never the array.
  """
  try:
    with open(path, "rb") as stream:
      shape, _, dtype, offset = _parse_header(stream)
      _check_header(shape, dtype)
      _check_size(os.fstat(stream.fileno()).st_size, offset)
  except OSError as error:
    raise NpyError("unreadable", str(error)) from error


def load_frame(path: str) -> np.ndarray:
  """(7, 7, 256) float32 in native byte order; raises NpyError on any defect."""
  try:
    with open(path, "rb") as handle:
      raw = handle.read()
  except OSError as error:
    raise NpyError("unreadable", str(error)) from error
  shape, fortran_order, dtype, offset = _parse_header(io.BytesIO(raw))
  _check_header(shape, dtype)
  _check_size(len(raw), offset)
  array = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=offset)
  array = array.reshape(shape, order="F" if fortran_order else "C")
  return np.ascontiguousarray(array, dtype=FEATURE_DTYPE)


# ---------------------------------------------------------------------- scan + plan


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """How recordings are cut into clips (the dataset-defining part of a builder config)."""

  num_frames: int = 48
  stride: int = 0  # 0 = num_frames: non-overlapping clips
  max_gap_s: float = 0.5
  min_valid: float = 0.5

  def __post_init__(self):
    if self.num_frames < 1 or self.stride < 0:
      raise ValueError(f"Bad clip spec {self}")
    if not 0.0 < self.min_valid <= 1.0:
      raise ValueError(f"min_valid must be in (0, 1], got {self.min_valid}")

  @property
  def step(self) -> int:
    return self.stride or self.num_frames

  @property
  def min_frames(self) -> int:
    # The tolerance keeps e.g. 0.5 * 48 = 24 from turning into 25 through rounding.
    return max(1, math.ceil(self.min_valid * self.num_frames - 1e-9))

  @property
  def max_gap_ms(self) -> float:
    return self.max_gap_s * 1000.0


@dataclasses.dataclass(frozen=True)
class Recording:
  """One (subject, stage): the folder(s) that hold its frames."""

  subject: str
  stage: str
  dirs: tuple[str, ...]
  root: str

  @property
  def video(self) -> str:
    return f"{self.subject}/{self.stage}"


@dataclasses.dataclass(frozen=True)
class ClipPlan:
  """The files of one clip. `paths` holds only real frames; the rest is padding."""

  subject: str
  stage: str
  start_frame: int
  paths: tuple[str, ...]
  root: str

  @property
  def video(self) -> str:
    return f"{self.subject}/{self.stage}"

  @property
  def key(self) -> str:
    return f"{self.video}/{self.start_frame:07d}"


def scan_database(root: str) -> tuple[list[Recording], list[dict[str, str]]]:
  """Subject and stage folders of the database (frame files are not listed here)."""
  root = os.path.abspath(root)
  problems: list[dict[str, str]] = []
  folders: dict[tuple[str, str], list[str]] = {}
  subjects: set[str] = set()
  for entry in sorted(os.scandir(root), key=lambda e: e.name):
    if not entry.is_dir():
      problems.append(problem("stray_file", _rel(entry.path, root), "not a subject folder"))
      continue
    subject = subject_id(entry.name)
    if subject is None:
      problems.append(problem("unexpected_folder", _rel(entry.path, root), "not a subject"))
      continue
    subjects.add(subject)
    for child in sorted(os.scandir(entry.path), key=lambda e: e.name):
      if not child.is_dir():
        problems.append(problem("stray_file", _rel(child.path, root), "not a stage folder"))
        continue
      stage = canonical_stage(child.name)
      if stage is None:
        problems.append(problem("unexpected_folder", _rel(child.path, root), "not a stage"))
        continue
      folders.setdefault((subject, stage), []).append(child.path)
  for subject in sorted(subjects):
    for stage in STAGE_NAMES:
      if (subject, stage) not in folders:
        problems.append(problem("missing_stage", subject, stage))
  recordings = [
    Recording(subject=subject, stage=stage, dirs=tuple(folders[subject, stage]), root=root)
    for subject in sorted(subjects)
    for stage in STAGE_NAMES
    if (subject, stage) in folders
  ]
  return recordings, problems


def _clip_starts(length: int, spec: ClipSpec) -> Iterator[tuple[int, int]]:
  """(start, real frames) of the clips of one run."""
  for start in range(0, length, spec.step):
    count = min(spec.num_frames, length - start)
    if count == spec.num_frames or count >= spec.min_frames:
      yield start, count
    if start + spec.num_frames >= length:
      return


def _list_recording(recording: Recording) -> tuple[list[tuple[int, str, str]], list[dict]]:
  """(timestamp ms, file name, path) of every timestamp-named .npy, in time order."""
  root = recording.root
  problems: list[dict[str, str]] = []
  named: list[tuple[int, str, str]] = []
  for folder in recording.dirs:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
      stem, ext = os.path.splitext(entry.name)
      if entry.is_dir():
        problems.append(problem("unexpected_folder", _rel(entry.path, root), "inside a stage"))
      elif ext.lower() != ".npy":
        problems.append(problem("stray_file", _rel(entry.path, root), "not a .npy"))
      elif (stamp := parse_timestamp_ms(stem)) is None:
        problems.append(problem("bad_name", _rel(entry.path, root), "not YYYYMMDD_hhmmss_ms"))
      else:
        named.append((stamp, entry.name, entry.path))
  named.sort()
  return named, problems


def has_clip(recording: Recording, spec: ClipSpec) -> bool:
  """Whether `plan_recording` will plan at least one clip, reading as few headers as it can.

  TFDS refuses a split without examples, so a subject's split is only declared when
  this holds for one of its recordings; it stops at the first run of `min_frames`.
  """
  named, _ = _list_recording(recording)
  run, last = 0, None
  for stamp, _, path in named:
    try:
      check_npy(path)
    except NpyError:
      continue
    if last is not None and stamp == last:
      continue
    run = 1 if last is None or stamp - last > spec.max_gap_ms else run + 1
    last = stamp
    if run >= spec.min_frames:
      return True
  return False


def plan_recording(
  recording: Recording, spec: ClipSpec
) -> tuple[list[ClipPlan], list[dict[str, str]], dict[str, Any]]:
  """Lists, validates and orders one recording's frames and cuts them into clips."""
  root = recording.root
  named, problems = _list_recording(recording)

  # `valid` holds (timeline index, timestamp, path); the timeline index of a frame is its
  # position among all timestamp-named files, so `start_frame` points at a file on disk.
  valid: list[tuple[int, int, str]] = []
  for index, (stamp, _, path) in enumerate(named):
    try:
      check_npy(path)
    except NpyError as error:
      problems.append(problem(error.kind, _rel(path, root), error.detail))
      continue
    if valid and valid[-1][1] == stamp:
      problems.append(
        problem("duplicate_frame", _rel(path, root), f"same time as {_rel(valid[-1][2], root)}")
      )
      continue
    valid.append((index, stamp, path))
  if not valid:
    problems.append(problem("empty_recording", recording.video, "no valid frame"))

  runs: list[list[tuple[int, int, str]]] = []
  for frame in valid:
    if not runs or frame[1] - runs[-1][-1][1] > spec.max_gap_ms:
      runs.append([])
    runs[-1].append(frame)

  plans: list[ClipPlan] = []
  stats = dict(
    recordings=1,
    frames_named=len(named),
    frames_valid=len(valid),
    runs=len(runs),
    frames_uncovered=0,
    tails_dropped=0,
  )
  for run in runs:
    covered = 0
    last = 0
    for start, count in _clip_starts(len(run), spec):
      plans.append(
        ClipPlan(
          subject=recording.subject,
          stage=recording.stage,
          start_frame=run[start][0],
          paths=tuple(frame[2] for frame in run[start : start + count]),
          root=root,
        )
      )
      covered += min(start + count, len(run)) - max(start, last)
      last = start + count
    stats["frames_uncovered"] += len(run) - covered
    if last < len(run):
      stats["tails_dropped"] += 1
  return plans, problems, stats


def chunk_plans(plans: Sequence[ClipPlan], clips_per_chunk: int) -> list[tuple[ClipPlan, ...]]:
  """Groups clips into work units (a pool task or a Beam element each)."""
  step = max(1, clips_per_chunk)
  return [tuple(plans[i : i + step]) for i in range(0, len(plans), step)]


# ------------------------------------------------------------------------ clip data


def float16_errors(values: np.ndarray, halves: np.ndarray) -> dict[str, float]:
  """Worst float32 -> float16 rounding error, as max |h - x| / max(|x|, 2**-14).

  Where |x| is in float16's normal range this is the relative error, at most 2**-11
  under round-to-nearest. Below that range float16's spacing is fixed (2**-24), so the
  error is measured against the smallest normal number instead, which keeps the same
  2**-11 bound and stops tiny activations from reading as huge relative errors.
  """
  error = halves.astype(np.float32)
  error -= values
  np.abs(error, out=error)
  magnitude = np.abs(values)
  max_abs_value = float(magnitude.max(initial=0.0))
  np.maximum(magnitude, FLOAT16_MIN_NORMAL, out=magnitude)
  error /= magnitude
  return dict(max_rel_error=float(error.max(initial=0.0)), max_abs_value=max_abs_value)


def make_clip(
  plan: ClipPlan, spec: ClipSpec
) -> tuple[dict[str, Any] | None, list[dict[str, str]], dict[str, Any]]:
  """Reads one clip. Returns (record or None if too few valid frames, problems, stats)."""
  length = spec.num_frames
  values = np.zeros((length, *FEATURE_SHAPE), dtype=np.float32)
  mask = np.zeros((length,), dtype=bool)
  problems: list[dict[str, str]] = []
  for slot, path in enumerate(plan.paths):
    try:
      values[slot] = load_frame(path)
      mask[slot] = True
    except NpyError as error:
      problems.append(problem("load_error", _rel(path, plan.root), f"{error.kind}: {error.detail}"))

  # Per-frame max and min propagate NaN and inf, so two reductions find every bad frame.
  flat = values.reshape(length, -1)
  peaks = np.maximum(flat.max(axis=1), -flat.min(axis=1))
  finite = np.isfinite(peaks)
  for slot in np.flatnonzero(mask & ~finite):
    problems.append(problem("nonfinite", _rel(plan.paths[slot], plan.root), "NaN or inf"))
  # Values past float16's largest finite number would be stored as inf or clamped; a
  # ResNet map that large is corrupt anyway, so the frame is masked, never stored.
  overflow = mask & finite & (peaks > FLOAT16_MAX)
  for slot in np.flatnonzero(overflow):
    problems.append(
      problem(
        "float16_overflow",
        _rel(plan.paths[slot], plan.root),
        f"max |x| = {peaks[slot]:.6g} > {FLOAT16_MAX:g}",
      )
    )
  mask &= finite & ~overflow
  values[~mask] = 0.0
  halves = values.astype(np.float16)

  num_valid = int(mask.sum())
  stats: dict[str, Any] = dict(frames_masked=len(plan.paths) - num_valid)
  if num_valid < spec.min_frames:
    stats.update(clips_dropped_masked=1)
    return None, problems, stats
  stats.update(
    clips=1,
    clips_padded=int(len(plan.paths) < length),
    frames_in_clips=num_valid,
    # Masked frames are zeros on both sides and add no error.
    **float16_errors(values, halves),
  )
  record = dict(
    features=halves,
    frame_mask=mask,
    label=STAGE_NAMES.index(plan.stage),
    subject=plan.subject,
    video=plan.video,
    start_frame=np.int32(plan.start_frame),
  )
  return record, problems, stats


def make_clips(
  chunk: Iterable[ClipPlan], spec: ClipSpec
) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, str]], dict[str, Any]]:
  """A work unit: the (key, record) pairs of a few clips, with their problems and stats."""
  examples, problems, stats = [], [], {}
  for plan in chunk:
    record, clip_problems, clip_stats = make_clip(plan, spec)
    if record is not None:
      examples.append((plan.key, record))
    problems.extend(clip_problems)
    merge_stats(stats, clip_stats)
  return examples, problems, stats


# -------------------------------------------------------------- synthetic databases


def random_feature_maps(rng: np.random.Generator, count: int) -> np.ndarray:
  """Post-ReLU-like maps: about half zeros, the rest half-normal, mostly within 0..8."""
  maps = rng.standard_normal((count, *FEATURE_SHAPE), dtype=np.float32) * 2.0
  return np.maximum(maps, 0.0, out=maps)


def write_recording(
  folder: str,
  num_frames: int,
  *,
  rng: np.random.Generator,
  start_ms: int,
  fps: float = 30.0,
  gaps: dict[int, float] | None = None,
) -> list[str]:
  """Writes `num_frames` timestamp-named frames; `gaps[i]` adds seconds before frame i."""
  os.makedirs(folder, exist_ok=True)
  gaps = gaps or {}
  paths = []
  offset_ms = 0.0
  batch = 256
  for first in range(0, num_frames, batch):
    maps = random_feature_maps(rng, min(batch, num_frames - first))
    for i, frame in enumerate(maps, start=first):
      offset_ms += gaps.get(i, 0.0) * 1000.0
      stamp = start_ms + int(round(offset_ms + i * 1000.0 / fps))
      path = os.path.join(folder, format_timestamp(stamp) + ".npy")
      np.save(path, frame)
      paths.append(path)
  return paths


def write_database(
  root: str,
  num_subjects: int,
  frames_per_stage: int,
  *,
  seed: int = 0,
  folder_style: str = "space",
) -> int:
  """A database with the real layout; returns the number of frames written."""
  rng = np.random.default_rng(seed)
  start = parse_timestamp_ms("20200601_090000_000")
  total = 0
  for number in range(1, num_subjects + 1):
    for index, stage in enumerate(STAGE_NAMES):
      folder_name = stage if folder_style == "space" else stage.replace(" ", "_")
      folder = os.path.join(root, f"{number:02d}", folder_name)
      stage_start = start + number * 86_400_000 + index * 3_600_000
      total += len(write_recording(folder, frames_per_stage, rng=rng, start_ms=stage_start))
  return total


# ------------------------------------------------------------------- Apache Beam steps

BEAM_REPORT_TAG = "report"


def beam_plan(recording: Recording, spec: ClipSpec, clips_per_chunk: int):
  """Beam FlatMap: a recording -> its work units, plus (problems, stats) on the report tag."""
  from apache_beam.pvalue import TaggedOutput

  plans, problems, stats = plan_recording(recording, spec)
  yield TaggedOutput(BEAM_REPORT_TAG, (problems, stats))
  yield from chunk_plans(plans, clips_per_chunk)


def beam_clips(chunk: tuple[ClipPlan, ...], spec: ClipSpec):
  """Beam FlatMap: a work unit -> (key, record) pairs, plus (problems, stats) on the report tag."""
  from apache_beam.pvalue import TaggedOutput

  problems, stats = [], {}
  for plan in chunk:
    record, clip_problems, clip_stats = make_clip(plan, spec)
    problems.extend(clip_problems)
    merge_stats(stats, clip_stats)
    if record is not None:
      yield plan.key, record
  yield TaggedOutput(BEAM_REPORT_TAG, (problems, stats))


def merge_reports(
  reports: Iterable[tuple[list[dict[str, str]], dict[str, Any]]],
) -> tuple[list[dict[str, str]], dict[str, Any]]:
  problems, stats = [], {}
  for part_problems, part_stats in reports:
    problems.extend(part_problems)
    merge_stats(stats, part_stats)
  problems.sort(key=lambda p: (p["kind"], p["path"], p["detail"]))
  return problems, stats


def write_report_part(reports, path: str) -> None:
  """Writes the merged (problems, stats) of one split as JSON (local path or any epath URL)."""
  from etils import epath

  problems, stats = merge_reports(reports)
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  target.write_text(json.dumps({"problems": problems, "stats": stats}, sort_keys=True))
