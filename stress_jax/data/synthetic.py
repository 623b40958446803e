"""A deterministic simulator of stressed and unstressed talking faces (`stress_faces/synthetic`).

Each subject gets an identity (face shape, eye spacing, brows, mouth, skin, hair,
room, lighting, camera) and one recorded session per class, like the stages of the
Yonsei protocol. A session is a continuous timeline of confounders every class
shares: head motion, speech-like mouth motion, spontaneous blinks, eyebrow flashes,
gaze shifts, illumination drift and camera noise. Clips of `num_frames` frames are
cut from it every `clip_stride` frames.

Stress shows as cue events, each occupying a stretch of a clip's frames and a
region of the face, after the facial-stress literature (blink rate, corrugator
activity, lip pressing, head movement; e.g. Giannakakis et al., "Stress and anxiety
detection using facial cues from videos", BSPC 2017):

  blink_burst   the eyes close 2-4 times in quick succession
  brow_furrow   the brows drop, the inner ends drop further and draw together, and
                vertical creases appear between them
  lip_press     the lips thin, close and pale
  head_jitter   fast small head rotations and shifts, with motion blur

  no_stress      no events
  weak_stress    exactly one event (blink burst, brow furrow or lip press),
                 moderate intensity (0.55-0.7)
  strong_stress  two or three events of different kinds, high intensity (0.85-1.0);
                 head jitter, the least visible cue, appears only here

(binary: no_stress / stress, where stress is the strong profile). Every clip of a
stressed class holds at least one event inside its frames, so its label can be read
from the clip; then `label_noise` of all clips get a uniformly drawn wrong label.

`difficulty` (default 1) scales both sides: cue intensities by 1.3 - 0.3 d, all
confounder amplitudes and rates by 0.5 + 0.5 d.

Frames are drawn in a camera image, then aligned by `face_geometry.align_face`,
the same eye-based similarity the real-video pipeline applies; the stored landmarks
are the drawn points mapped through that alignment.

Determinism: every random draw comes from a generator seeded by
(seed, stream, subject, session[, clip]), so the output is a function of the
config alone, whatever the number of worker processes or the order of work.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence

import numpy as np

from stress_jax.data import face_geometry as fg
from stress_jax.data import records
from stress_jax.data import synthetic_render as render

EVENT_KINDS = ("blink_burst", "brow_furrow", "lip_press", "head_jitter")
# How often each kind is drawn. Head jitter barely changes a single aligned frame,
# so it never appears alone (weak) and only now and then beside other cues (strong).
_WEAK_KIND_WEIGHTS = np.array([1.0, 1.0, 1.0, 0.0]) / 3
_STRONG_KIND_WEIGHTS = np.array([0.3, 0.3, 0.3, 0.1])
_WEAK_INTENSITY = (0.55, 0.7)
_STRONG_INTENSITY = (0.85, 1.0)

LABEL_NAMES = {
  2: ("no_stress", "stress"),
  3: ("no_stress", "weak_stress", "strong_stress"),
}
_STRESS_LEVELS = {2: (0, 2), 3: (0, 1, 2)}

# Independent random streams, so that adding a cue event does not change the
# camera noise or the head motion of the frames around it.
_IDENTITY, _SESSION, _CUES, _NOISE, _LABEL, _JITTER = range(1, 7)

# Where the head turns about, in face units (eye-centre distance ~ 1, y down,
# z towards the camera): roughly the centre of the skull.
_PIVOT = np.array([0.0, 0.5, -1.0])


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
  """Everything the synthetic dataset depends on; the same config gives the same bytes."""

  num_subjects: int = 30
  num_classes: int = 3  # 3: no / weak / strong stress; 2: no stress / stress
  num_frames: int = 16
  clips_per_class_per_subject: int = 12
  clip_stride: int = 20  # frames between clip starts within a session
  # 0: sessions just long enough for the clips at clip_stride; longer: the clips are
  # spread evenly over the session instead (and clip_stride is not used).
  session_frames: int = 0
  fps: float = 15.0
  image_size: int = 160  # square camera frame, before alignment
  difficulty: float = 1.0
  label_noise: float = 0.02
  seed: int = 0

  def __post_init__(self):
    if self.num_classes not in LABEL_NAMES:
      raise ValueError(f"num_classes must be 2 or 3, got {self.num_classes}")
    if self.num_subjects < 1 or self.clips_per_class_per_subject < 1:
      raise ValueError("need at least one subject and one clip per class")
    if self.num_frames < 2 or self.clip_stride < 1:
      raise ValueError("num_frames must be >= 2 and clip_stride >= 1")
    if self.session_frames and (
      self.session_frames < self.num_frames + self.clips_per_class_per_subject - 1
    ):
      raise ValueError(
        f"session_frames={self.session_frames} cannot hold "
        f"{self.clips_per_class_per_subject} distinct clips of {self.num_frames} frames"
      )
    if not 0.0 <= self.label_noise < 1.0:
      raise ValueError("label_noise must be in [0, 1)")
    if self.difficulty < 0 or self.image_size < 64 or self.fps <= 0:
      raise ValueError("difficulty must be >= 0, image_size >= 64 and fps > 0")

  @property
  def num_session_frames(self) -> int:
    return self.session_frames or int(self.clip_starts()[-1]) + self.num_frames

  @property
  def label_names(self) -> tuple[str, ...]:
    return LABEL_NAMES[self.num_classes]

  @property
  def stress_levels(self) -> tuple[int, ...]:
    """Cue profile of each class: 0 none, 1 weak, 2 strong."""
    return _STRESS_LEVELS[self.num_classes]

  @property
  def cue_gain(self) -> float:
    return max(0.3, 1.3 - 0.3 * self.difficulty)

  @property
  def confounder_gain(self) -> float:
    return 0.5 + 0.5 * self.difficulty

  def clip_starts(self) -> np.ndarray:
    """First frame of each clip within its session."""
    count = self.clips_per_class_per_subject
    if self.session_frames:
      return np.linspace(0, self.session_frames - self.num_frames, count).round().astype(int)
    return np.arange(count) * self.clip_stride

  @property
  def num_examples(self) -> int:
    return self.num_subjects * self.num_classes * self.clips_per_class_per_subject


def split_name(subject: int, num_subjects: int | None = None) -> str:
  """`s00`, `s01`, ... (wider when there are 100 subjects or more)."""
  width = max(2, len(str(max((num_subjects or 1) - 1, 0))))
  return f"s{subject:0{width}d}"


def video_name(subject: int, session: int, num_subjects: int | None = None) -> str:
  return f"{split_name(subject, num_subjects)}_session{session}"


def _rng(config: SimulatorConfig, stream: int, *keys: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([config.seed, stream, *keys]))


# --------------------------------------------------------------------------- identity

_SKIN_TONES = np.array(
  [[246, 216, 192], [228, 188, 156], [205, 152, 116], [168, 116, 84], [120, 82, 58], [86, 58, 42]],
  np.float64,
)
_HAIR = np.array(
  [[26, 22, 20], [56, 38, 28], [92, 62, 40], [146, 104, 64], [196, 164, 110], [150, 146, 140],
   [122, 58, 34]],
  np.float64,
)  # fmt: skip
_IRIS = np.array(
  [[72, 46, 30], [102, 70, 42], [64, 94, 132], [74, 112, 82], [42, 32, 28]], np.float64
)


@dataclasses.dataclass(frozen=True)
class Identity:
  """One simulated person, their room and camera. Face lengths in eye-distance units."""

  eye_spacing: float
  eye_width: float
  eye_height: float
  eye_tilt: float
  brow_height: float  # resting height above the eye line: a per-subject baseline
  brow_arch: float
  brow_length: float
  brow_gap: float
  brow_thickness: float
  nose_length: float
  nose_width: float
  mouth_y: float
  mouth_width: float
  upper_lip: float
  lower_lip: float
  jaw_width: float
  jaw_top: float
  chin_y: float
  jaw_power: float
  forehead: float
  hairline: float
  hair_part: float
  hair_volume: float
  hair_length: float
  px_per_unit: float
  head_x: float
  head_y: float
  palette: render.Palette
  wall: tuple[float, float, float]
  room_shapes: tuple[tuple[float, float, float, float], ...]
  room_colours: tuple[tuple[float, float, float], ...]
  light_angle: float
  light_strength: float
  white_balance: tuple[float, float, float]
  noise_sigma: float
  blink_rate: float  # spontaneous blinks per second
  talkativeness: float
  motion: float
  brow_flash_rate: float


def _colour(values) -> tuple[int, int, int]:
  return tuple(int(round(v)) for v in np.clip(values, 0, 255))


@functools.lru_cache(maxsize=512)
def subject_identity(config: SimulatorConfig, subject: int) -> Identity:
  rng = _rng(config, _IDENTITY, subject)
  u = rng.uniform
  tone = u(0, len(_SKIN_TONES) - 1)
  lo = int(tone)
  skin = _SKIN_TONES[lo] + (_SKIN_TONES[min(lo + 1, len(_SKIN_TONES) - 1)] - _SKIN_TONES[lo]) * (
    tone - lo
  )
  skin = skin + rng.normal(0, 5, 3)
  hair = _HAIR[rng.integers(len(_HAIR))] * u(0.85, 1.15)
  lip = skin * np.array([0.86, 0.6, 0.62]) + np.array([18, 0, 4])
  palette = render.Palette(
    skin=_colour(skin),
    skin_shadow=_colour(skin * 0.82),
    lip=_colour(lip),
    hair=_colour(hair),
    brow=_colour(0.55 * hair + 0.45 * np.minimum(hair, skin) * 0.45),
    iris=_colour(_IRIS[rng.integers(len(_IRIS))]),
    shirt=_colour(rng.uniform(25, 230, 3)),
  )
  grey = u(70, 200)
  wall = grey + 0.45 * (rng.uniform(40, 220, 3) - grey)
  num_shapes = int(rng.integers(2, 5))
  shapes, colours = [], []
  for _ in range(num_shapes):
    x0, y0 = u(-0.1, 0.9), u(-0.1, 0.8)
    shapes.append((x0, y0, x0 + u(0.08, 0.45), y0 + u(0.1, 0.6)))
    colours.append(tuple(np.clip(wall + rng.normal(0, 35, 3), 0, 255)))
  size = config.image_size
  return Identity(
    eye_spacing=u(0.94, 1.06),
    eye_width=u(0.4, 0.48),
    eye_height=u(0.1, 0.135),
    eye_tilt=u(-0.06, 0.1),
    brow_height=u(0.3, 0.42),
    brow_arch=u(0.03, 0.09),
    brow_length=u(0.5, 0.62),
    brow_gap=u(0.3, 0.4),
    brow_thickness=u(0.09, 0.13),
    nose_length=u(0.62, 0.76),
    nose_width=u(0.36, 0.46),
    mouth_y=u(1.1, 1.22),
    mouth_width=u(0.78, 0.96),
    upper_lip=u(0.075, 0.105),
    lower_lip=u(0.09, 0.13),
    jaw_width=u(1.0, 1.12),
    jaw_top=u(0.02, 0.12),
    chin_y=u(1.62, 1.76),
    jaw_power=u(2.0, 2.8),
    forehead=u(1.05, 1.2),
    hairline=u(0.62, 0.8),
    hair_part=u(-0.1, 0.1),
    hair_volume=u(0.0, 1.0),
    hair_length=u(-0.6, 1.6),
    px_per_unit=size * u(0.215, 0.245),
    head_x=size * 0.5 + u(-4, 4),
    head_y=size * 0.41 + u(-3, 3),
    palette=palette,
    wall=tuple(wall),
    room_shapes=tuple(shapes),
    room_colours=tuple(colours),
    light_angle=u(0, 2 * np.pi),
    light_strength=u(0.15, 0.4),
    white_balance=(1 + u(-0.06, 0.06), 1.0, 1 + u(-0.06, 0.06)),
    noise_sigma=u(1.5, 3.5),
    blink_rate=u(0.2, 0.45),
    talkativeness=u(0.6, 1.2),
    motion=u(0.6, 1.3),
    brow_flash_rate=u(0.08, 0.2),
  )


# ---------------------------------------------------------------------------- session


class _Smooth:
  """A smooth random signal: a sum of three sinusoids with unit RMS."""

  def __init__(self, rng: np.random.Generator, lo_hz: float, hi_hz: float):
    self.freq = rng.uniform(lo_hz, hi_hz, 3)
    self.phase = rng.uniform(0, 2 * np.pi, 3)
    weights = rng.uniform(0.5, 1.0, 3)
    self.weights = weights * np.sqrt(2) / np.linalg.norm(weights)

  def __call__(self, t: np.ndarray) -> np.ndarray:
    angles = 2 * np.pi * self.freq * t[:, None] + self.phase
    return np.sin(angles) @ self.weights


def _poisson_times(rng: np.random.Generator, rate: float, duration: float) -> np.ndarray:
  count = rng.poisson(rate * duration)
  return np.sort(rng.uniform(-0.5, duration, count))


@dataclasses.dataclass
class _Session:
  signals: dict[str, _Smooth]
  blink_times: np.ndarray
  blink_widths: np.ndarray
  flash_starts: np.ndarray
  flash_ends: np.ndarray
  flash_amps: np.ndarray
  saccade_times: np.ndarray
  gaze: np.ndarray  # (len(saccade_times) + 1, 2)


@functools.lru_cache(maxsize=256)
def _session(config: SimulatorConfig, subject: int, session: int) -> _Session:
  rng = _rng(config, _SESSION, subject, session)
  idn = subject_identity(config, subject)
  conf = config.confounder_gain
  duration = config.num_session_frames / config.fps + 1.0
  signals = {
    name: _Smooth(rng, lo, hi)
    for name, (lo, hi) in dict(
      yaw=(0.05, 0.35),
      pitch=(0.05, 0.4),
      roll=(0.05, 0.3),
      tx=(0.03, 0.25),
      ty=(0.03, 0.25),
      zoom=(0.02, 0.15),
      gain=(0.02, 0.12),
      angle=(0.02, 0.1),
      speech=(0.08, 0.3),
      syllable=(2.5, 4.5),
    ).items()
  }
  blinks = _poisson_times(rng, idn.blink_rate * conf, duration)
  flashes = _poisson_times(rng, idn.brow_flash_rate * conf, duration)
  flash_len = rng.uniform(0.4, 0.9, len(flashes))
  saccades = _poisson_times(rng, 0.8, duration)
  gaze = np.concatenate(
    [np.zeros((1, 2)), rng.uniform([-0.05, -0.025], [0.05, 0.025], (len(saccades), 2))]
  )
  return _Session(
    signals=signals,
    blink_times=blinks,
    blink_widths=rng.uniform(0.18, 0.3, len(blinks)),
    flash_starts=flashes,
    flash_ends=flashes + flash_len,
    flash_amps=rng.uniform(0.5, 1.0, len(flashes)),
    saccade_times=saccades,
    gaze=gaze,
  )


def _blink_closure(t: np.ndarray, centres: np.ndarray, widths: np.ndarray) -> np.ndarray:
  """Eyelid closure in [0, 1] at times t: flat-topped triangles, fully shut near each centre."""
  if len(centres) == 0:
    return np.zeros_like(t)
  distance = np.abs(t[:, None] - centres[None]) / (0.5 * widths[None])
  return np.clip(1.6 * (1 - distance), 0, 1).max(axis=1)


# ------------------------------------------------------------------------- cue events


@dataclasses.dataclass(frozen=True)
class CueEvent:
  """A stress cue occupying frames [start, end) of a clip."""

  kind: str
  start: int
  end: int
  intensity: float


def schedule_cues(config: SimulatorConfig, subject: int, session: int, clip: int) -> list[CueEvent]:
  """The cue events of one clip; session = class index (its cue profile)."""
  level = config.stress_levels[session]
  if level == 0:
    return []
  rng = _rng(config, _CUES, subject, session, clip)
  if level == 1:
    count, (lo, hi), weights = 1, _WEAK_INTENSITY, _WEAK_KIND_WEIGHTS
  else:
    count, (lo, hi), weights = int(rng.integers(2, 4)), _STRONG_INTENSITY, _STRONG_KIND_WEIGHTS
  kinds = rng.choice(len(EVENT_KINDS), size=count, replace=False, p=weights)
  events = []
  num_frames, fps = config.num_frames, config.fps
  for kind_index in kinds:
    kind = EVENT_KINDS[kind_index]
    intensity = float(rng.uniform(lo, hi)) * config.cue_gain
    if kind == "blink_burst":
      seconds = _burst_blinks(intensity) * 0.24
    elif kind == "head_jitter":
      seconds = rng.uniform(0.45, 0.7)
    else:
      seconds = rng.uniform(0.55, 0.9)
    length = int(np.clip(round(seconds * fps), 2, num_frames))
    start = int(rng.integers(0, num_frames - length + 1))
    events.append(CueEvent(kind, start, start + length, intensity))
  return events


def _burst_blinks(intensity: float) -> int:
  return int(np.clip(2 + round(2 * intensity), 2, 4))


def clip_label(config: SimulatorConfig, subject: int, session: int, clip: int) -> int:
  """The stored label: the session's class, or with probability `label_noise` another one."""
  rng = _rng(config, _LABEL, subject, session, clip)
  if rng.random() < config.label_noise:
    return int((session + rng.integers(1, config.num_classes)) % config.num_classes)
  return session


