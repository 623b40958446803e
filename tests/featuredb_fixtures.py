"""Test-only writers of feature-map databases (random maps with the released layout)."""

from __future__ import annotations

import os

import numpy as np

from stress_jax.featuredb.layout import FEATURE_SHAPE, format_timestamp, parse_timestamp_ms
from stress_jax.featuredb.yonsei import STAGE_NAMES

FRAME_BYTES = int(np.prod(FEATURE_SHAPE)) * 4  # one float32 map, without the .npy header


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
  """A Yonsei-like database with the real layout; returns the number of frames written."""
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


def write_indexed(folder: str, indices, *, rng, dtype=np.float32) -> dict[int, np.ndarray]:
  """Frames named by integer index (zero-padded); returns index -> the map written."""
  os.makedirs(folder, exist_ok=True)
  maps = random_feature_maps(rng, len(indices)).astype(dtype)
  written = {}
  for index, frame in zip(indices, maps, strict=True):
    np.save(os.path.join(folder, f"{index:06d}.npy"), frame)
    written[index] = frame
  return written
