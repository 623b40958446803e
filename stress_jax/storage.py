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
import json
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

  One listing of the bucket gives every object's size and version tag (generation or
  ETag); objects whose tag matches the cache's manifest are not fetched again.
  """
  if not is_remote(path):
    return pathlib.Path(path)
  import fsspec

  fs, root = fsspec.core.url_to_fs(str(path).rstrip("/"))
  objects = fs.find(root, detail=True)
  if not objects:
    raise FileNotFoundError(f"{path} does not exist or is empty")
  key = hashlib.sha256(str(path).rstrip("/").encode()).hexdigest()[:16]
  local = cache_root() / f"{pathlib.PurePosixPath(root).name}-{key}"
  manifest_path = local / ".stress_jax_manifest.json"
  manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
  for name, info in sorted(objects.items()):
    relative = os.path.relpath(name, root)
    tag = f"{info.get('size')}:{info.get('generation') or info.get('etag') or info.get('md5Hash')}"
    target = local / relative
    if manifest.get(relative) == tag and target.is_file():
      continue
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    fs.get_file(name, str(partial))
    if partial.stat().st_size != info.get("size", partial.stat().st_size):
      raise OSError(f"incomplete download of {name}")
    partial.replace(target)
    manifest[relative] = tag
    manifest_path.write_text(json.dumps(manifest))
  return local


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
