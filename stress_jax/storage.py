"""Workdirs, datasets and exports in buckets (gs://...) as well as on local disk.

Local paths stay `pathlib.Path`s, so nothing changes for them. Bucket URLs become
`etils.epath.Path`s (gcsfs underneath when TensorFlow is absent), which read, write,
list and delete like local paths. What cannot be done in place in a bucket:

- appending (GCS objects are immutable): metric_writer keeps metrics.jsonl in memory
  and rewrites the object; see `RemoteTextFile`;
- writers that only take local file names (matplotlib, ArrayRecordWriter, TFDS
  builds): they write into `staged_directory`, which uploads on exit;
- readers that only take local file names (an export's weights for predict):
  `local_copy` downloads a folder once into a cache, checking sizes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import tempfile
import time

REMOTE_PREFIXES = ("gs://", "s3://")


def is_remote(path) -> bool:
  return str(path).startswith(REMOTE_PREFIXES)


def as_path(path):
  """A local `pathlib.Path`, or an `epath.Path` for a bucket URL."""
  if is_remote(path):
    from etils import epath

    return epath.Path(str(path))
  return pathlib.Path(path)


def absolute(path):
  """`as_path` made absolute (a bucket URL already is)."""
  path = as_path(path)
  return path if is_remote(path) else path.absolute()


def upload_tree(local: pathlib.Path, remote) -> int:
  """Copies every file under `local` to the same relative place under `remote`."""
  remote = as_path(remote)
  count = 0
  for source in sorted(pathlib.Path(local).rglob("*")):
    if source.is_file():
      target = remote / source.relative_to(local).as_posix()
      target.parent.mkdir(parents=True, exist_ok=True)
      target.write_bytes(source.read_bytes())
      count += 1
  return count


@contextlib.contextmanager
def staged_directory(path):
  """A local directory to write into; for a bucket URL, uploaded to it on exit."""
  if not is_remote(path):
    local = pathlib.Path(path)
    local.mkdir(parents=True, exist_ok=True)
    yield local
    return
  with tempfile.TemporaryDirectory(prefix="stress_jax_stage_") as tmp:
    yield pathlib.Path(tmp)
    upload_tree(pathlib.Path(tmp), path)


def rebase(paths, local: pathlib.Path, destination):
  """Paths under a staged `local` folder -> the same paths under `destination`."""
  if not is_remote(destination):
    return paths
  if isinstance(paths, dict):
    return {k: rebase(v, local, destination) for k, v in paths.items()}
  if isinstance(paths, list):
    return [rebase(v, local, destination) for v in paths]
  if isinstance(paths, pathlib.Path) and paths.is_relative_to(local):
    return as_path(destination) / paths.relative_to(local).as_posix()
  return paths


def cache_root() -> pathlib.Path:
  default = pathlib.Path.home() / ".cache" / "stress_jax" / "buckets"
  return pathlib.Path(os.environ.get("STRESS_JAX_CACHE_DIR", default))


def local_copy(path) -> pathlib.Path:
  """A local folder with the contents of `path`: itself if local, else a cached download.

  Files already in the cache with the bucket's size are not fetched again.
  """
  if not is_remote(path):
    return pathlib.Path(path)
  remote = as_path(path)
  if not remote.exists():
    raise FileNotFoundError(f"{path} does not exist")
  key = hashlib.sha256(str(path).rstrip("/").encode()).hexdigest()[:16]
  local = cache_root() / f"{remote.name}-{key}"
  for source in _walk(remote):
    relative = os.path.relpath(str(source), str(remote))
    target = local / relative
    stat = source.stat()
    mtime = float(stat.mtime or 0)
    if (
      target.is_file()
      and target.stat().st_size == stat.length
      and (not mtime or abs(target.stat().st_mtime - mtime) < 1e-3)
    ):
      continue
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(source.read_bytes())
    if mtime:
      # The object's own time: a later object of the same size is fetched again.
      os.utime(partial, (mtime, mtime))
    partial.replace(target)
  return local


def _walk(remote):
  for child in remote.iterdir():
    if child.is_dir():
      yield from _walk(child)
    else:
      yield child


class RemoteTextFile:
  """A text file in a bucket that grows by lines: kept in memory, rewritten on sync.

  GCS cannot append, so each sync uploads the whole file; syncing at most every
  `interval_s` seconds (and on flush/close) keeps that to a few small uploads.
  """

  def __init__(self, path, interval_s: float = 30.0):
    self.path = as_path(path)
    self.interval_s = interval_s
    self._text = self.path.read_text() if self.path.exists() else ""
    self._synced_at = time.monotonic()
    self._dirty = False

  def write(self, text: str) -> None:
    self._text += text
    self._dirty = True

  def flush(self) -> None:
    """Uploads if the last upload is `interval_s` old (the per-line flush of a log)."""
    if time.monotonic() - self._synced_at >= self.interval_s:
      self.sync()

  def sync(self) -> None:
    if self._dirty:
      self.path.write_text(self._text)
      self._dirty = False
    self._synced_at = time.monotonic()

  def close(self) -> None:
    self.sync()