def cue_frames(events: Sequence[CueEvent], num_frames: int) -> np.ndarray:
  mask = np.zeros(num_frames, bool)
  for event in events:
    mask[event.start : event.end] = True
  return mask


def _ramp(event: CueEvent, num_frames: int) -> np.ndarray:
  """Onset, hold and offset inside the event's frames; zero outside them."""
  length = event.end - event.start
  k = np.arange(length)
  ramp = np.minimum(1.0, np.minimum((k + 1) / 3.0, (length - k) / 3.0))
  out = np.zeros(num_frames)
  out[event.start : event.end] = ramp
  return out


_CUE_LANDMARKS = {
  "blink_burst": (np.r_[fg.RIGHT_EYE, fg.LEFT_EYE], 0.055, 1.0),
  "brow_furrow": (np.r_[19, 20, 21, 22, 23, 24, 27], 0.06, 1.0),
  "lip_press": (fg.OUTER_LIP, 0.05, 1.0),
  # Jitter moves the whole head; mark the face broadly but faintly.
  "head_jitter": (np.r_[fg.JAW, fg.NOSE_BRIDGE], 0.08, 0.4),
}


def cue_region(
  events: Sequence[CueEvent], landmarks: np.ndarray, size: int = fg.CROP_SIZE
) -> np.ndarray:
  """(size, size) map in [0, 1]: Gaussian blobs around the landmarks each event acts on.

  landmarks: (T, 68, 2) crop coordinates / size; each event uses its own frames.
  """
  region = np.zeros((size, size), np.float32)
  centres = (np.arange(size) + 0.5) / size
  for event in events:
    indices, sigma, weight = _CUE_LANDMARKS[event.kind]
    points = landmarks[event.start : event.end, indices].mean(axis=0)
    dx = (centres[None, :] - points[:, 0, None]) ** 2  # (P, x)
    dy = (centres[None, :] - points[:, 1, None]) ** 2  # (P, y)
    nearest = (dy[:, :, None] + dx[:, None, :]).min(axis=0)
    region = np.maximum(region, weight * np.exp(-nearest / (2 * sigma**2)).astype(np.float32))
  return region


