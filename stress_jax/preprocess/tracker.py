"""Which face, where: the followed person's box and landmarks, frame after frame.

Locating must be cheap: the ingest has to run at twice real time on two cores,
and dlib's HOG detector is costly on a whole frame. While a face is followed:
- every `verify_every`-th frame a detector confirms it, but only inside a small
  window around the last box, resampled so the face is about 90 px wide;
- in between it is tracked: the shape predictor is fitted inside a rectangle made
  from the previous frame's landmarks (shifted by the offset between detector box
  and landmarks measured at the last confirmation, since the predictor was trained
  on detector boxes), and the fit has to look like a face and move little.
The whole frame is searched only when the window finds nothing, while no face is
followed at most every `detect_every` frames, and every `detect_every` frames as a
census of who else is in view.

Detection scale (see `boxes.detection_scales`): the first full-frame search sees the frame
with its short side near 360 px, so 1080p or 1024x1024 frames are searched at about
a third of their size; while no face has been found yet, each search also tries
finer scales on the same frame, up to faces of 40 px (dlib's 80 px window at 2x),
and the scale that first finds a face is kept for the rest of the video.

Which face: at the start the one `config.follow` ranks first (by default the largest,
most central; `start` records how many faces were in view, which one was taken and
by what rule, for the ingest report and predict). After that, the detection
nearest the last known box (within `max_jump` face widths) that is not closer to
another person's last box: the census keeps the other faces in view, and for a
second after any was seen (CROWD_S) every frame is confirmed by a full-frame detection, so a
person walking across the followed one is recognised as someone else and the
followed person's occluded frames stay empty. After `reacquire_s` without the
followed face (and after any gap over 0.5 s, since someone else may have taken the
seat) a face is taken again only if dlib's face descriptor says it is the same
person (when no descriptor model is installed: the one `config.follow` ranks first).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from stress_jax.faces import geometry as face_geometry
from stress_jax.preprocess import boxes as geo
from stress_jax.preprocess.boxes import DETECTOR_WINDOW, detection_scales
from stress_jax.preprocess.config import PreprocessConfig, describe_follow
from stress_jax.preprocess.models import descriptor_model

# Size the face is scaled to inside the tracking window: comfortably above the
# detector's window, small enough to keep the window cheap.
TRACK_FACE_PX = 90
# Between detector confirmations a tracked fit is rejected if its points moved more
# than this many inter-ocular distances on average since the previous frame (real
# head motion at video rates is a few hundredths).
MAX_TRACK_MOTION = 0.25
# A tracked fit is repeated in the rectangle of its own points when that rectangle
# lies further than this (box widths) from the one the fit started from.
REFIT_SHIFT = 0.02
# Another person counts as near (and every frame is confirmed) this long after seen.
CROWD_S = 1.0
# A face found again after this long without the followed one must be the same
# person (someone may have taken the seat); shorter gaps are blinks and turns.
CHECK_AFTER_GAP_S = 0.5
# dlib's descriptors of one person lie within this distance (its documented 0.6).
SAME_PERSON = 0.6


class FaceTracker:
  """Chooses the followed person's face box in each frame (see the module docstring)."""

  def __init__(self, config: PreprocessConfig, frame_rate: float, detector, predictor):
    self.config = config
    self.detector, self.predictor = detector, predictor
    rate = max(frame_rate, 1e-6)
    self.reacquire_frames = max(1, int(round(config.reacquire_s * rate)))
    self.crowd_frames = max(1, int(round(CROWD_S * rate)))
    self.gap_frames = max(1, int(round(CHECK_AFTER_GAP_S * rate)))
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
    self.start: dict | None = None  # the first choice of whom to follow (start_record)
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
    return [geo.box_of(r, back) for r in self.detector(np.asarray(image), 0)]

  def _detect_full(self, gray: Image.Image) -> list[np.ndarray]:
    self.full_detections += 1
    self.frames_since_full = 0
    boxes = self._detect_at(gray, self.scales[self.level])
    # Until a face the follow rule accepts was found (any face, unless the rule names a
    # region), finer scales are tried on the same frame; the scale that finds one stays
    # (see the module docstring).
    while not self._acceptable(boxes) and not self.scale_locked:
      if self.level + 1 >= len(self.scales):
        break
      self.level += 1
      boxes = self._detect_at(gray, self.scales[self.level])
    if self._acceptable(boxes):
      self.scale_locked = True
    return boxes

  def _acceptable(self, boxes: list[np.ndarray]) -> bool:
    return bool(geo.ranked(boxes, *self.frame_size, self.config.follow))

  def _detect_window(self, gray: Image.Image, box: np.ndarray) -> list[np.ndarray]:
    self.window_detections += 1
    side = self.config.roi_margin * geo.box_width(box)
    cx, cy = geo.centre(box)
    x0, y0 = cx - side / 2, cy - side / 2
    out = max(DETECTOR_WINDOW + 8, int(round(self.config.roi_margin * TRACK_FACE_PX)))
    # EXTENT resampling pads with black past the frame edge, so a face near the
    # border keeps the same window geometry.
    window = gray.transform(
      (out, out), Image.Transform.EXTENT, (x0, y0, x0 + side, y0 + side), Image.BILINEAR
    )
    rects = self.detector(np.asarray(window), 0)
    scale = side / out
    return [geo.box_of(r, scale, (x0, y0)) for r in rects]

  # ------------------------------------------------------------ choosing

  def _is_other(self, box: np.ndarray, reference: np.ndarray) -> bool:
    near = geo.distance(box, reference)
    return any(geo.distance(box, other) < near for other in self.others)

  def _nearest(self, boxes: list[np.ndarray], reference: np.ndarray) -> np.ndarray | None:
    candidates = [b for b in boxes if not self._is_other(b, reference)]
    if not candidates:
      return None
    best = min(candidates, key=lambda b: geo.distance(b, reference))
    if geo.distance(best, reference) > self.config.max_jump * geo.box_width(reference):
      return None
    return best

  def _note_others(self, boxes: list[np.ndarray], chosen: np.ndarray | None):
    """Remembers every face but the followed one (a full-frame view of the scene)."""
    others = [
      b for b in boxes if chosen is None or geo.distance(b, chosen) > 0.5 * geo.box_width(chosen)
    ]
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
    patch, origin = geo.patch(gray, box)
    shape = self.predictor(patch, geo.rect(box, origin))
    rgb = np.repeat(patch[..., None], 3, axis=-1)
    return np.asarray(model.compute_face_descriptor(rgb, shape), np.float64)

  def _shape(self, gray: Image.Image, box: np.ndarray) -> np.ndarray:
    """The predictor's 68 points in frame coordinates, fitted on a patch around the box."""
    patch, origin = geo.patch(gray, box)
    shape = self.predictor(patch, geo.rect(box, origin))
    points = face_geometry.from_dlib_points([(p.x, p.y) for p in shape.parts()])
    return points + np.asarray(origin, points.dtype)

  def _after_gap(self, gray: Image.Image, box: np.ndarray | None) -> np.ndarray | None:
    if box is None or self.frames_since_anchor <= self.gap_frames:
      return box
    return box if self._same_person(gray, box) else self._reject(box)

  def _reject(self, box: np.ndarray) -> None:
    # Someone else: remembered as such, so the next frames need no descriptor for them.
    self.others = [box, *self.others]
    self.frames_since_others = 0
    return None

  def _known_other(self, box: np.ndarray) -> bool:
    return any(geo.distance(box, o) < 0.5 * geo.box_width(o) for o in self.others)

  def _choose(self, gray: Image.Image, boxes: list[np.ndarray]) -> np.ndarray | None:
    if not boxes:
      return None
    if self.anchor is not None and self.frames_since_anchor <= self.reacquire_frames:
      return self._after_gap(gray, self._nearest(boxes, self.anchor))
    ranked = geo.ranked(boxes, *self.frame_size, self.config.follow)
    if self.reference is None:
      chosen = ranked[0] if ranked else None
      if self.start is None or self.start["followed"] is None:
        self.start = self._start_record(boxes, chosen)
      return chosen
    # Lost for long: only the same person may be taken again. Each check costs a
    # face descriptor, so only the two most prominent faces are compared.
    for box in [b for b in ranked if not self._known_other(b)][:2]:
      if self._same_person(gray, box):
        return box
      self._reject(box)
    return None

  def _start_record(self, boxes: list[np.ndarray], chosen: np.ndarray | None) -> dict:
    """Who was in view when a face was first chosen, whom the rule took and why."""
    width, height = self.frame_size
    return dict(
      faces=len(boxes),
      rule=self.config.follow,
      why=describe_follow(self.config.follow) + f" of {len(boxes)} in view",
      followed=None if chosen is None else [round(float(v), 1) for v in chosen],
      others=[[round(float(v), 1) for v in b] for b in boxes if b is not chosen],
      frame_size=[int(width), int(height)],
    )

  @property
  def start_summary(self) -> dict:
    """`start` for a report: faces 0 and nothing followed when no face was ever seen."""
    return self.start or dict(faces=0, rule=self.config.follow, why="no face seen", followed=None)

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
      box = self._after_gap(gray, box)
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
        box = self._after_gap(gray, box)
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
    width = geo.box_width(box)
    if not 0.2 * width <= eye_gap <= 0.7 * width:
      return None
    if np.any(np.abs(points.mean(0) - geo.centre(box)) > 0.5 * width):
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
        # The rectangle came from where the face was a frame ago; where the face has
        # moved, the points are fitted again in the rectangle of where it is now, so
        # they do not lag a moving face (on small faces the lag alone cost up to
        # 0.03 NME). A still face keeps its fit: the second one costs a predictor call.
        moved = self._box_from_points(points)
        if np.abs(moved - box).max() > REFIT_SHIFT * geo.box_width(box):
          box, points = moved, self._fit(gray, moved)
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
