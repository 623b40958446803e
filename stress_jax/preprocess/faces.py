"""Find, follow and align one person's face through a video.

Per frame: locate the followed face, fit dlib's 68 landmarks inside its box, and
cut the eye-aligned 112x112 crop with `face_geometry.align_face` (the function the
synthetic data uses too, so both share one geometry).

Locating must be cheap: the ingest has to run at twice real time on two cores,
and dlib's HOG detector costs 5-20 ms on a whole frame. While a face is followed:
- every `verify_every`-th frame a detector confirms it, but only inside a small
  window around the last box, resampled so the face is about 90 px wide (1-2 ms);
- in between it is tracked: the shape predictor is fitted inside a rectangle made
  from the previous frame's landmarks (shifted by the offset between detector box
  and landmarks measured at the last confirmation, since the predictor was trained
  on detector boxes), and the fit has to look like a face and move little.
The predictor returns 68 points even on a bare wall, so tracking alone cannot see
a face leave: frames tracked since the last confirmation are held back and
dropped (no face) if the next check finds nothing. The whole (downscaled) frame
is searched only when the window finds nothing, and while no face is followed at
most every `detect_every` frames.

Which face: the largest one when nothing is followed; after that, the detection
nearest the last known box (within `max_jump` face widths), so a second person in
view does not take over. If the followed face stays away longer than
`reacquire_s`, the largest face is taken again.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
from collections.abc import Iterable, Iterator

import dlib
import numpy as np
from PIL import Image

from stress_jax.faces import geometry as face_geometry
from stress_jax.preprocess import decode
from stress_jax.preprocess.config import PreprocessConfig

CROP_SIZE = face_geometry.CROP_SIZE
# dlib's frontal detector scans an 80x80 window; faces must be at least that big
# in the image it sees.
DETECTOR_WINDOW = 80
# Size the face is scaled to inside the tracking window: comfortably above the
# detector's window, small enough to keep the window cheap.
TRACK_FACE_PX = 90
# Between detector confirmations a tracked fit is rejected if its points moved more
# than this many inter-ocular distances on average since the previous frame (real
# head motion at video rates is a few hundredths).
MAX_TRACK_MOTION = 0.25

_MODELS = None
LANDMARK_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"


def landmark_model_path() -> str:
  """Where `face-recognition-models` keeps dlib's 68-point model.

  Found without importing the package: its __init__ imports pkg_resources, which
  setuptools >= 81 no longer ships.
  """
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("dlib's 68-point model is missing: pip install face-recognition-models")
  return os.path.join(spec.submodule_search_locations[0], "models", LANDMARK_MODEL_FILE)


def load_models():
  """(detector, shape predictor), loaded once per process."""
  global _MODELS
  if _MODELS is None:
    predictor_path = landmark_model_path()
    if not os.path.exists(predictor_path):
      raise FileNotFoundError(f"dlib 68-point model missing at {predictor_path}")
    _MODELS = (dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path))
  return _MODELS


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


def _without_face(time: float, source_index: int) -> FaceFrame:
  return FaceFrame(
    crop=np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8),
    landmarks=np.zeros((68, 2), np.float32),
    has_face=False,
    time=time,
    source_index=source_index,
    box=np.full((4,), np.nan, np.float32),
    image_landmarks=np.full((68, 2), np.nan, np.float32),
  )


def _to_gray(rgb: np.ndarray) -> Image.Image:
  return Image.fromarray(rgb).convert("L")


def _box_of(rect: dlib.rectangle, scale: float = 1.0, offset=(0.0, 0.0)) -> np.ndarray:
  # dlib rectangles are inclusive pixel indices; as continuous coordinates the box
  # spans [left, right + 1). Scaling back from a resampled image happens on those.
  return np.array(
    [
      rect.left() * scale + offset[0],
      rect.top() * scale + offset[1],
      (rect.right() + 1) * scale + offset[0],
      (rect.bottom() + 1) * scale + offset[1],
    ],
    np.float64,
  )


def _centre(box: np.ndarray) -> np.ndarray:
  return 0.5 * (box[:2] + box[2:])


def _width(box: np.ndarray) -> float:
  return float(box[2] - box[0])


class FaceTracker:
  """Chooses the followed person's face box in each frame (see the module docstring)."""

  def __init__(self, config: PreprocessConfig, frame_rate: float):
    self.config = config
    self.detector, self.predictor = load_models()
    scale = DETECTOR_WINDOW / float(config.min_face_px)
    # Below 1 we shrink the frame; above 1 dlib's own 2x pyramid upsampling is
    # cheaper than an enlarged copy and finds faces down to 40 px.
    self.detect_scale = min(1.0, scale)
    self.upsample = 1 if scale > 1.0 else 0
    self.reacquire_frames = max(1, int(round(config.reacquire_s * max(frame_rate, 1e-6))))
    self.anchor = None  # last box of the followed face
    self.frames_since_anchor = 0
    self.tracking = False
    self.frames_since_full = None  # None: never ran
    self.full_detections = 0
    self.window_detections = 0
    self.points = None  # landmarks of the followed face in the previous frame
    self.box_offset = None
    self.frames_since_confirmed = 0

  def _detect_full(self, gray: Image.Image) -> list[np.ndarray]:
    self.full_detections += 1
    self.frames_since_full = 0
    if self.detect_scale < 1.0:
      size = (
        max(1, round(gray.width * self.detect_scale)),
        max(1, round(gray.height * self.detect_scale)),
      )
      small = gray.resize(size, Image.BILINEAR)
      back = (gray.width / size[0] + gray.height / size[1]) / 2
    else:
      small, back = gray, 1.0
    rects = self.detector(np.asarray(small), self.upsample)
    return [_box_of(r, back) for r in rects]

  def _detect_window(self, gray: Image.Image, box: np.ndarray) -> list[np.ndarray]:
    self.window_detections += 1
    side = self.config.roi_margin * _width(box)
    cx, cy = _centre(box)
    x0, y0 = cx - side / 2, cy - side / 2
    out = max(DETECTOR_WINDOW + 8, int(round(self.config.roi_margin * TRACK_FACE_PX)))
    # EXTENT resampling pads with black past the frame edge, so a face near the
    # border keeps the same window geometry.
    window = gray.transform(
      (out, out), Image.Transform.EXTENT, (x0, y0, x0 + side, y0 + side), Image.BILINEAR
    )
    rects = self.detector(np.asarray(window), 0)
    scale = side / out
    return [_box_of(r, scale, (x0, y0)) for r in rects]

  def _nearest(self, boxes: list[np.ndarray], reference: np.ndarray) -> np.ndarray | None:
    if not boxes:
      return None
    distances = [np.linalg.norm(_centre(b) - _centre(reference)) for b in boxes]
    best = int(np.argmin(distances))
    if distances[best] > self.config.max_jump * _width(reference):
      return None
    return boxes[best]

  def _choose(self, boxes: list[np.ndarray]) -> np.ndarray | None:
    if not boxes:
      return None
    if self.anchor is not None and self.frames_since_anchor <= self.reacquire_frames:
      return self._nearest(boxes, self.anchor)
    return max(boxes, key=lambda b: _width(b) * (b[3] - b[1]))

  def locate(self, gray: Image.Image) -> np.ndarray | None:
    """The followed face's box in this frame, or None."""
    box = None
    fresh_anchor = self.anchor is not None and self.frames_since_anchor <= self.reacquire_frames
    if fresh_anchor:
      box = self._nearest(self._detect_window(gray, self.anchor), self.anchor)
    if box is None:
      due = (
        self.tracking
        or self.frames_since_full is None
        or self.frames_since_full + 1 >= self.config.detect_every
      )
      if due:
        box = self._choose(self._detect_full(gray))
      elif self.frames_since_full is not None:
        self.frames_since_full += 1
    elif self.frames_since_full is not None:
      self.frames_since_full += 1
    self.tracking = box is not None
    if box is not None:
      self.anchor = box
      self.frames_since_anchor = 0
    else:
      self.frames_since_anchor += 1
    return box

  def _fit(self, gray: Image.Image, box: np.ndarray) -> np.ndarray | None:
    """68 points in continuous frame coordinates, or None if they do not look like a face."""
    rect = dlib.rectangle(
      int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1
    )
    shape = self.predictor(np.asarray(gray), rect)
    points = face_geometry.from_dlib_points([(p.x, p.y) for p in shape.parts()])
    right, left = face_geometry.eye_centres(points)
    eye_gap = float(np.hypot(*(left - right)))
    # A frontal face's eye centres are about 0.4 detector-box widths apart; far
    # outside that the fit latched onto something else and would align garbage.
    width = _width(box)
    if not 0.2 * width <= eye_gap <= 0.7 * width:
      return None
    if np.any(np.abs(points.mean(0) - _centre(box)) > 0.5 * width):
      return None
    return points

  def _box_from_points(self, points: np.ndarray) -> np.ndarray:
    # The predictor was trained on detector boxes, which sit differently on a face
    # than the landmarks' own bounding box; the offset measured at the last
    # detection keeps the tracked rectangle detector-like.
    low, high = points.min(0), points.max(0)
    size = np.concatenate([high - low, high - low])
    return np.concatenate([low, low]) + self.box_offset * size

  def _remember(self, box: np.ndarray, points: np.ndarray):
    low, high = points.min(0), points.max(0)
    size = np.concatenate([high - low, high - low])
    self.box_offset = (box - np.concatenate([low, low])) / np.maximum(size, 1e-6)
    self.points = points

  def track(self, gray: Image.Image) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
    """(box, landmarks, confirmed) of the followed face here, or (None, None, False).

    confirmed: a detector saw the face in this frame. Between confirmations (at most
    verify_every - 1 frames) the face is only tracked: the rectangle comes from the
    previous frame's landmarks and the fit must move little and keep its shape.
    """
    if (
      self.tracking
      and self.points is not None
      and self.frames_since_confirmed + 1 < self.config.verify_every
    ):
      box = self._box_from_points(self.points)
      points = self._fit(gray, box)
      if points is not None:
        right, left = face_geometry.eye_centres(self.points)
        eye_gap = float(np.hypot(*(left - right)))
        motion = float(np.abs(points - self.points).mean())
        if motion <= MAX_TRACK_MOTION * eye_gap:
          self.points = points
          self.anchor = box
          self.frames_since_anchor = 0
          self.frames_since_confirmed += 1
          if self.frames_since_full is not None:
            self.frames_since_full += 1
          return box, points, False
    box = self.locate(gray)
    points = self._fit(gray, box) if box is not None else None
    if points is None:
      # Also when the detector saw a face the predictor could not fit: the next
      # frame looks afresh rather than following this box.
      self.tracking = False
      self.points = None
      return None, None, False
    self._remember(box, points)
    self.frames_since_confirmed = 0
    return box, points, True