# ------------------------------------------------------------------------ face model


@dataclasses.dataclass
class _Expression:
  eye_open: tuple[float, float]
  brow_drop: float
  brow_raise: float
  mouth_open: float
  lip_press: float
  gaze: np.ndarray


def _superellipse(a: float, b: float, power: float, theta: np.ndarray):
  c, s = np.cos(theta), np.sin(theta)
  return -a * np.sign(c) * np.abs(c) ** (2 / power), b * np.sign(s) * np.abs(s) ** (2 / power)


_JAW_THETA = np.linspace(0, np.pi, 17)
_TOP_THETA = np.linspace(np.pi, 2 * np.pi, 15)
_BROW_U = np.linspace(0, 1, 5)  # outer end (0) to inner end (1)
_BROW_PROFILE = np.array([0.1, 0.8, 1.0, 0.75, 0.3])


def _face_points(idn: Identity, e: _Expression) -> dict[str, np.ndarray]:
  """3D points of the face in face units; 'landmarks' are the 68 in iBUG order."""
  lm = np.zeros((68, 3))
  press = float(np.clip(e.lip_press, 0, 1))
  opening = e.mouth_open

  # Jaw 0..16: the lower half of a superellipse from the subject's right ear to the left.
  theta = _JAW_THETA
  x, y = _superellipse(idn.jaw_width, idn.chin_y - idn.jaw_top, idn.jaw_power, theta)
  y = y + idn.jaw_top + 0.8 * opening * np.sin(theta) ** 2  # the jaw drops as the mouth opens
  lm[0:17] = np.stack([x, y, 0.1 - 0.7 * np.abs(np.cos(theta))], axis=1)

  # Brows: u runs from the outer end (0) to the inner end (1).
  u, profile = _BROW_U, _BROW_PROFILE
  height = -idn.brow_height - idn.brow_arch * (profile - profile.mean())
  height = height + e.brow_drop * (0.07 + 0.09 * u) - e.brow_raise * (0.09 + 0.03 * u)
  inner = idn.brow_gap / 2 - e.brow_drop * 0.08 * u
  brow_x = inner + idn.brow_length * (1 - u)  # distance from the midline
  brow_z = 0.12 - 0.2 * (1 - u)
  half_thick = 0.5 * idn.brow_thickness * (0.55 + 0.45 * u)
  brows = []
  for side, order in ((-1, slice(None)), (1, slice(None, None, -1))):
    centre = np.stack([side * brow_x, height, brow_z], axis=1)[order]
    brows.append(centre)
  lm[17:22], lm[22:27] = brows
  brow_polygons = []
  for centre, order in ((brows[0], slice(None)), (brows[1], slice(None, None, -1))):
    thick = half_thick[order][:, None] * np.array([0, 1, 0])
    brow_polygons.append(np.concatenate([centre - thick, (centre + thick)[::-1]]))

  # Eyes: both listed corner, upper lid, corner, lower lid, left to right in the image.
  # The closed lid line sits where the six-point mean stays put, so blinks do not
  # move the eye centre (and with it the whole aligned crop).
  h = idn.eye_height
  closed = -h / 8
  xs = idn.eye_width * np.array([-0.5, -1 / 6, 1 / 6, 0.5, 1 / 6, -1 / 6])
  for start, side, opening_eye in ((36, -1, e.eye_open[0]), (42, 1, e.eye_open[1])):
    up = closed + (-h - closed) * opening_eye
    down = closed + (0.75 * h - closed) * opening_eye
    ys = np.array([0, up, up, 0, down, down]) - idn.eye_tilt * xs * side
    cx = side * idn.eye_spacing / 2
    lm[start : start + 6] = np.stack([cx + xs, ys, 0.03 - 0.1 * np.abs(xs) / idn.eye_width], axis=1)

  # Nose.
  lm[27:31] = np.stack(
    [np.zeros(4), np.linspace(-0.08, idn.nose_length, 4), [0.1, 0.2, 0.3, 0.42]], axis=1
  )
  lm[31:36] = np.stack(
    [
      idn.nose_width / 2 * np.array([-1, -0.5, 0, 0.5, 1]),
      idn.nose_length + np.array([0.06, 0.1, 0.12, 0.1, 0.06]),
      [0.18, 0.25, 0.3, 0.25, 0.18],
    ],
    axis=1,
  )

  # Mouth: pressing thins and narrows the lips and shuts the mouth.
  w = idn.mouth_width / 2 * (1 - 0.08 * press)
  ul = idn.upper_lip * (1 - 0.72 * press)
  ll = idn.lower_lip * (1 - 0.72 * press)
  o = opening
  outer = [
    (-w, 0), (-0.62 * w, -0.8 * ul), (-0.24 * w, -1.05 * ul), (0, -0.85 * ul),
    (0.24 * w, -1.05 * ul), (0.62 * w, -0.8 * ul), (w, 0), (0.62 * w, 0.8 * ll + o),
    (0.26 * w, ll + o), (0, 1.05 * ll + o), (-0.26 * w, ll + o), (-0.62 * w, 0.8 * ll + o),
  ]  # fmt: skip
  inner = [
    (-0.85 * w, 0), (-0.3 * w, -0.05 * ul), (0, -0.04 * ul), (0.3 * w, -0.05 * ul),
    (0.85 * w, 0), (0.3 * w, 0.9 * o), (0, o), (-0.3 * w, 0.9 * o),
  ]  # fmt: skip
  mouth = np.array(outer + inner)
  mouth_z = 0.22 - 0.2 * (mouth[:, 0] / (idn.mouth_width / 2)) ** 2
  lm[48:68] = np.column_stack([mouth[:, 0], mouth[:, 1] + idn.mouth_y, mouth_z])

  # Render-only points: the top of the head, hair, ears, irises, furrow creases.
  theta = _TOP_THETA
  top = idn.forehead + idn.jaw_top
  x, y = _superellipse(idn.jaw_width, top, 2.3, theta)
  head_top = np.stack([x, y + idn.jaw_top, -0.1 - 0.6 * np.abs(np.cos(theta))], axis=1)
  head = np.concatenate([lm[0:17], head_top[1:-1]])

  hair_a = idn.jaw_width + 0.1 + 0.2 * idn.hair_volume
  x, y = _superellipse(hair_a, top + 0.12 + 0.3 * idn.hair_volume, 2.3, theta)
  hair_back = np.concatenate(
    [
      [[0.95 * hair_a, idn.hair_length, -0.4]],
      np.stack([x, y + idn.jaw_top, np.full_like(x, -0.4)], axis=1),
      [[-0.95 * hair_a, idn.hair_length, -0.4]],
    ]
  )
  hairline = -idn.forehead * idn.hairline
  x, y = _superellipse(idn.jaw_width * 1.02, top * 1.02, 2.3, theta)
  bx = np.linspace(-0.99, 0.99, 11) * idn.jaw_width
  rel = bx / idn.jaw_width
  by = hairline + idn.hair_part * rel + (idn.jaw_top - 0.2 - hairline) * np.abs(rel) ** 4
  fringe = np.concatenate(
    [
      np.stack([x, y + idn.jaw_top, -0.1 - 0.6 * np.abs(np.cos(theta))], axis=1),
      np.stack([bx, by, 0.1 - 0.6 * rel**2], axis=1),
    ]
  )
  ears = np.array([[-0.97, 0.3, -0.55], [0.97, 0.3, -0.55]]) * np.array([idn.jaw_width, 1, 1])
  irises = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)]) + np.array([e.gaze[0], e.gaze[1], 0.04])

  glabella_y = 0.5 * (lm[21, 1] + lm[22, 1])
  furrow_lines = np.zeros((0, 2, 3))
  if e.brow_drop > 0.02:
    length = 0.05 + 0.1 * min(e.brow_drop, 1.2)
    segments = []
    for side in (-1, 1):
      top_point = [side * 0.07, glabella_y - 0.02, 0.14]
      bottom_point = [side * 0.045, glabella_y - 0.02 + length, 0.15]
      segments.append([top_point, bottom_point])
    furrow_lines = np.array(segments)
  return dict(
    landmarks=lm,
    head=head,
    hair_back=hair_back,
    fringe=fringe,
    ears=ears,
    irises=irises,
    brow_polygons=np.stack(brow_polygons),
    furrow_lines=furrow_lines,
  )


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
  y, p, r = np.deg2rad([yaw, pitch, roll])
  ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
  rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
  rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
  return rz @ rx @ ry


