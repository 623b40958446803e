"""Which face, where: the followed person's box and landmarks, frame after frame.

Locating must be cheap: the ingest has to run at twice real time on two cores,
and dlib's HOG detector costs 5-20 ms on a whole frame. While a face is followed:
- every `verify_every`-th frame a detector confirms it, but only inside a small
  window around the last box, resampled so the face is about 90 px wide (1-2 ms);
- in between it is tracked: the shape predictor is fitted inside a rectangle made
  from the previous frame's landmarks (shifted by the offset between detector box
  and landmarks measured at the last confirmation, since the predictor was trained
  on detector boxes), and the fit has to look like a face and move little.
The whole frame is searched only when the window finds nothing, while no face is
followed at most every `detect_every` frames, and every `detect_every` frames as a
census of who else is in view.

Detection scale (see `detection_scales`): the first full-frame search sees the frame
with its short side near 360 px, so 1080p or 1024x1024 frames are searched at about
a third of their size; while no face has been found yet, each search also tries
finer scales on the same frame, up to faces of 40 px (dlib's 80 px window at 2x),
and the scale that first finds a face is kept for the rest of the video.

Which face: at the start the largest, most central one. After that, the detection
nearest the last known box (within `max_jump` face widths) that is not closer to
another person's last box: the census keeps the other faces in view, and while any
is near (`crowd` frames) every frame is confirmed by a full-frame detection, so a
person walking across the followed one is recognised as someone else and the
followed person's occluded frames stay empty. After `reacquire_s` without the
followed face, a face is taken again only if dlib's face descriptor says it is the
same person (when no face descriptor model is installed: the largest, most central).
"""

from __future__ import annotations

import math

import dlib
import numpy as np
from PIL import Image

from stress_jax.data import face_geometry
from stress_jax.preprocess.config import PreprocessConfig
from stress_jax.preprocess.models import descriptor_model

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
# The first full-frame search sees the frame with about this short side: people
# filmed on purpose fill a good part of the frame, and 1080p is then searched at a
# third of its size.
BASE_SHORT_SIDE = 360
# The smallest face searched for when the coarse scale finds nothing.
SMALLEST_FACE_PX = 40
# Finer scales stop where the searched image would exceed this many pixels.
MAX_SEARCH_PIXELS = 1_000_000
# Another person counts as near (and every frame is confirmed) this long after seen.
CROWD_S = 1.0
# dlib's descriptors of one person lie within this distance (its documented 0.6).
SAME_PERSON = 0.6


def detection_scales(width: int, height: int, min_face_px: int = 0) -> list[float]:
  """Resampling factors for full-frame detection, coarse to fine.

  A face of w source pixels is found at scale s when w * s >= 80. With
  min_face_px set the scale is fixed at 80 / min_face_px.
  """
  if min_face_px:
    return [DETECTOR_WINDOW / float(min_face_px)]
  finest = min(
    DETECTOR_WINDOW / SMALLEST_FACE_PX, math.sqrt(MAX_SEARCH_PIXELS / max(1, width * height))
  )
  scales = [min(finest, BASE_SHORT_SIDE / max(1, min(width, height)))]
  while scales[-1] * 2 < finest:
    scales.append(scales[-1] * 2)
  # A last step under 15 % finer is not worth another search.
  if scales[-1] * 1.15 < finest:
    scales.append(finest)
  return scales


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


def _distance(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.linalg.norm(_centre(a) - _centre(b)))


def prominence(box: np.ndarray, width: int, height: int) -> float:
  """Area, discounted by up to half for a face at the frame's corner: largest, most central."""
  half_diagonal = 0.5 * math.hypot(width, height)
  off_centre = _distance(box, np.array([0, 0, width, height], np.float64)) / half_diagonal
  return _width(box) * float(box[3] - box[1]) * (1.0 - 0.5 * min(1.0, off_centre))


