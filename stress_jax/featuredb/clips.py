"""Recordings -> clip plans (file lists) -> clip records, with every defect reported.

Building clips happens in steps that each can run on a different worker (a process
pool or an Apache Beam runner), so memory never depends on the size of the database:

  1. `layout.scan_database(root)`: subject and label folders only (no frame files).
  2. `plan_recording(recording, spec)`: lists one label folder, checks every `.npy`
     header (no array is read), orders frames by stem, cuts the recording into
     gap-free runs and the runs into `ClipPlan`s.
  3. `make_clip(plan, spec)`: reads the T files (and landmarks) of one clip, converts
     to float16 and returns one record in the layout of `records.clip_features`.

Runs: timestamp stems are cut wherever two consecutive valid frames are more than
`max_gap_s` apart; integer stems wherever consecutive indices differ by more than 1.
A file that fails its checks while planning is left out, so it acts like a lost frame.
Clips of T frames start every `stride` frames of a run. A run's tail shorter than T
becomes one zero-padded clip (frame_mask False on the padding) when it holds at least
`ceil(min_valid * T)` frames, otherwise it is dropped and counted. The same threshold
applies to the valid (unmasked) frames of every written clip.

Landmarks: a frame whose stem has an entry in its folder's `_landmarks.npz` gets it;
the others (and padding) take the landmarks of the nearest frame of the clip that has
one, as the video pipeline does for frames without a face, so the landmark stream never
reads zeros as a face. A clip with no landmarks at all stores zeros.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from stress_jax.faces.geometry import NUM_LANDMARKS
from stress_jax.faces.landmarks import fill_missing_landmarks
from stress_jax.featuredb.layout import (
  FEATURE_SHAPE,
  FLOAT16_MAX,
  FLOAT16_MIN_NORMAL,
  LANDMARKS_NAME,
  Recording,
  is_private,
  merge_stats,
  parse_index,
  parse_timestamp_ms,
  problem,
  rel,
)
from stress_jax.featuredb.npy import NpyError, check_npy, load_frame


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
class ClipPlan:
  """The files of one clip. `paths` holds only real frames; the rest is padding."""

  subject: str
  label: str
  label_index: int
  start_frame: int
  paths: tuple[str, ...]
  root: str

  @property
  def video(self) -> str:
    return f"{self.subject}/{self.label}"

  @property
  def key(self) -> str:
    return f"{self.video}/{self.start_frame:07d}"


def _clip_starts(length: int, spec: ClipSpec) -> Iterator[tuple[int, int]]:
  """(start, real frames) of the clips of one run."""
  for start in range(0, length, spec.step):
    count = min(spec.num_frames, length - start)
    if count == spec.num_frames or count >= spec.min_frames:
      yield start, count
    if start + spec.num_frames >= length:
      return


def _stem_value(stem: str, kinds: tuple[str, ...]) -> tuple[str, int] | None:
  for kind, parse in (("timestamp", parse_timestamp_ms), ("index", parse_index)):
    if kind in kinds and (value := parse(stem)) is not None:
      return kind, value
  return None


def _list_recording(recording: Recording) -> tuple[list[tuple[int, str, str]], str, list[dict]]:
  """(stem value, file name, path) of every well-named .npy in order, the stem kind, problems.

  A recording uses one kind of stem: the kind of its first well-named file (in name
  order); files named the other way are `bad_name`.
  """
  root = recording.root
  problems: list[dict[str, str]] = []
  named: list[tuple[int, str, str]] = []
  kind = ""
  hint = " or ".join(
    {"timestamp": "YYYYMMDD_hhmmss_ms", "index": "a frame index"}[k] for k in recording.stem_kinds
  )
  for folder in recording.dirs:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
      stem, ext = os.path.splitext(entry.name)
      if is_private(entry.name):
        continue
      if entry.is_dir():
        problems.append(problem("unexpected_folder", rel(entry.path, root), "inside a label"))
      elif ext.lower() != ".npy":
        problems.append(problem("stray_file", rel(entry.path, root), "not a .npy"))
      elif (parsed := _stem_value(stem, recording.stem_kinds)) is None or kind not in (
        "",
        parsed[0],
      ):
        problems.append(problem("bad_name", rel(entry.path, root), f"not {hint}"))
      else:
        kind = parsed[0]
        named.append((parsed[1], entry.name, entry.path))
  named.sort()
  return named, kind, problems


def _gap_limit(kind: str, spec: ClipSpec) -> float:
  return 1 if kind == "index" else spec.max_gap_ms


def has_clip(recording: Recording, spec: ClipSpec) -> bool:
  """Whether `plan_recording` will plan at least one clip, reading as few headers as it can.

  TFDS refuses a split without examples, so a subject's split is only declared when
  this holds for one of its recordings; it stops at the first run of `min_frames`.
  """
  named, kind, _ = _list_recording(recording)
  limit = _gap_limit(kind, spec)
  run, last = 0, None
  for stamp, _, path in named:
    try:
      check_npy(path)
    except NpyError:
      continue
    if last is not None and stamp == last:
      continue
    run = 1 if last is None or stamp - last > limit else run + 1
    last = stamp
    if run >= spec.min_frames:
      return True
  return False


def plan_recording(
  recording: Recording, spec: ClipSpec
) -> tuple[list[ClipPlan], list[dict[str, str]], dict[str, Any]]:
  """Lists, validates and orders one recording's frames and cuts them into clips."""
  root = recording.root
  named, kind, problems = _list_recording(recording)
  limit = _gap_limit(kind, spec)

  # `valid` holds (position, stem value, path). With timestamps `start_frame` is the
  # position among all well-named files, so it points at a file on disk; with frame
  # indices it is the index itself.
  valid: list[tuple[int, int, str]] = []
  for position, (stamp, _, path) in enumerate(named):
    try:
      check_npy(path)
    except NpyError as error:
      problems.append(problem(error.kind, rel(path, root), error.detail))
      continue
    if valid and valid[-1][1] == stamp:
      problems.append(
        problem("duplicate_frame", rel(path, root), f"same frame as {rel(valid[-1][2], root)}")
      )
      continue
    valid.append((stamp if kind == "index" else position, stamp, path))
  if not valid:
    problems.append(problem("empty_recording", recording.video, "no valid frame"))

  runs: list[list[tuple[int, int, str]]] = []
  for frame in valid:
    if not runs or frame[1] - runs[-1][-1][1] > limit:
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
          label=recording.label,
          label_index=recording.label_index,
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