# -------------------------------------------------------------------------- the clip


@dataclasses.dataclass
class Clip:
  """One rendered clip and what went into it."""

  frames: np.ndarray  # (T, 112, 112, 3) uint8 aligned crops
  landmarks: np.ndarray  # (T, 68, 2) float32 crop coords / 112
  cue_frames: np.ndarray  # (T,) bool
  cue_region: np.ndarray  # (112, 112) float32
  events: list[CueEvent]
  label: int  # after label noise
  true_label: int
  subject: str
  video: str
  start_frame: int
  camera_frames: np.ndarray | None = None  # (T, S, S, 3) uint8 as drawn, when asked for
  camera_landmarks: np.ndarray | None = None  # (T, 68, 2) camera pixels
  matrices: np.ndarray | None = None  # (T, 2, 3) camera -> crop


def _frame_states(
  config: SimulatorConfig, subject: int, session: int, clip: int, events: Sequence[CueEvent]
) -> dict[str, np.ndarray]:
  """Per-frame pose, lighting and expression of a clip: session confounders plus cues."""
  idn = subject_identity(config, subject)
  ses = _session(config, subject, session)
  conf = config.confounder_gain
  num_frames = config.num_frames
  start = int(config.clip_starts()[clip])
  t = (start + np.arange(num_frames)) / config.fps
  sig = ses.signals
  motion = idn.motion * conf
  state = dict(
    yaw=8.0 * motion * sig["yaw"](t),
    pitch=5.0 * motion * sig["pitch"](t),
    roll=4.0 * motion * sig["roll"](t),
    tx=5.0 * motion * sig["tx"](t),
    ty=3.5 * motion * sig["ty"](t),
    zoom=1 + 0.03 * motion * sig["zoom"](t),
    gain=1 + 0.08 * conf * sig["gain"](t),
    angle=idn.light_angle + 0.3 * conf * sig["angle"](t),
    blur=np.zeros(num_frames),
  )
  spontaneous = _blink_closure(t, ses.blink_times, ses.blink_widths)
  talking = np.clip(0.6 + 0.8 * sig["speech"](t), 0, 1)
  mouth = np.clip(
    0.07 * idn.talkativeness * conf * talking * np.maximum(sig["syllable"](t), 0), 0, 0.2
  )
  flashes = np.clip(
    np.minimum(t[:, None] - ses.flash_starts, ses.flash_ends - t[:, None]) / 0.12, 0, 1
  )
  brow_raise = (flashes * ses.flash_amps).max(axis=1, initial=0.0) * min(conf, 1.5)
  gaze = ses.gaze[np.searchsorted(ses.saccade_times, t)]

  burst = np.zeros(num_frames)
  brow_drop = np.zeros(num_frames)
  press = np.zeros(num_frames)
  for event in events:
    if event.kind == "blink_burst":
      count = _burst_blinks(event.intensity)
      length = event.end - event.start
      centres = event.start + (np.arange(count) + 0.5) * length / count
      closure = _blink_closure(
        np.arange(num_frames, dtype=np.float64), centres, np.full(count, 3.0)
      )
      inside = cue_frames([event], num_frames)
      depth = min(1.0, 0.6 + 0.45 * event.intensity)
      burst = np.maximum(burst, np.where(inside, closure * depth, 0))
    elif event.kind == "brow_furrow":
      brow_drop = np.maximum(brow_drop, event.intensity * _ramp(event, num_frames))
    elif event.kind == "lip_press":
      press = np.maximum(press, min(event.intensity, 1.0) * _ramp(event, num_frames))
    elif event.kind == "head_jitter":
      rng = _rng(config, _JITTER, subject, session, clip, event.start)
      frames = slice(event.start, event.end)
      length = event.end - event.start
      shake = rng.uniform(-1, 1, (5, length)) * event.intensity
      state["yaw"][frames] += 9.0 * shake[0]
      state["pitch"][frames] += 6.0 * shake[1]
      state["roll"][frames] += 6.0 * shake[2]
      state["tx"][frames] += 3.0 * shake[3]
      state["ty"][frames] += 3.0 * shake[4]
      state["blur"][frames] = 1.0
    else:
      raise ValueError(f"unknown cue kind {event.kind!r}")
  eye_open = 1 - np.maximum(spontaneous, burst)
  state.update(
    eye_open=eye_open,
    brow_drop=brow_drop,
    brow_raise=brow_raise,
    mouth_open=mouth * (1 - np.clip(press, 0, 1)),
    lip_press=press,
    gaze=gaze,
  )
  return state


