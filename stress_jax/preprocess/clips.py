"""Cut a processed video into fixed-length clips of the shared record layout."""

from __future__ import annotations

import dataclasses

import numpy as np

from stress_jax.faces import geometry as face_geometry
from stress_jax.faces.landmarks import fill_missing_landmarks


def clip_starts(
  has_face: np.ndarray, num_frames: int, stride: int, min_valid_fraction: float
) -> tuple[np.ndarray, int]:
  """Start indices of the clips to keep, and how many windows were dropped.

  Windows of `num_frames` frames start every `stride` frames; a window is kept when
  at least `min_valid_fraction` of its frames have a face. A video shorter than one
  window gives no window at all (neither kept nor dropped).
  """
  has_face = np.asarray(has_face, bool)
  count = has_face.size
  if count < num_frames:
    return np.zeros((0,), np.int64), 0
  starts = np.arange(0, count - num_frames + 1, stride, dtype=np.int64)
  sums = np.concatenate([[0], np.cumsum(has_face, dtype=np.int64)])
  valid = sums[starts + num_frames] - sums[starts]
  # Integer comparison so that e.g. 12 of 16 frames passes a 0.75 threshold exactly.
  needed = int(np.ceil(min_valid_fraction * num_frames - 1e-9))
  keep = valid >= needed
  return starts[keep], int((~keep).sum())


@dataclasses.dataclass
class Clips:
  frames: np.ndarray  # (C, T, 112, 112, 3) uint8
  landmarks: np.ndarray  # (C, T, 68, 2) float32, never NaN
  frame_mask: np.ndarray  # (C, T) bool
  start_frame: np.ndarray  # (C,) int64 source index of each clip's first frame
  start_time: np.ndarray  # (C,) float64 seconds
  dropped: int  # windows with too few face frames

  def __len__(self) -> int:
    return int(self.frame_mask.shape[0])


def make_clips(
  faces, num_frames: int = 16, stride: int = 8, min_valid_fraction: float = 0.75
) -> Clips:
  """`faces.VideoFaces` -> `Clips`. Frames without a face keep their zero crop."""
  starts, dropped = clip_starts(faces.has_face, num_frames, stride, min_valid_fraction)
  landmarks = fill_missing_landmarks(faces.landmarks, faces.has_face)
  index = starts[:, None] + np.arange(num_frames)[None, :]
  size = face_geometry.CROP_SIZE
  return Clips(
    frames=faces.crops[index]
    if len(starts)
    else np.zeros((0, num_frames, size, size, 3), np.uint8),
    landmarks=landmarks[index].astype(np.float32),
    frame_mask=np.asarray(faces.has_face, bool)[index],
    start_frame=np.asarray(faces.source_index, np.int64)[starts],
    start_time=np.asarray(faces.timestamps, np.float64)[starts],
    dropped=dropped,
  )