def _clip_landmarks(plan: ClipPlan, length: int, problems: list) -> tuple[np.ndarray, int]:
  """(T, 68, 2) float32 landmarks of the clip and how many of its frames had an entry."""
  landmarks = np.zeros((length, NUM_LANDMARKS, 2), np.float32)
  found = np.zeros((length,), bool)
  tables: dict[str, Any] = {}
  for slot, path in enumerate(plan.paths):
    folder, name = os.path.split(path)
    if folder not in tables:
      table_path = os.path.join(folder, LANDMARKS_NAME)
      tables[folder] = None
      if os.path.isfile(table_path):
        try:
          tables[folder] = np.load(table_path, allow_pickle=False)
        except (OSError, ValueError) as error:
          problems.append(problem("bad_landmarks", rel(table_path, plan.root), str(error)))
    table, stem = tables[folder], os.path.splitext(name)[0]
    if table is None or stem not in table.files:
      continue
    try:
      value = np.asarray(table[stem], np.float32)
    except (OSError, ValueError) as error:
      problems.append(problem("bad_landmarks", rel(path, plan.root), str(error)))
      continue
    if value.shape != (NUM_LANDMARKS, 2) or not np.isfinite(value).all():
      detail = f"shape {value.shape}" if value.ndim != 2 else "not finite or wrong shape"
      problems.append(problem("bad_landmarks", rel(path, plan.root), detail))
      continue
    landmarks[slot], found[slot] = value, True
  for table in tables.values():
    if table is not None:
      table.close()
  return fill_missing_landmarks(landmarks, found), int(found.sum())


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
      problems.append(problem("load_error", rel(path, plan.root), f"{error.kind}: {error.detail}"))

  # Per-frame max and min propagate NaN and inf, so two reductions find every bad frame.
  flat = values.reshape(length, -1)
  peaks = np.maximum(flat.max(axis=1), -flat.min(axis=1))
  finite = np.isfinite(peaks)
  for slot in np.flatnonzero(mask & ~finite):
    problems.append(problem("nonfinite", rel(plan.paths[slot], plan.root), "NaN or inf"))
  # Values past float16's largest finite number would be stored as inf or clamped; a
  # ResNet map that large is corrupt anyway, so the frame is masked, never stored.
  overflow = mask & finite & (peaks > FLOAT16_MAX)
  for slot in np.flatnonzero(overflow):
    problems.append(
      problem(
        "float16_overflow",
        rel(plan.paths[slot], plan.root),
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
  landmarks, with_landmarks = _clip_landmarks(plan, length, problems)
  stats.update(
    clips=1,
    clips_padded=int(len(plan.paths) < length),
    frames_in_clips=num_valid,
    frames_with_landmarks=with_landmarks,
    # Masked frames are zeros on both sides and add no error.
    **float16_errors(values, halves),
  )
  record = dict(
    features=halves,
    landmarks=landmarks,
    frame_mask=mask,
    label=plan.label_index,
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
