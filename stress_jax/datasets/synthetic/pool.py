"""Simulated clips as TFDS examples (`clip_example`), rendered by a process pool for the builder.

The stress_faces builder writes one split per subject, so work is handed out
subject by subject; a clip's bytes depend only on the config (see `config.rng`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterator

import numpy as np

from stress_jax.datasets.synthetic import cues
from stress_jax.datasets.synthetic.clip import Clip, simulate_clip
from stress_jax.datasets.synthetic.config import SimulatorConfig
from stress_jax.faces import records


def clip_example(clip: Clip) -> dict:
  """The `records.clip_features(..., synthetic=True)` example of a clip."""
  return dict(
    frames=records.encode_frames(clip.frames),
    landmarks=clip.landmarks.astype(np.float32),
    frame_mask=(
      np.ones(len(clip.frames), bool) if clip.frame_mask is None else clip.frame_mask.copy()
    ),
    label=int(clip.label),
    subject=clip.subject,
    video=clip.video,
    start_frame=np.int32(clip.start_frame),
    cue_frames=clip.cue_frames,
    cue_region=clip.cue_region,
    cue_events=cues.event_rows(clip.events),
  )


def clip_key(clip: Clip) -> str:
  return f"{clip.video}_{clip.start_frame:06d}"


def subject_tasks(config: SimulatorConfig, subject: int) -> list[tuple[int, int, int]]:
  return [
    (subject, session, clip)
    for session in range(config.num_classes)
    for clip in range(config.clips_per_class_per_subject)
  ]


def _render_task(args: tuple[SimulatorConfig, int, int, int]) -> tuple[str, dict]:
  config, subject, session, clip = args
  rendered = simulate_clip(config, subject, session, clip)
  return clip_key(rendered), clip_example(rendered)


def default_num_workers() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def _default_start_method() -> str:
  # fork lets the workers inherit the imported modules instead of importing TFDS
  # again (seconds each). Not once JAX is loaded: its threads make fork unsafe (a
  # child can inherit a lock another thread held), so then workers are spawned.
  if "jax" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
    return "spawn"
  return "fork"


class RecordPool:
  """Renders clips in worker processes and hands back (key, example) pairs, subject by subject.

  Every clip is seeded on its own, so the examples do not depend on `num_workers`
  (0 or 1 renders in this process). Use as a context manager, or call `close`.
  """

  def __init__(
    self, config: SimulatorConfig, num_workers: int | None = None, start_method: str | None = None
  ):
    self.config = config
    self.num_workers = default_num_workers() if num_workers is None else num_workers
    self.start_method = start_method or _default_start_method()
    self._pool = None

  def _get_pool(self):
    if self._pool is None and self.num_workers > 1:
      if self.config.detector == "dlib" and self.start_method == "fork":
        # Loaded once here (seconds), the forked workers share dlib's model.
        from stress_jax.datasets.synthetic import detector

        detector.load_predictor()
      self._pool = multiprocessing.get_context(self.start_method).Pool(self.num_workers)
    return self._pool

  def records(self, subject: int) -> Iterator[tuple[str, dict]]:
    tasks = [(self.config, *task) for task in subject_tasks(self.config, subject)]
    pool = self._get_pool()
    if pool is None:
      yield from map(_render_task, tasks)
    else:
      yield from pool.imap(_render_task, tasks, chunksize=2)

  def close(self) -> None:
    if self._pool is not None:
      self._pool.close()
      self._pool.join()
      self._pool = None

  def __enter__(self) -> RecordPool:
    return self

  def __exit__(self, *exc) -> None:
    if exc[0] is not None and self._pool is not None:
      self._pool.terminate()
    self.close()

  def __del__(self):
    # An abandoned build (an exception in TFDS, Ctrl-C) must not leave workers behind.
    if getattr(self, "_pool", None) is not None:
      self._pool.terminate()
