"""Which stress cues a clip carries, when, and how strongly; and the label it is stored with.

Stress shows as cue events, each occupying a stretch of a clip's frames, after the
facial-stress literature (blink rate, corrugator activity, lip pressing, head
movement; e.g. Giannakakis et al., "Stress and anxiety detection using facial
cues from videos", BSPC 2017). This module only schedules them; how they change
the face and where on the face they act is `cue_effects`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from stress_jax.datasets.synthetic import config as config_lib
from stress_jax.datasets.synthetic.config import SimulatorConfig

EVENT_KINDS = ("blink_burst", "brow_furrow", "lip_press", "head_jitter")
# How often each kind is drawn. Head jitter barely changes a single aligned frame,
# so it never appears alone (weak) and only now and then beside other cues (strong).
_WEAK_KIND_WEIGHTS = np.array([1.0, 1.0, 1.0, 0.0]) / 3
_STRONG_KIND_WEIGHTS = np.array([0.3, 0.3, 0.3, 0.1])
_WEAK_INTENSITY = (0.55, 0.7)
_STRONG_INTENSITY = (0.85, 1.0)


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
  rng = config_lib.rng(config, config_lib.CUES, subject, session, clip)
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
      seconds = burst_blinks(intensity) * 0.24
    elif kind == "head_jitter":
      seconds = rng.uniform(0.45, 0.7)
    else:
      seconds = rng.uniform(0.55, 0.9)
    length = int(np.clip(round(seconds * fps), 2, num_frames))
    start = int(rng.integers(0, num_frames - length + 1))
    events.append(CueEvent(kind, start, start + length, intensity))
  return events


def burst_blinks(intensity: float) -> int:
  return int(np.clip(2 + round(2 * intensity), 2, 4))


def clip_label(config: SimulatorConfig, subject: int, session: int, clip: int) -> int:
  """The stored label: the session's class, or with probability `label_noise` another one."""
  rng = config_lib.rng(config, config_lib.LABEL, subject, session, clip)
  if rng.random() < config.label_noise:
    return int((session + rng.integers(1, config.num_classes)) % config.num_classes)
  return session


def cue_frames(events: Sequence[CueEvent], num_frames: int) -> np.ndarray:
  mask = np.zeros(num_frames, bool)
  for event in events:
    mask[event.start : event.end] = True
  return mask
