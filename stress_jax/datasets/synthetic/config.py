"""What a simulated dataset is: its size, classes, difficulty and seed, and the names it writes.

Every random draw of the simulator comes from `rng`, seeded by (seed, stream,
subject, session[, clip]), so the output is a function of the config alone,
whatever the number of worker processes or the order of work.
"""

from __future__ import annotations

import dataclasses

import numpy as np

LABEL_NAMES = {
  2: ("no_stress", "stress"),
  3: ("no_stress", "weak_stress", "strong_stress"),
}
_STRESS_LEVELS = {2: (0, 2), 3: (0, 1, 2)}

# Independent random streams, so that adding a cue event does not change the
# camera noise or the head motion of the frames around it.
IDENTITY, SESSION, CUES, NOISE, LABEL, JITTER = range(1, 7)


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


def rng(config: SimulatorConfig, stream: int, *keys: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence([config.seed, stream, *keys]))
