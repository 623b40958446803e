"""One run per workdir: a lock file taken before the run reads or writes anything there.

Two runs on one workdir append to the same log and delete each other's checkpoints;
the second is refused in one line naming the holder (host, pid, start time).

Local disks: `<workdir>/run.lock` held with flock(2). The kernel drops the lock when
its process dies, however it dies, so a file left by a killed run is simply taken
over (with one line saying whose it was); no pid guessing, no pid reuse.

Buckets (gs://): the lock object is created only if absent (a generation-0
precondition, atomic on GCS), and a heartbeat thread rewrites it every HEARTBEAT_S.
A lock whose object was last written more than STALE_AFTER_S ago, or whose holder is
a dead pid on this host, belongs to a run that is gone and is taken over, again
conditioned on the generation seen, so two runs cannot both take it over.

Multi-host runs: only process 0 (the one that writes) takes the lock, and tells the
other processes whether it got it (`held_for_run`), so hosts of one run never refuse
each other and all of them stop when the workdir is taken.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import socket
import sys
import threading
import time

from stress_jax import storage
from stress_jax.errors import UserError

LOCK_NAME = "run.lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 300.0


class WorkdirBusy(UserError):
  """Another run holds the workdir."""


def _me() -> dict:
  now = datetime.datetime.now(datetime.UTC)
  return {
    "host": socket.gethostname(),
    "pid": os.getpid(),
    "started": now.isoformat(timespec="seconds"),
  }


def _describe(holder: dict) -> str:
  return (
    f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
    f"started {holder.get('started', '?')}"
  )


def _parse(text: str) -> dict:
  try:
    holder = json.loads(text)
  except ValueError:
    return {}
  return holder if isinstance(holder, dict) else {}


def _busy(workdir, holder: dict) -> WorkdirBusy:
  return WorkdirBusy(
    f"{workdir} is in use by another run ({_describe(holder)}); wait for it to end or "
    "use another --workdir"
  )


def _taking_over(workdir, holder: dict) -> None:
  print(
    f"{workdir}: taking over the lock of a run that is gone ({_describe(holder)})",
    file=sys.stderr,
    flush=True,
  )


def _pid_alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, ValueError, TypeError, OverflowError):
    return True  # someone else's process, or no pid: cannot tell, so assume it lives
  return True


class _LocalLock:
  def __init__(self, workdir):
    import fcntl

    self.workdir = pathlib.Path(workdir).absolute()
    # The folders this lock creates go again on release if nothing else was written,
    # so a run refused before it starts leaves no trace.
    self._created = [p for p in (self.workdir, *self.workdir.parents) if not p.exists()]
    self.path = self.workdir / LOCK_NAME
    try:
      self.workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
      raise UserError(f"cannot use {self.workdir} as a workdir: {error.strerror}") from None
    while True:
      try:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
      except OSError as error:
        self._remove_created()
        raise UserError(f"cannot lock {self.path}: {error.strerror}") from None
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _parse(os.pread(fd, 4096, 0).decode(errors="replace"))
        os.close(fd)
        self._remove_created()
        raise _busy(self.workdir, holder) from None
      # A holder that ended between our open and our flock unlinked the file we hold:
      # lock the file now at the path instead.
      try:
        current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        current = False
      if current:
        break
      os.close(fd)
    previous = _parse(os.pread(fd, 4096, 0).decode(errors="replace"))
    if previous:
      _taking_over(self.workdir, previous)
    data = json.dumps(_me()).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    self._fd = fd

  def _remove_created(self) -> None:
    for folder in self._created:
      try:
        folder.rmdir()
      except OSError:
        return

  def release(self) -> None:
    if self._fd is None:
      return
    with contextlib.suppress(FileNotFoundError):
      self.path.unlink()
    os.close(self._fd)
    self._fd = None
    self._remove_created()


class _BucketLock:
  def __init__(self, workdir):
    from google.api_core import exceptions
    from google.cloud import storage as gcs

    self.workdir = str(workdir).rstrip("/")
    bucket, _, prefix = self.workdir[len("gs://") :].partition("/")
    name = f"{prefix}/{LOCK_NAME}" if prefix else LOCK_NAME
    self._exceptions = exceptions
    self._blob = gcs.Client().bucket(bucket).blob(name)
    self._holder = _me()
    try:
      self._write(if_generation_match=0)
    except exceptions.PreconditionFailed:
      self._take_over_if_stale()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._beat, name="workdir-lock", daemon=True)
    self._thread.start()

  def _write(self, if_generation_match: int) -> None:
    body = json.dumps({**self._holder, "heartbeat": time.time()})
    self._blob.upload_from_string(
      body, content_type="application/json", if_generation_match=if_generation_match
    )
    self._generation = self._blob.generation

  def _take_over_if_stale(self) -> None:
    try:
      self._blob.reload()
      holder = _parse(self._blob.download_as_text(if_generation_match=self._blob.generation))
    except (self._exceptions.NotFound, self._exceptions.PreconditionFailed):
      holder, generation = {}, 0  # released or replaced meanwhile: try once more below
    else:
      generation = self._blob.generation
      updated = self._blob.updated
      age = time.time() - updated.timestamp() if updated else 0.0
      gone = holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid"))
      if age < STALE_AFTER_S and not gone:
        raise _busy(self.workdir, holder)
      _taking_over(self.workdir, holder)
    try:
      self._write(if_generation_match=generation)
    except self._exceptions.PreconditionFailed:
      # Another run took it between our read and our write.
      raise _busy(self.workdir, holder) from None

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      try:
        self._write(if_generation_match=self._generation)
      except self._exceptions.PreconditionFailed:
        print(
          f"{self.workdir}: another run took over this run's lock; stop one of them",
          file=sys.stderr,
          flush=True,
        )
        return
      except Exception:  # a network hiccup: the next beat tries again  # noqa: BLE001
        continue

  def release(self) -> None:
    if self._stop.is_set():
      return
    self._stop.set()
    self._thread.join(timeout=10)
    with contextlib.suppress(self._exceptions.NotFound, self._exceptions.PreconditionFailed):
      self._blob.delete(if_generation_match=self._generation)


def acquire(workdir):
  """Takes `workdir`'s lock (creating the folder) or raises WorkdirBusy naming the holder."""
  if str(workdir).startswith("gs://"):
    return _BucketLock(workdir)
  if storage.is_remote(workdir):
    raise UserError(f"{workdir}: workdirs are local folders or gs:// buckets")
  return _LocalLock(workdir)


@contextlib.contextmanager
def held(workdir):
  lock = acquire(workdir)
  try:
    yield lock
  finally:
    lock.release()


@contextlib.contextmanager
def held_for_run(workdir):
  """`held` by process 0 of a (possibly multi-host) run; every process learns the outcome."""
  import jax

  if jax.process_count() == 1:
    with held(workdir):
      yield
    return
  import numpy as np
  from jax.experimental import multihost_utils

  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = acquire(workdir)
    except UserError as refused:
      error = refused
  ok = multihost_utils.broadcast_one_to_all(np.int32(error is None))
  if error is not None:
    raise error
  if not int(ok):
    raise WorkdirBusy(f"{workdir} is in use by another run (process 0 could not lock it)")
  try:
    yield
  finally:
    if lock is not None:
      lock.release()