class FacePipeline:
  """Video (file or frame folder) -> per-frame aligned face crops of one person.

  `iter_video` streams `FaceFrame`s; `process_video` stacks them into a
  `VideoFaces`; `clips.make_clips` cuts that into model-ready clips.
  """

  def __init__(self, config: PreprocessConfig | None = None):
    self.config = config or PreprocessConfig()
    load_models()

  def iter_frames(self, frames: Iterable[decode.Frame], frame_rate: float) -> Iterator[FaceFrame]:
    """Processes already-decoded frames (e.g. from a camera) in order."""
    tracker = FaceTracker(self.config, frame_rate)
    # Frames tracked since the last detector confirmation wait here: if the next
    # check finds no face, the face may have left at any of them, so none is kept.
    pending: list[FaceFrame] = []
    for frame in frames:
      gray = _to_gray(frame.rgb)
      box, points, confirmed = tracker.track(gray)
      if points is None:
        for held in pending:
          yield _without_face(held.time, held.source_index)
        pending.clear()
        yield _without_face(frame.time, frame.source_index)
        continue
      crop, crop_landmarks, _ = face_geometry.align_face(frame.rgb, points, CROP_SIZE)
      face = FaceFrame(
        crop=crop,
        landmarks=crop_landmarks,
        has_face=True,
        time=frame.time,
        source_index=frame.source_index,
        box=box.astype(np.float32),
        image_landmarks=points.astype(np.float32),
      )
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
      frames, frames_decoded=stats.frames_decoded, native_fps=stats.native_fps
    )
