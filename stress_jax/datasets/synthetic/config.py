"""What a simulated dataset is: its size, classes, difficulty and seed, and the names it writes.

Every random draw of the simulator comes from `rng`, seeded by (seed, stream,
subject, session[, clip]), so the output is a function of the config alone,
whatever the number of worker processes or the order of work.

Populations on demand: any field can be overridden by text, `"seed=7,num_subjects=20"`
(`parse_overrides`; a tuple field joins its items with `+`, `cue_families=skin+gaze`),
and each set of overrides gets its own builder config name, `synthetic-num_subjects20-seed7`
(`config_name`), hence its own data folder. `parse_config_name` reads such a name back.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

LABEL_NAMES = {
  2: ("no_stress", "stress"),
  3: ("no_stress", "weak_stress", "strong_stress"),
}
_STRESS_LEVELS = {2: (0, 2), 3: (0, 1, 2)}

# Independent random streams, so that adding a cue event does not change the
# camera noise or the head motion of the frames around it.
IDENTITY, SESSION, CUES, NOISE, LABEL, JITTER, PROFILE = range(1, 8)

# The ways a person can show stress (`cues.FAMILY_KINDS` lists each family's cue kinds).
CUE_FAMILIES = ("eyes", "brows", "mouth", "skin", "head")
# Where the landmarks come from: dlib's 68-point predictor fitted on each rendered
# frame (what the video pipeline stores), or the renderer's exact points.
DETECTORS = ("dlib", "none")


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
  # The cue families this population can show; each subject shows
  # `families_per_subject` of them (fewer if fewer are enabled), drawn per subject.
  cue_families: tuple[str, ...] = CUE_FAMILIES
  families_per_subject: int = 2
  detector: str = "dlib"

  def __post_init__(self):
    if isinstance(self.cue_families, str | list):
      families = (
        self.cue_families.split("+") if isinstance(self.cue_families, str) else self.cue_families
      )
      object.__setattr__(self, "cue_families", tuple(families))
    unknown = sorted(set(self.cue_families) - set(CUE_FAMILIES))
    if unknown or not self.cue_families or len(set(self.cue_families)) != len(self.cue_families):
      raise ValueError(
        f"cue_families must be distinct names from {', '.join(CUE_FAMILIES)}; "
        f"got {'+'.join(self.cue_families) or 'none'}"
      )
    if self.families_per_subject < 1:
      raise ValueError("families_per_subject must be >= 1")
    if self.detector not in DETECTORS:
      raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
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


def rng(config: SimulatorConfig, stream: int, *keys: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([config.seed, stream, *keys]))


def parse_overrides(text: str) -> dict:
  """'seed=7,num_subjects=20' -> {'seed': 7, 'num_subjects': 20}, typed like the fields.

  Raises ValueError naming the first item that is not `field=value` of a known field.
  """
  fields = {f.name: f for f in dataclasses.fields(SimulatorConfig)}
  overrides = {}
  for item in (part.strip() for part in (text or "").split(",")):
    if not item:
      continue
    name, equals, value = item.partition("=")
    name, value = name.strip(), value.strip()
    if not equals or name not in fields or not value:
      raise ValueError(
        f"simulator override {item!r} is not field=value of a SimulatorConfig field "
        f"({', '.join(fields)})"
      )
    overrides[name] = _typed(name, fields[name].default, value)
  return overrides


def _typed(name: str, default, value: str):
  try:
    if isinstance(default, bool):
      return value.lower() in ("1", "true", "yes")
    if isinstance(default, int):
      return int(value)
    if isinstance(default, float):
      return float(value)
  except ValueError:
    raise ValueError(f"simulator field {name} takes a number, not {value!r}") from None
  if isinstance(default, tuple):
    return tuple(item for item in value.split("+") if item)
  return value


def _value_text(value) -> str:
  if isinstance(value, tuple):
    return "+".join(value)
  if isinstance(value, float):
    return f"{value:g}"
  return str(value)


def config_name(base_name: str, base: SimulatorConfig, overrides: dict) -> str:
  """The builder config name of `base` with `overrides`: `base_name-field1value1-...`.

  Overrides equal to the base's value are left out, so a name stands for one
  population only; fields appear in declaration order.
  """
  changed = dataclasses.replace(base, **overrides)
  parts = [base_name]
  for field in dataclasses.fields(SimulatorConfig):
    value = getattr(changed, field.name)
    if field.name in overrides and value != getattr(base, field.name):
      text = _value_text(value)
      if not re.fullmatch(r"[\w+.]+", text):
        raise ValueError(f"simulator field {field.name}={text!r} cannot be part of a config name")
      parts.append(f"{field.name}{text}")
  return "-".join(parts)


def parse_config_name(name: str) -> tuple[str, dict]:
  """`synthetic-seed7-num_subjects20` -> ('synthetic', {'seed': 7, 'num_subjects': 20})."""
  base_name, *parts = name.split("-")
  fields = sorted((f for f in dataclasses.fields(SimulatorConfig)), key=lambda f: -len(f.name))
  overrides = {}
  for part in parts:
    field = next((f for f in fields if part.startswith(f.name) and len(part) > len(f.name)), None)
    if field is None:
      raise ValueError(f"{name!r}: {part!r} names no simulator field")
    overrides[field.name] = _typed(field.name, field.default, part[len(field.name) :])
  return base_name, overrides