def _project(
  points: np.ndarray, rotation: np.ndarray, centre: np.ndarray, scale: float
) -> np.ndarray:
  rotated = (points - _PIVOT) @ rotation.T + _PIVOT
  return centre + scale * rotated[..., :2]


def _paint_dots(image: np.ndarray, points: np.ndarray, colour=(0, 255, 0), sigma: float = 1.2):
  """Anti-aliased Gaussian dots at continuous coordinates (for checking the alignment)."""
  size_y, size_x = image.shape[:2]
  xs, ys = np.arange(size_x) + 0.5, np.arange(size_y) + 0.5
  weight = np.zeros((size_y, size_x))
  for x, y in points:
    weight = np.maximum(
      weight, np.exp(-((ys[:, None] - y) ** 2 + (xs[None] - x) ** 2) / (2 * sigma**2))
    )
  return image * (1 - weight[..., None]) + np.asarray(colour, np.float64) * weight[..., None]


@functools.lru_cache(maxsize=4)
def _noise_bank(seed: int, size: int) -> np.ndarray:
  """Unit Gaussian camera noise, (2 size, 2 size, 3) float32.

  Drawing fresh noise for every frame cost more than drawing the face; frames take
  a randomly placed window of this bank instead, which no model can tell apart.
  """
  rng = np.random.default_rng(np.random.SeedSequence([seed, _NOISE]))
  return rng.standard_normal((2 * size, 2 * size, 3), dtype=np.float32)


