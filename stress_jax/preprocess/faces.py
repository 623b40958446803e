"""Find, follow and align one person's face through a video.

Per frame: locate the followed face (`tracker.FaceTracker`: detection scale, which
person, detector confirmations and landmark tracking in between), fit dlib's 68
landmarks inside its box, and cut the eye-aligned 112x112 crop with
`face_geometry.align_face` (the function the synthetic data uses too, so both share
one geometry).

The predictor returns 68 points even on a bare wall, so tracking alone cannot see
a face leave: frames tracked since the last confirmation are held back and
dropped (no face) if the next check finds nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image

from stress_jax.faces import geometry as face_geometry
from stress_jax.preprocess import decode
from stress_jax.preprocess.config import PreprocessConfig
from stress_jax.preprocess.models import landmark_model_path, load_models
from stress_jax.preprocess.tracker import FaceTracker

CROP_SIZE = face_geometry.CROP_SIZE


@dataclasses.dataclass
class FaceFrame:
  """One processed frame."""

  crop: np.ndarray  # (112, 112, 3) uint8, zeros without a face
  landmarks: np.ndarray  # (68, 2) float32 crop coords / 112, zeros without a face
  has_face: bool
  time: float  # seconds since the start of the source
  source_index: int  # frame index in the source at its native rate
  box: np.ndarray  # (4,) x0, y0, x1, y1 of the detector box in the frame, NaN without a face
  image_landmarks: np.ndarray  # (68, 2) continuous frame coordinates, NaN without a face


@dataclasses.dataclass
class VideoFaces:
  """A whole source, frame-stacked: what `FacePipeline.process_video` returns."""

  crops: np.ndarray  # (N, 112, 112, 3) uint8
  landmarks: np.ndarray  # (N, 68, 2) float32
  has_face: np.ndarray  # (N,) bool
  timestamps: np.ndarray  # (N,) float64 seconds
  source_index: np.ndarray  # (N,) int64
  boxes: np.ndarray  # (N, 4) float32
  image_landmarks: np.ndarray  # (N, 68, 2) float32
  frames_decoded: int = 0
  native_fps: float = 0.0
  detect_scale: float = 0.0  # full-frame detection scale used (see tracker.detection_scales)

  @property
  def num_frames(self) -> int:
    return int(self.has_face.shape[0])

  @classmethod
  def stack(cls, frames: list[FaceFrame], **extra) -> VideoFaces:
    if not frames:
      return cls(
        crops=np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8),
        landmarks=np.zeros((0, 68, 2), np.float32),
        has_face=np.zeros((0,), bool),
        timestamps=np.zeros((0,), np.float64),
        source_index=np.zeros((0,), np.int64),
        boxes=np.zeros((0, 4), np.float32),
        image_landmarks=np.zeros((0, 68, 2), np.float32),
        **extra,
      )
    return cls(
      crops=np.stack([f.crop for f in frames]),
      landmarks=np.stack([f.landmarks for f in frames]).astype(np.float32),
      has_face=np.array([f.has_face for f in frames], bool),
      timestamps=np.array([f.time for f in frames], np.float64),
      source_index=np.array([f.source_index for f in frames], np.int64),
      boxes=np.stack([f.box for f in frames]).astype(np.float32),
      image_landmarks=np.stack([f.image_landmarks for f in frames]).astype(np.float32),
      **extra,
    )


def _no_face() -> tuple:
  """A frame without a face: zero crop and crop landmarks, NaN box and image landmarks."""
  blank = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8), np.zeros((68, 2), np.float32)
  return (*blank, np.full((4,), np.nan), np.full((68, 2), np.nan))


def _face_frame(frame, found: tuple | None = None) -> FaceFrame:
  """The FaceFrame of `frame` (a decoded frame, or a held FaceFrame that lost its face).

  `found` is (crop, crop landmarks, box, image landmarks) of the face, None without one.
  """
  has_face = found is not None
  crop, landmarks, box, points = found if has_face else _no_face()
  return FaceFrame(
    crop=crop,
    landmarks=landmarks,
    has_face=has_face,
    time=frame.time,
    source_index=frame.source_index,
    box=box.astype(np.float32),
    image_landmarks=points.astype(np.float32),
  )


def _to_gray(rgb: np.ndarray) -> Image.Image:
  return Image.fromarray(rgb).convert("L")


class FacePipeline:
  """Video (file or frame folder) -> per-frame aligned face crops of one person.

  `iter_video` streams `FaceFrame`s; `process_video` stacks them into a
  `VideoFaces`; `clips.make_clips` cuts that into model-ready clips.
  """

  def __init__(self, config: PreprocessConfig | None = None):
    self.config = config or PreprocessConfig()
    self.tracker: FaceTracker | None = None  # the last video's, for its detection scale
    load_models()

  def iter_frames(self, frames: Iterable[decode.Frame], frame_rate: float) -> Iterator[FaceFrame]:
    """Processes already-decoded frames (e.g. from a camera) in order."""
    tracker = FaceTracker(self.config, frame_rate, *load_models())
    self.tracker = tracker
    # Frames tracked since the last detector confirmation wait here: if the next
    # check finds no face, the face may have left at any of them, so none is kept.
    pending: list[FaceFrame] = []
    for frame in frames:
      gray = _to_gray(frame.rgb)
      box, points, confirmed = tracker.track(gray)
      if points is None:
        for held in pending:
          yield _face_frame(held)
        pending.clear()
        yield _face_frame(frame)
        continue
      crop, crop_landmarks, _ = face_geometry.align_face(frame.rgb, points, CROP_SIZE)
      face = _face_frame(frame, (crop, crop_landmarks, box, points))
      if confirmed:
        yield from pending
        pending.clear()
        yield face
      else:
        pending.append(face)
    # The source ended before the next check; these frames passed the tracking
    # checks and nothing speaks against them.
    yield from pending

  def iter_video(
    self,
    path: str | os.PathLike,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    stats: decode.DecodeStats | None = None,
  ) -> Iterator[FaceFrame]:
    """Decodes `path` at `config.fps` and yields one `FaceFrame` per output frame.

    Raises decode.DecodeError (possibly after some frames) if the source is unreadable.
    """
    config = self.config
    stats = stats if stats is not None else decode.DecodeStats()
    frames = decode.read_frames(
      path,
      fps=config.fps,
      start_s=start_s,
      end_s=end_s,
      threads=config.decode_threads,
      image_fps=config.image_fps,
      stats=stats,
    )
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
      return
    # The tracker turns reacquire_s into frames with the output rate; with fps=0
    # that is the source's, known only once decoding has started.
    rate = config.fps or stats.native_fps or config.image_fps
    yield from self.iter_frames(itertools.chain([first], iterator), rate)

  def process_video(
    self, path: str | os.PathLike, *, start_s: float | None = None, end_s: float | None = None
  ) -> VideoFaces:
    stats = decode.DecodeStats()
    frames = list(self.iter_video(path, start_s=start_s, end_s=end_s, stats=stats))
    return VideoFaces.stack(
      frames,
      frames_decoded=stats.frames_decoded,
      native_fps=stats.native_fps,
      detect_scale=self.tracker.detect_scale if self.tracker and frames else 0.0,
    )


__all__ = ["FaceFrame", "FacePipeline", "VideoFaces", "landmark_model_path", "load_models"]
