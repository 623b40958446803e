"""A processed source's scratch npz -> clip examples in the `records.clip_features` layout.

`ingest.process_source` writes the npz (JPEG frames, landmarks, mask, clip starts);
the functions here read it back per split and delete it once the split is written.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def _load_scratch(path: str) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as data:
    return {key: data[key] for key in data.files}


def iter_examples(result, num_frames: int) -> Iterator[tuple[str, dict]]:
  """(key, example) pairs of one processed source, in the `records.clip_features` layout."""
  if not result.scratch:
    return
  data = _load_scratch(result.scratch)
  blob = data["jpeg_data"].tobytes()
  offsets = data["jpeg_offsets"]
  for start in data["clip_starts"]:
    window = slice(int(start), int(start) + num_frames)
    frames = [blob[offsets[i] : offsets[i + 1]] for i in range(window.start, window.stop)]
    first = int(data["source_index"][start])
    yield (
      f"{result.video}#{first}",
      dict(
        frames=frames,
        landmarks=data["landmarks"][window],
        frame_mask=data["has_face"][window],
        label=result.label,
        subject=result.subject,
        video=result.video,
        start_frame=np.int32(first),
      ),
    )


class Scratch:
  """Deletes each source's npz once its split is written, and the folder after the last."""

  def __init__(self, folder: Path, splits: Sequence[str]):
    self.folder = folder
    self.pending = set(splits)

  def done(self, split: str, results):
    for r in results:
      if r.scratch:
        Path(r.scratch).unlink(missing_ok=True)
        r.scratch = ""
    self.pending.discard(split)
    if not self.pending:
      shutil.rmtree(self.folder, ignore_errors=True)


def split_examples(split, results, num_frames, scratch: Scratch):
  try:
    for result in results:
      yield from iter_examples(result, num_frames)
  finally:
    scratch.done(split, results)


def clip_features(num_frames: int, label_names: Sequence[str] | None = None):
  """`records.clip_features` for real video; label names may wait for the manifest.

  With label_names None the ClassLabel starts without names: `split_generators`
  gives it the manifest's, TFDS saves them with the dataset, and a later load reads
  them back, so the builder's `_info` does not need the manual dir.
  """
  import tensorflow_datasets as tfds

  from stress_jax.faces import records

  spec = records.clip_features(num_frames, label_names or ("_",), synthetic=False)
  if label_names is not None:
    return spec
  entries = {name: spec[name] for name in spec.keys()}
  entries["label"] = tfds.features.ClassLabel()
  return tfds.features.FeaturesDict(entries)


def set_label_names(features, label_names: Sequence[str]):
  """Gives a ClassLabel built without names (names from the manifest) its names."""
  label = features["label"]
  if label.num_classes is None:
    label.names = list(label_names)
  elif list(label.names) != list(label_names):
    raise ValueError(
      f"the dataset's label names {list(label.names)} differ from the manifest's "
      f"{list(label_names)}"
    )