def simulate_clip(
  config: SimulatorConfig,
  subject: int,
  session: int,
  clip: int,
  *,
  events: Sequence[CueEvent] | None = None,
  keep_camera: bool = False,
  dot_landmarks: Sequence[int] = (),
) -> Clip:
  """Renders clip `clip` of subject `subject`'s session `session` (= its class).

  events: override the scheduled cue events (None: `schedule_cues`).
  keep_camera: also return the camera frames (as drawn: before lighting and
    noise), landmarks and alignment matrices.
  dot_landmarks: paint a green dot on these landmarks in the camera image
    (before alignment), to check that the crop and the landmarks agree.
  """
  if not (0 <= subject < config.num_subjects and 0 <= session < config.num_classes):
    raise ValueError(f"no subject {subject} / session {session} in this config")
  if not 0 <= clip < config.clips_per_class_per_subject:
    raise ValueError(f"clip {clip} out of range")
  if events is None:
    events = schedule_cues(config, subject, session, clip)
  events = list(events)
  idn = subject_identity(config, subject)
  state = _frame_states(config, subject, session, clip, events)
  num_frames, size = config.num_frames, config.image_size
  noise_rng = _rng(config, _NOISE, subject, session, clip)
  background = render.background_canvas(
    size, idn.wall, np.array(idn.room_shapes), np.array(idn.room_colours)
  )
  crop_grid = np.arange(fg.CROP_SIZE) + 0.5
  bank = _noise_bank(config.seed, fg.CROP_SIZE)
  noise_sigma = np.float32(idn.noise_sigma * config.confounder_gain)
  white_balance = np.asarray(idn.white_balance, np.float32)

  crops = np.zeros((num_frames, fg.CROP_SIZE, fg.CROP_SIZE, 3), np.uint8)
  crop_landmarks = np.zeros((num_frames, 68, 2), np.float32)
  camera = np.zeros((num_frames, size, size, 3), np.uint8) if keep_camera else None
  camera_landmarks = np.zeros((num_frames, 68, 2))
  matrices = np.zeros((num_frames, 2, 3))
  previous_centre = None
  for f in range(num_frames):
    expression = _Expression(
      eye_open=(state["eye_open"][f], state["eye_open"][f]),
      brow_drop=state["brow_drop"][f],
      brow_raise=state["brow_raise"][f],
      mouth_open=state["mouth_open"][f],
      lip_press=state["lip_press"][f],
      gaze=state["gaze"][f],
    )
    pts = _face_points(idn, expression)
    rotation = _rotation(state["yaw"][f], state["pitch"][f], state["roll"][f])
    centre = np.array([idn.head_x + state["tx"][f], idn.head_y + state["ty"][f]])
    scale = idn.px_per_unit * state["zoom"][f]
    flat = _project(
      np.concatenate([v.reshape(-1, 3) for v in pts.values()]), rotation, centre, scale
    )
    proj, used = {}, 0
    for name, points in pts.items():
      count = points.size // 3
      proj[name] = flat[used : used + count].reshape(*points.shape[:-1], 2)
      used += count
    body = centre + scale * np.array(
      [[-0.42 * idn.jaw_width, 0.9], [0.42 * idn.jaw_width, 0.9], [0.55, 3.5], [-0.55, 3.5]]
    )
    shoulders = centre + scale * np.array(
      [[-2.6, 4.5], [-2.3, 2.6], [-0.9, 2.15], [0.9, 2.15], [2.3, 2.6], [2.6, 4.5]]
    )
    geo = render.FrameGeometry(
      landmarks=proj["landmarks"],
      head=proj["head"],
      hair_back=proj["hair_back"],
      fringe=proj["fringe"],
      ears=proj["ears"],
      ear_radii=(0.13 * scale, 0.26 * scale),
      brow_polygons=tuple(proj["brow_polygons"]),
      irises=proj["irises"],
      iris_radius=0.1 * scale,
      furrow_lines=proj["furrow_lines"],
      neck=body,
      shoulders=shoulders,
      px_per_unit=scale,
    )
    look = render.FrameLook(
      eye_open=expression.eye_open,
      mouth_open=expression.mouth_open,
      lip_press=expression.lip_press,
      furrow=expression.brow_drop,
    )
    image = render.draw_face(background, geo, look, idn.palette)
    face_centre = proj["landmarks"].mean(axis=0)
    if state["blur"][f] and previous_centre is not None:
      # A fast head movement smears the frame along the motion within the exposure.
      step = 0.5 * (face_centre - previous_centre)
      shifts = [np.round(step * k).astype(int) for k in (-0.5, 0.5)]
      blurred = image.astype(np.float32)
      for shift in shifts:
        blurred += np.roll(image, (shift[1], shift[0]), axis=(0, 1))
      image = np.round(blurred / 3).astype(np.uint8)
    previous_centre = face_centre
    if dot_landmarks:
      dotted = _paint_dots(image.astype(np.float64), proj["landmarks"][list(dot_landmarks)])
      image = np.round(dotted).astype(np.uint8)
    crop, crop_landmarks[f], matrices[f] = fg.align_face(image, proj["landmarks"])
    # Lighting and sensor noise act on the camera image; both are applied after the
    # warp, in crop pixels, because that is half the pixels. The light gradient is
    # linear in camera coordinates, so mapping it through the inverse warp is exact.
    to_camera = fg.invert_affine(matrices[f]) / size
    angle = state["angle"][f]
    direction = np.array([np.cos(angle), np.sin(angle)]) * idn.light_strength
    slope = direction @ to_camera[:, :2]
    offset = direction @ (to_camera[:, 2] - 0.5)
    shade = state["gain"][f] * (
      1 + offset + slope[0] * crop_grid[None, :] + slope[1] * crop_grid[:, None]
    )
    dy, dx = noise_rng.integers(0, fg.CROP_SIZE, 2)
    lit = crop * (shade[..., None].astype(np.float32) * white_balance)
    lit += bank[dy : dy + fg.CROP_SIZE, dx : dx + fg.CROP_SIZE] * noise_sigma
    crops[f] = np.clip(np.round(lit), 0, 255).astype(np.uint8)
    camera_landmarks[f] = proj["landmarks"]
    if camera is not None:
      camera[f] = image

  return Clip(
    frames=crops,
    landmarks=crop_landmarks,
    cue_frames=cue_frames(events, num_frames),
    cue_region=cue_region(events, crop_landmarks),
    events=events,
    label=clip_label(config, subject, session, clip),
    true_label=session,
    subject=split_name(subject, config.num_subjects),
    video=video_name(subject, session, config.num_subjects),
    start_frame=int(config.clip_starts()[clip]),
    camera_frames=camera,
    camera_landmarks=camera_landmarks if keep_camera else None,
    matrices=matrices if keep_camera else None,
  )