class FaceTracker:
  """Chooses the followed person's face box in each frame (see the module docstring)."""

  def __init__(self, config: PreprocessConfig, frame_rate: float, detector, predictor):
    self.config = config
    self.detector, self.predictor = detector, predictor
    rate = max(frame_rate, 1e-6)
    self.reacquire_frames = max(1, int(round(config.reacquire_s * rate)))
    self.crowd_frames = max(1, int(round(CROWD_S * rate)))
    self.scales: list[float] | None = None  # set from the first frame's size
    self.level = 0
    self.scale_locked = False
    self.anchor = None  # last box of the followed face
    self.frames_since_anchor = 0
    self.tracking = False
    self.frames_since_full = None  # None: never ran
    self.full_detections = 0
    self.window_detections = 0
    self.points = None  # landmarks of the followed face in the previous frame
    self.box_offset = None
    self.frames_since_confirmed = 0
    self.others: list[np.ndarray] = []  # last boxes of other people in view
    self.frames_since_others = None
    self.reference = None  # face descriptor of the followed person
    self.frame_size = (0, 0)

  @property
  def detect_scale(self) -> float:
    """The full-frame detection scale in use (kept once a face was found)."""
    return float(self.scales[self.level]) if self.scales else 0.0

  @property
  def crowded(self) -> bool:
    return self.frames_since_others is not None and self.frames_since_others < self.crowd_frames

  # ------------------------------------------------------------ detection

  def _detect_at(self, gray: Image.Image, scale: float) -> list[np.ndarray]:
    if abs(scale - 1.0) > 1e-3:
      size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
      image = gray.resize(size, Image.BILINEAR)
      back = (gray.width / size[0] + gray.height / size[1]) / 2
    else:
      image, back = gray, 1.0
    return [_box_of(r, back) for r in self.detector(np.asarray(image), 0)]

  def _detect_full(self, gray: Image.Image) -> list[np.ndarray]:
    self.full_detections += 1
    self.frames_since_full = 0
    boxes = self._detect_at(gray, self.scales[self.level])
    # Until a face was found, finer scales are tried on the same frame; the scale
    # that finds one stays (see the module docstring).
    while not boxes and not self.scale_locked and self.level + 1 < len(self.scales):
      self.level += 1
      boxes = self._detect_at(gray, self.scales[self.level])
    if boxes:
      self.scale_locked = True
    return boxes

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

  # ------------------------------------------------------------ choosing

  def _is_other(self, box: np.ndarray, reference: np.ndarray) -> bool:
    near = _distance(box, reference)
    return any(_distance(box, other) < near for other in self.others)

  def _nearest(self, boxes: list[np.ndarray], reference: np.ndarray) -> np.ndarray | None:
    candidates = [b for b in boxes if not self._is_other(b, reference)]
    if not candidates:
      return None
    best = min(candidates, key=lambda b: _distance(b, reference))
    if _distance(best, reference) > self.config.max_jump * _width(reference):
      return None
    return best

  def _note_others(self, boxes: list[np.ndarray], chosen: np.ndarray | None):
    """Remembers every face but the followed one (a full-frame view of the scene)."""
    others = [b for b in boxes if chosen is None or _distance(b, chosen) > 0.5 * _width(chosen)]
    if others:
      self.others = others
      self.frames_since_others = 0

  def _same_person(self, gray: Image.Image, box: np.ndarray) -> bool:
    model = descriptor_model()
    if model is None or self.reference is None:
      return True
    descriptor = self._descriptor(gray, box)
    return descriptor is not None and np.linalg.norm(descriptor - self.reference) < SAME_PERSON

  def _descriptor(self, gray: Image.Image, box: np.ndarray) -> np.ndarray | None:
    model = descriptor_model()
    if model is None:
      return None
    patch, origin = _patch(gray, box)
    shape = self.predictor(patch, _rect(box, origin))
    rgb = np.repeat(patch[..., None], 3, axis=-1)
    return np.asarray(model.compute_face_descriptor(rgb, shape), np.float64)

  def _shape(self, gray: Image.Image, box: np.ndarray) -> np.ndarray:
    """The predictor's 68 points in frame coordinates, fitted on a patch around the box."""
    patch, origin = _patch(gray, box)
    shape = self.predictor(patch, _rect(box, origin))
    points = face_geometry.from_dlib_points([(p.x, p.y) for p in shape.parts()])
    return points + np.asarray(origin, points.dtype)

  def _choose(self, gray: Image.Image, boxes: list[np.ndarray]) -> np.ndarray | None:
    if not boxes:
      return None
    if self.anchor is not None and self.frames_since_anchor <= self.reacquire_frames:
      return self._nearest(boxes, self.anchor)
    ranked = sorted(boxes, key=lambda b: -prominence(b, *self.frame_size))
    if self.reference is None:
      return ranked[0]
    # Lost for long: only the same person may be taken again. Each check costs a
    # face descriptor, so only the two most prominent faces are compared.
    for box in ranked[:2]:
      if self._same_person(gray, box):
        return box
    return None

  def locate(self, gray: Image.Image) -> np.ndarray | None:
    """The followed face's box in this frame, or None."""
    box = None
    fresh_anchor = self.anchor is not None and self.frames_since_anchor <= self.reacquire_frames
    census_due = self.frames_since_full is None or self.frames_since_full + 1 >= (
      self.config.detect_every
    )
    window_tried = False
    if fresh_anchor and not self.crowded and not census_due:
      window_tried = True
      box = self._nearest(self._detect_window(gray, self.anchor), self.anchor)
      if box is not None:
        self.frames_since_full += 1
        self._age_others()
        return self._found(box)
    if self.tracking or census_due or self.crowded:
      boxes = self._detect_full(gray)
      box = self._choose(gray, boxes)
      if box is None and fresh_anchor and not window_tried and not self.crowded:
        # The coarse full-frame scale may miss a face the window still sees.
        box = self._nearest(self._detect_window(gray, self.anchor), self.anchor)
      self._age_others()
      self._note_others(boxes, box)
    else:
      self.frames_since_full += 1
      self._age_others()
    return self._found(box)

  def _age_others(self):
    if self.frames_since_others is not None:
      self.frames_since_others += 1
      if self.frames_since_others > self.crowd_frames:
        self.others = []

  def _found(self, box: np.ndarray | None) -> np.ndarray | None:
    self.tracking = box is not None
    if box is not None:
      self.anchor = box
      self.frames_since_anchor = 0
    else:
      self.frames_since_anchor += 1
    return box

  # ------------------------------------------------------------ landmarks

  def _fit(self, gray: Image.Image, box: np.ndarray) -> np.ndarray | None:
    """68 points in continuous frame coordinates, or None if they do not look like a face."""
    points = self._shape(gray, box)
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

  def _remember(self, gray: Image.Image, box: np.ndarray, points: np.ndarray):
    low, high = points.min(0), points.max(0)
    size = np.concatenate([high - low, high - low])
    self.box_offset = (box - np.concatenate([low, low])) / np.maximum(size, 1e-6)
    self.points = points
    if self.reference is None and descriptor_model() is not None:
      self.reference = self._descriptor(gray, box)

  def track(self, gray: Image.Image) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
    """(box, landmarks, confirmed) of the followed face here, or (None, None, False).

    confirmed: a detector saw the face in this frame. Between confirmations (at most
    verify_every - 1 frames, none while another person is near) the face is only
    tracked: the rectangle comes from the previous frame's landmarks and the fit
    must move little and keep its shape.
    """
    if self.scales is None:
      self.frame_size = gray.size
      self.scales = detection_scales(gray.width, gray.height, self.config.min_face_px)
    if (
      self.tracking
      and self.points is not None
      and not self.crowded
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
          self._age_others()
          return box, points, False
    box = self.locate(gray)
    points = self._fit(gray, box) if box is not None else None
    if points is None:
      # Also when the detector saw a face the predictor could not fit: the next
      # frame looks afresh rather than following this box.
      self.tracking = False
      self.points = None
      return None, None, False
    self._remember(gray, box, points)
    self.frames_since_confirmed = 0
    return box, points, True


def _rect(box: np.ndarray, origin=(0, 0)) -> dlib.rectangle:
  x0, y0 = origin
  return dlib.rectangle(
    int(round(box[0])) - x0,
    int(round(box[1])) - y0,
    int(round(box[2])) - 1 - x0,
    int(round(box[3])) - 1 - y0,
  )


def _patch(gray: Image.Image, box: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
  """The frame around `box` (a quarter face width each side) and its top-left corner.

  dlib copies the whole image it is handed; on a 1024x1024 frame that copy costs
  more than the landmark fit itself, and the fit reads only pixels near the box.
  """
  margin = 0.25 * _width(box)
  x0 = max(0, int(math.floor(box[0] - margin)))
  y0 = max(0, int(math.floor(box[1] - margin)))
  x1 = min(gray.width, int(math.ceil(box[2] + margin)))
  y1 = min(gray.height, int(math.ceil(box[3] + margin)))
  if x1 <= x0 or y1 <= y0:
    x0, y0, x1, y1 = 0, 0, gray.width, gray.height
  return np.asarray(gray.crop((x0, y0, x1, y1))), (x0, y0)
