"""Write a feature-map database: a trunk run over a built pixel dataset or a video manifest.

  python -m stress_jax.featuredb.write --source=stress_faces/synthetic_small \
      --data_dir=~/tensorflow_datasets --workdir=runs/demo --output=/data/features
  python -m stress_jax.featuredb.write --source=/data/videos --pretrained=resnet18.safetensors \
      --output=/data/features --dtype=float16

--source is a built TFDS pixel dataset (name[/config], read from --data_dir) or a folder
with manifest.csv, which is first ingested as `stress_faces/<--video_config>` (face
finding, alignment, landmarks) into a scratch folder next to the output. The trunk is a
training workdir's checkpoint (--workdir, --checkpoint) or pretrained weights
(--pretrained). The output has the layout of docs/feature_database.md:

  OUTPUT/<subject>/<label>/<index>.npy     one (7, 7, 256) map per frame with a face
  OUTPUT/<subject>/<label>/_landmarks.npz  stem -> (68, 2) crop units (if the source has them)
  OUTPUT/<subject>/<label>/_sources.json   which video and frame each run of stems came from
  OUTPUT/database.json                     label names (the source's order), fps, trunk, ...

Frames of one video that follow each other get consecutive indices; a new video, or a
frame the source masked (padding, no face), starts after a gap of one index, so the
builder never joins them into one clip. Everything is written under OUTPUT.incomplete,
database.json last, and renamed to OUTPUT at the end: a killed write never looks done.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence

import numpy as np
from absl import flags

from stress_jax import cli
from stress_jax.featuredb.layout import (
  FEATURE_SHAPE,
  LANDMARKS_NAME,
  METADATA_NAME,
  format_index,
  general_subject,
)

WRITTEN_DTYPES = ("float32", "float16")

FLAGS = flags.FlagValues()
flags.DEFINE_string(
  "source",
  None,
  "A built pixel dataset (name[/config]) or a manifest dir.",
  flag_values=FLAGS,
  required=True,
)
cli.define_output(FLAGS, "The database folder to write (must not exist).", required=True)
cli.define_data_dir(FLAGS, "Where --source is built (TFDS data_dir).")
cli.define_trained_model(FLAGS, "A training workdir whose trunk to use.", optional=True)
flags.DEFINE_string(
  "pretrained", None, "ResNet-18 weights (.safetensors or .pth).", flag_values=FLAGS
)
flags.DEFINE_string(
  "pixel_norm", "", "With --pretrained: model.pixel_norm (default imagenet).", flag_values=FLAGS
)
flags.DEFINE_enum(
  "dtype", "float32", list(WRITTEN_DTYPES), "Stored dtype of the maps.", flag_values=FLAGS
)
cli.define_overwrite(FLAGS, "Replace an existing --output.")
flags.DEFINE_integer("batch_size", 8, "Clips per trunk call.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string(
  "video_config", "video", "stress_faces config a manifest is ingested as.", flag_values=FLAGS
)


class WriteError(cli.UserError):
  """A problem with what the user asked for; its message is one line naming it."""


def _folder_name(text: str, what: str) -> str:
  if not text or text.startswith(("_", ".")) or "/" in text or "\\" in text:
    raise WriteError(f"{what} {text!r} cannot be a folder name of the database")
  return text


def _subject_folder(subject: str) -> str:
  from stress_jax.preprocess.manifest import split_name

  return subject if general_subject(subject) else split_name(subject)


def _open_pixel_dataset(source: str, data_dir: str | None):
  from stress_jax import input_pipeline
  from stress_jax.configs import common

  data = common.base_config().data
  data.name, data.data_dir, data.build_if_missing = source, data_dir or "", False
  data.num_frames = 0
  try:
    handle = input_pipeline.open_dataset(data)
  except FileNotFoundError as error:
    raise WriteError(str(error).splitlines()[0]) from None
  except Exception as error:  # tfds: unknown name or config
    if type(error).__name__ in ("DatasetNotFoundError", "DatasetVariantBlockedError"):
      raise WriteError(f"--source={source}: {str(error).splitlines()[0]}") from None
    raise
  if handle.input_key != "frames":
    raise WriteError(f"--source={source} holds feature maps, not face frames")
  return handle


def _ingest_videos(manifest_dir: str, scratch: str, video_config: str):
  from stress_jax.data import build

  build.build_dataset(f"stress_faces/{video_config}", data_dir=scratch, manual_dir=manifest_dir)
  return _open_pixel_dataset(f"stress_faces/{video_config}", scratch)


def _fps(handle) -> float | None:
  config = handle.builder.builder_config
  for part in ("simulator", "preprocess"):
    fps = getattr(getattr(config, part, None), "fps", None)
    if fps:
      return float(fps)
  return None


class _Folders:
  """Frames written under temporary names, renamed to their stems at the end."""

  def __init__(self, root: str, dtype: str):
    self.root, self.dtype = root, np.dtype(dtype)
    self.frames: dict[str, dict[tuple[str, int], tuple[str, np.ndarray | None]]] = {}

  def add(self, folder: str, video: str, frame: int, value: np.ndarray, landmarks) -> None:
    entries = self.frames.setdefault(folder, {})
    if (video, frame) in entries:  # overlapping clips hold the same frame twice
      return
    os.makedirs(os.path.join(self.root, folder), exist_ok=True)
    temporary = os.path.join(self.root, folder, f"_tmp_{len(entries)}.npy")
    np.save(temporary, value.astype(self.dtype))
    entries[video, frame] = (temporary, landmarks)

  def finish(self) -> int:
    total = 0
    for folder, entries in self.frames.items():
      stem, previous, runs, landmarks = -2, None, [], {}
      for video, frame in sorted(entries):
        temporary, points = entries[video, frame]
        if previous == (video, frame - 1):
          stem += 1
          runs[-1]["frames"] += 1
        else:
          stem += 2  # a gap of one index: the builder cuts the run here
          runs.append(dict(video=video, first_frame=frame, first_stem=stem, frames=1))
        previous = (video, frame)
        os.replace(temporary, os.path.join(self.root, folder, format_index(stem) + ".npy"))
        if points is not None:
          landmarks[format_index(stem)] = points
      if landmarks:
        np.savez(os.path.join(self.root, folder, LANDMARKS_NAME), **landmarks)
      with open(os.path.join(self.root, folder, "_sources.json"), "w") as handle:
        json.dump(runs, handle, indent=1)
      total += len(entries)
    return total


def write_database(
  output: str,
  source: str,
  *,
  data_dir: str | None = None,
  workdir: str | None = None,
  checkpoint: str = "reported",
  pretrained: str | None = None,
  pixel_norm: str = "",
  dtype: str = "float32",
  overwrite: bool = False,
  batch_size: int = 8,
  video_config: str = "video",
) -> dict:
  """Writes the database; returns what database.json holds."""
  from stress_jax import input_pipeline
  from stress_jax.faces.records import as_text
  from stress_jax.featuredb import trunk as trunk_lib

  output = os.path.abspath(os.path.expanduser(output))
  if bool(workdir) == bool(pretrained):
    raise WriteError("give exactly one trunk: --workdir=W or --pretrained=PATH")
  if pixel_norm and not pretrained:
    raise WriteError("--pixel_norm is for --pretrained; a workdir's trunk keeps its config's")
  if dtype not in WRITTEN_DTYPES:
    raise WriteError(f"--dtype must be one of {WRITTEN_DTYPES}, got {dtype!r}")
  if os.path.exists(output) and not overwrite:
    raise WriteError(f"{output} already exists; pass --overwrite to replace it")
  try:
    trunk = (
      trunk_lib.from_workdir(workdir, checkpoint)
      if workdir
      else trunk_lib.from_pretrained(pretrained, pixel_norm)
    )
  except trunk_lib.TrunkError as error:
    raise WriteError(str(error)) from None

  staging, scratch = output + ".incomplete", output + ".ingest"
  shutil.rmtree(staging, ignore_errors=True)  # a killed earlier write of this output
  is_videos = os.path.isfile(os.path.join(os.path.expanduser(source), "manifest.csv"))
  if is_videos:
    handle = _ingest_videos(os.path.expanduser(source), scratch, video_config)
  else:
    handle = _open_pixel_dataset(source, data_dir)
  for name in handle.label_names:
    _folder_name(name, "label")
  features = trunk.feature_fn()
  folders = _Folders(staging, dtype)
  batches = input_pipeline.eval_batches(
    handle, handle.subjects, batch_size, keep_metadata=True, process_index=0, process_count=1
  )
  for batch in batches:
    inputs = input_pipeline.device_preprocess(
      {"inputs": batch["inputs"], "photometric": batch["photometric"]}
    )["inputs"]
    maps = np.asarray(features(inputs, batch["frame_mask"]))
    if maps.shape[2:] != FEATURE_SHAPE:
      raise WriteError(
        f"the trunk gives {maps.shape[2:]} maps, the database layout holds {FEATURE_SHAPE}: "
        "use a trunk whose last stage width is 256 (e.g. ResNet-18)"
      )
    for row in np.flatnonzero(batch["valid"]):
      label = handle.label_names[int(batch["label"][row])]
      folder = os.path.join(_subject_folder(as_text(batch["subject"][row].item())), label)
      video, start = as_text(batch["video"][row].item()), int(batch["start_frame"][row])
      for t in np.flatnonzero(batch["frame_mask"][row]):
        points = batch["landmarks"][row, t] if handle.has_landmarks else None
        folders.add(folder, video, start + int(t), maps[row, t], points)
  if not folders.frames:
    shutil.rmtree(staging, ignore_errors=True)
    raise WriteError(f"--source={source} has no frame with a face: nothing to write")
  total = folders.finish()
  metadata = dict(
    label_names=list(handle.label_names),
    fps=_fps(handle),
    source=f"videos:{source}" if is_videos else f"tfds:{handle.builder.info.full_name}",
    trunk=trunk.description,
    pixel_norm=trunk.pixel_norm,
    feature_shape=list(FEATURE_SHAPE),
    feature_dtype=dtype,
    frames=total,
    landmarks=bool(handle.has_landmarks),
  )
  # database.json last, then one rename: only a finished write has both.
  with open(os.path.join(staging, METADATA_NAME), "w") as file:
    json.dump(metadata, file, indent=1)
  if os.path.exists(output):
    shutil.rmtree(output)
  os.replace(staging, output)
  shutil.rmtree(scratch, ignore_errors=True)
  return metadata


def main(argv: Sequence[str]) -> None:
  cli.unexpected_arguments(argv)
  # orbax logs every read-only open at INFO/WARNING; nothing there is for the user.
  cli.quiet_logging("error")
  try:
    metadata = write_database(**cli.flag_arguments(FLAGS, write_database))
  except (ValueError, OSError) as error:  # e.g. a manifest the ingest refuses, a full disk
    raise WriteError(cli.one_line(error)) from error
  print(
    f"{FLAGS.output}: {metadata['frames']} frames, labels {', '.join(metadata['label_names'])}"
    f" ({metadata['feature_dtype']}, landmarks: {'yes' if metadata['landmarks'] else 'no'})"
  )


if __name__ == "__main__":
  cli.run(main, FLAGS, "featuredb.write")
