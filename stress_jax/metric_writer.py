"""Metrics people read: JSON lines, TensorBoard event files (tensorboardX, no TF), stdout.

Only process 0 writes; the others get a writer that drops everything, so callers
never branch on the process index.
"""

from __future__ import annotations

import json
import math

import jax

from stress_jax import storage


class MetricWriter:
  """`resume_step`: the step training restarts from; rows logged after it are dropped.

  A run killed after its last checkpoint logged steps that the resumed run logs
  again; metrics.jsonl keeps rows up to `resume_step` only, and TensorBoard is told
  to purge its events after that step.
  """

  def __init__(self, workdir, enabled: bool | None = None, resume_step: int | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._jsonl = None
    self._tensorboard = None
    if self.enabled:
      workdir = storage.as_path(workdir)
      workdir.mkdir(parents=True, exist_ok=True)
      if resume_step is not None:
        truncate_metrics(workdir, resume_step)
      if storage.is_remote(workdir):
        self._jsonl = storage.RemoteTextFile(workdir / "metrics.jsonl")
      else:
        self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
      # tensorboardX writes gs:// event files itself, through google-cloud-storage.
      from tensorboardX import SummaryWriter

      purge = None if resume_step is None else int(resume_step) + 1
      self._tensorboard = SummaryWriter(str(workdir / "tensorboard"), purge_step=purge)

  def write(self, step: int, scalars: dict, prefix: str = "") -> None:
    if not self.enabled:
      return
    row = {"step": int(step)}
    for name, value in scalars.items():
      value = float(value)
      key = f"{prefix}{name}"
      row[key] = value if math.isfinite(value) else str(value)
      self._tensorboard.add_scalar(key, value, int(step))
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()

  def flush(self) -> None:
    if self.enabled:
      self._tensorboard.flush()
      # A bucket's metrics.jsonl uploads now, not at its next periodic sync.
      getattr(self._jsonl, "sync", self._jsonl.flush)()

  def close(self) -> None:
    if self.enabled:
      self._tensorboard.close()
      self._jsonl.close()
      self.enabled = False


def truncate_metrics(workdir, last_step: int) -> int:
  """Drops metrics.jsonl rows of steps after `last_step`; returns how many were dropped."""
  path = storage.as_path(workdir) / "metrics.jsonl"
  if not path.exists():
    return 0
  lines = [line for line in path.read_text().splitlines() if line.strip()]
  kept = [line for line in lines if json.loads(line).get("step", 0) <= last_step]
  if len(kept) != len(lines):
    text = "".join(f"{line}\n" for line in kept)
    if storage.is_remote(path):
      path.write_text(text)  # a bucket object is replaced whole anyway
    else:
      temporary = path.with_suffix(".jsonl.tmp")
      temporary.write_text(text)
      temporary.replace(path)
  return len(lines) - len(kept)


def read_metrics(workdir) -> list[dict]:
  path = storage.as_path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