# -------------------------------------------------------------------------- records


def clip_example(clip: Clip) -> dict:
  """The `records.clip_features(..., synthetic=True)` example of a clip."""
  return dict(
    frames=records.encode_frames(clip.frames),
    landmarks=clip.landmarks.astype(np.float32),
    frame_mask=np.ones(len(clip.frames), bool),
    label=int(clip.label),
    subject=clip.subject,
    video=clip.video,
    start_frame=np.int32(clip.start_frame),
    cue_frames=clip.cue_frames,
    cue_region=clip.cue_region,
  )


def clip_key(clip: Clip) -> str:
  return f"{clip.video}_{clip.start_frame:06d}"


def subject_tasks(config: SimulatorConfig, subject: int) -> list[tuple[int, int, int]]:
  return [
    (subject, session, clip)
    for session in range(config.num_classes)
    for clip in range(config.clips_per_class_per_subject)
  ]


def _render_task(args: tuple[SimulatorConfig, int, int, int]) -> tuple[str, dict]:
  config, subject, session, clip = args
  rendered = simulate_clip(config, subject, session, clip)
  return clip_key(rendered), clip_example(rendered)


def default_num_workers() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def _default_start_method() -> str:
  # fork lets the workers inherit the imported modules instead of importing TFDS
  # again (seconds each). Not once JAX is loaded: its threads make fork unsafe (a
  # child can inherit a lock another thread held), so then workers are spawned.
  if "jax" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
    return "spawn"
  return "fork"


