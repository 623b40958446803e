"""Metrics people read: JSON lines, TensorBoard event files (tensorboardX, no TF), stdout.

Only process 0 writes; the others get a writer that drops everything, so callers
never branch on the process index.
"""

from __future__ import annotations

import json
import sys

import jax

from stress_jax import cli, jsonio, storage


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
      row[key] = value  # NaN and infinities become null in the file
      self._tensorboard.add_scalar(key, value, int(step))
    self._jsonl.write(jsonio.dumps(row) + "\n")
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


class MetricsLogError(cli.UserError):
  """metrics.jsonl holds a line that is not JSON before its last line."""


def check_log(workdir) -> tuple[list[dict], int]:
  """The rows of metrics.jsonl, and whether its last line is a crash's partial write.

  A run killed mid-write leaves a partial last line: it is left for `truncate_metrics`
  to drop. An undecodable line anywhere else is damage a crash does not do: refused,
  naming the line, before the run changes anything in the workdir.
  Returns (rows, 1 if the last line is to be dropped else 0).
  """
  path = storage.as_path(workdir) / "metrics.jsonl"
  if not path.exists():
    return [], 0
  lines = [line for line in path.read_text().splitlines() if line.strip()]
  rows = []
  for number, line in enumerate(lines, start=1):
    try:
      row = json.loads(line)
      if not isinstance(row, dict):
        raise ValueError("not an object")
    except ValueError:
      if number == len(lines):
        return rows, 1
      raise MetricsLogError(
        f"{path} line {number} is not a JSON row ({line[:40]!r}); remove the line or the file "
        "to resume"
      ) from None
    rows.append(row)
  return rows, 0


def truncate_metrics(workdir, last_step: int) -> int:
  """Drops metrics.jsonl rows of steps after `last_step` and a crash's partial last line.

  Returns how many lines were dropped; a dropped partial line is reported in one line.
  """
  path = storage.as_path(workdir) / "metrics.jsonl"
  rows, partial = check_log(workdir)
  if partial:
    print(f"{path}: dropped an incomplete last line (a crash mid-write)", file=sys.stderr)
  kept = [row for row in rows if row.get("step", 0) <= last_step]
  dropped = len(rows) - len(kept) + partial
  if dropped:
    _rewrite(path, kept)
  return dropped


def drop_rows(workdir, prefix: str) -> int:
  """Drops the metrics.jsonl rows that log `prefix` metrics (say, "test/"); returns how many."""
  path = storage.as_path(workdir) / "metrics.jsonl"
  if not path.exists():
    return 0
  rows, _ = check_log(workdir)
  kept = [row for row in rows if not any(name.startswith(prefix) for name in row)]
  if len(kept) != len(rows):
    _rewrite(path, kept)
  return len(rows) - len(kept)


def _rewrite(path, rows: list[dict]) -> None:
  text = "".join(jsonio.dumps(row) + "\n" for row in rows)
  if storage.is_remote(path):
    path.write_text(text)  # a bucket object is replaced whole anyway
  else:
    temporary = path.with_suffix(".jsonl.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def read_metrics(workdir) -> list[dict]:
  """The rows of metrics.jsonl; a crash's partial last line is left out."""
  return check_log(workdir)[0]
