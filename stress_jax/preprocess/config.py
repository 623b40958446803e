"""Settings of the video -> aligned-face-clip pipeline, in one flat dataclass.

Flat so that it maps one to one onto an ml_collections section
(`stress_jax/configs/video.py` builds `config.preprocess` from these defaults) and
onto the `video` TFDS builder config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

FOLLOW_RULES = ("prominent", "largest", "central")
FOLLOW_DESCRIPTIONS = {
  "prominent": "the largest, most central face",
  "largest": "the largest face",
  "central": "the face nearest the frame centre",
}


def parse_follow(text: str) -> tuple[str, tuple[float, float, float, float] | None]:
  """`follow` -> (rule, region or None); ValueError naming what is wrong."""
  text = str(text).strip()
  if text in FOLLOW_RULES:
    return text, None
  if text.startswith("region:"):
    try:
      region = tuple(float(v) for v in text[len("region:") :].split(","))
    except ValueError:
      region = ()
    if len(region) == 4 and 0 <= region[0] < region[2] <= 1 and 0 <= region[1] < region[3] <= 1:
      return "region", region
  raise ValueError(
    f"follow {text!r} must be one of {', '.join(FOLLOW_RULES)} or region:x0,y0,x1,y1 "
    "(fractions of the frame, x0 < x1, y0 < y1, each in [0, 1])"
  )


def describe_follow(text: str) -> str:
  rule, region = parse_follow(text)
  if region is None:
    return FOLLOW_DESCRIPTIONS[rule]
  return f"the largest face centred in region {','.join(f'{v:g}' for v in region)}"


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
  # Decoding.
  fps: float = 15.0  # resample every source to this rate; 0 = keep the source's frames
  image_fps: float = 30.0  # the rate a folder of frame images was recorded at
  decode_threads: int = 0  # FFmpeg decoder threads; 0 = FFmpeg's choice

  # Face detection and tracking.
  # Smallest face (source pixels) full-frame detection must find; 0 = adapt to the
  # frame size (coarse first, finer down to 40 px until a face is found).
  min_face_px: int = 0
  detect_every: int = 8  # while no face is followed, full-frame detection every N frames
  verify_every: int = 2  # while following a face, a detector confirms it every N frames
  roi_margin: float = 1.5  # tracking window side, in face widths
  max_jump: float = 1.0  # a re-detected face further than this (face widths) is someone else
  reacquire_s: float = 2.0  # after this long without the followed face, take the largest face
  # Whom to follow when several faces are in view at the start (and when the followed
  # one is lost for long without a face descriptor to recognise them): "prominent"
  # (the largest, most central: area discounted by up to half at the frame's corner),
  # "largest", "central", or "region:x0,y0,x1,y1" (fractions of the frame's width and
  # height: the largest face whose centre lies inside). A manifest row's `follow`
  # column sets it for one source, predict's --follow for one run. "prominent" is the
  # default because at a webcam the person recorded is the large face near the middle
  # (someone leaning in at the edge is large but off-centre, a passer-by behind is
  # central but small), and in an interview shot the interviewee faces the camera near
  # the centre, larger than an interviewer at the side; both rules alone misjudge one.
  follow: str = "prominent"

  # Clips.
  num_frames: int = 16
  stride: int = 8
  min_valid_fraction: float = 0.75  # clips with fewer frames with a face are dropped

  # Ingest.
  workers: int = -1  # video worker processes; -1 = one per CPU core, 0 = in this process

  def replace(self, **changes) -> PreprocessConfig:
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_mapping(cls, values: Mapping[str, Any]) -> PreprocessConfig:
    """Builds a config from a dict or ConfigDict, refusing keys it does not know."""
    values = dict(values)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f"unknown preprocess settings: {', '.join(unknown)}")
    return cls(**values)

  def __post_init__(self):
    problems = []
    if self.fps < 0:
      problems.append("fps must be >= 0")
    if self.image_fps <= 0:
      problems.append("image_fps must be > 0")
    if self.min_face_px and self.min_face_px < 20:
      problems.append("min_face_px must be 0 (adapt to the frame) or >= 20")
    if self.detect_every < 1:
      problems.append("detect_every must be >= 1")
    if self.verify_every < 1:
      problems.append("verify_every must be >= 1")
    if self.roi_margin < 1.2:
      problems.append("roi_margin must be >= 1.2")
    try:
      parse_follow(self.follow)
    except ValueError as error:
      problems.append(str(error))
    if self.num_frames < 1 or self.stride < 1:
      problems.append("num_frames and stride must be >= 1")
    if not 0.0 < self.min_valid_fraction <= 1.0:
      problems.append("min_valid_fraction must be in (0, 1]")
    if problems:
      raise ValueError("; ".join(problems))