class RecordPool:
  """Renders clips in worker processes and hands back (key, example) pairs, subject by subject.

  Every clip is seeded on its own, so the examples do not depend on `num_workers`
  (0 or 1 renders in this process). Use as a context manager, or call `close`.
  """

  def __init__(
    self, config: SimulatorConfig, num_workers: int | None = None, start_method: str | None = None
  ):
    self.config = config
    self.num_workers = default_num_workers() if num_workers is None else num_workers
    self.start_method = start_method or _default_start_method()
    self._pool = None

  def _get_pool(self):
    if self._pool is None and self.num_workers > 1:
      self._pool = multiprocessing.get_context(self.start_method).Pool(self.num_workers)
    return self._pool

  def records(self, subject: int) -> Iterator[tuple[str, dict]]:
    tasks = [(self.config, *task) for task in subject_tasks(self.config, subject)]
    pool = self._get_pool()
    if pool is None:
      yield from map(_render_task, tasks)
    else:
      yield from pool.imap(_render_task, tasks, chunksize=2)

  def close(self) -> None:
    if self._pool is not None:
      self._pool.close()
      self._pool.join()
      self._pool = None

  def __enter__(self) -> RecordPool:
    return self

  def __exit__(self, *exc) -> None:
    if exc[0] is not None and self._pool is not None:
      self._pool.terminate()
    self.close()

  def __del__(self):
    # An abandoned build (an exception in TFDS, Ctrl-C) must not leave workers behind.
    if getattr(self, "_pool", None) is not None:
      self._pool.terminate()
