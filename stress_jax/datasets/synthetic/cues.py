"""Which stress cues a clip carries, when, and how strongly; each subject's own mix; the label.

Stress shows as cue events, each occupying a stretch of a clip's frames. Half of the
kinds move the 68 landmarks, half change only the skin and the eyes' interior, which
the 68 points cannot carry (no iris, no pupil, no skin colour):

  moves the landmarks
    blink_burst     blink rate rises under stress (Giannakakis et al., "Stress and anxiety
                    detection using facial cues from videos", Biomedical Signal Processing
                    and Control, 2017)
    brow_furrow     corrugator activity (Giannakakis et al., 2017)
    lip_press       lip pressing and mouth activity (Giannakakis et al., 2017)
    head_jitter     faster head movement (Giannakakis et al., 2017)
  appearance only
    gaze_aversion   the eyes look away and saccade (the iris moves, the lids do not):
                    Doherty-Sneddon and Phelps, "Gaze aversion: A response to cognitive or
                    social difficulty", Memory & Cognition, 2005; gaze features in
                    Giannakakis et al., 2017
    pupil_dilation  the pupils widen with arousal and mental load: Kahneman and Beatty,
                    "Pupil diameter and load on memory", Science, 1966; Partala and
                    Surakka, "Pupil size variation as an indication of affective
                    processing", International Journal of Human-Computer Studies, 2003
    flush           cheeks and forehead redden, or in some people pale, as facial blood
                    flow changes: Pavlidis, Eberhardt and Levine, "Seeing through the face
                    of deception", Nature, 2002; Kreibig, "Autonomic nervous system
                    activity in emotion: A review", Biological Psychology, 2010
    sweat           perspiration sheen, specular spots on forehead, nose and upper lip:
                    Shastri, Merla, Tsiamyrtzis and Pavlidis, "Imaging facial signs of
                    neurophysiological responses", IEEE Transactions on Biomedical
                    Engineering, 2009

People differ: each subject shows stress through its own cue families
(`subject_profile`: `families_per_subject` of the config's `cue_families`, each with
its own gain, and flushing or pallor), so some subjects' stress is invisible to the
landmarks and others' is mostly geometric. This module only schedules the events; how
they change the face and where they act is `cue_effects`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from stress_jax.datasets.synthetic import config as config_lib
from stress_jax.datasets.synthetic.config import SimulatorConfig
from stress_jax.faces import records

EVENT_KINDS = (
  "blink_burst",
  "brow_furrow",
  "lip_press",
  "head_jitter",
  "gaze_aversion",
  "pupil_dilation",
  "flush",
  "sweat",
)
# Cues the 68 points cannot carry: they change pixels only.
APPEARANCE_KINDS = ("gaze_aversion", "pupil_dilation", "flush", "sweat")
FAMILY_KINDS = {
  "eyes": ("blink_burst", "pupil_dilation"),
  "brows": ("brow_furrow",),
  "mouth": ("lip_press",),
  "skin": ("flush", "sweat"),
  "head": ("head_jitter", "gaze_aversion"),
}
# Head jitter barely changes a single aligned frame, so it never appears alone (weak)
# and only now and then beside other cues (strong).
_RARE = {"head_jitter": 0.3}
_WEAK_INTENSITY = (0.55, 0.7)
_STRONG_INTENSITY = (0.85, 1.0)
MAX_EVENTS = records.MAX_CUE_EVENTS  # the most events a clip can carry


@dataclasses.dataclass(frozen=True)
class CueEvent:
  """A stress cue occupying frames [start, end) of a clip."""

  kind: str
  start: int
  end: int
  intensity: float


@dataclasses.dataclass(frozen=True)
class Profile:
  """How one subject shows stress: its cue families, a gain per family, flush or pallor."""

  families: tuple[str, ...]
  gains: tuple[float, ...]  # one per family
  pallor: bool  # the skin cue pales instead of reddening

  @property
  def kinds(self) -> tuple[str, ...]:
    return tuple(k for family in self.families for k in FAMILY_KINDS[family])

  def gain(self, kind: str) -> float:
    return next(
      g for f, g in zip(self.families, self.gains, strict=True) if kind in FAMILY_KINDS[f]
    )

  def as_dict(self) -> dict:
    return dict(
      families=list(self.families),
      gains=[round(g, 4) for g in self.gains],
      pallor=self.pallor,
    )


@functools.lru_cache(maxsize=1024)
def subject_profile(config: SimulatorConfig, subject: int) -> Profile:
  rng = config_lib.rng(config, config_lib.PROFILE, subject)
  enabled = config.cue_families
  count = min(config.families_per_subject, len(enabled))
  chosen = sorted(rng.choice(len(enabled), size=count, replace=False))
  return Profile(
    families=tuple(enabled[i] for i in chosen),
    gains=tuple(float(g) for g in rng.uniform(0.8, 1.15, count)),
    pallor=bool(rng.random() < 0.3),
  )


def _pick(rng: np.random.Generator, kinds: Sequence[str], count: int) -> list[str]:
  weights = np.array([_RARE.get(k, 1.0) for k in kinds])
  picked = rng.choice(
    len(kinds), size=min(count, len(kinds)), replace=False, p=weights / weights.sum()
  )
  return [kinds[i] for i in picked]


def schedule_cues(config: SimulatorConfig, subject: int, session: int, clip: int) -> list[CueEvent]:
  """The cue events of one clip; session = class index (its cue profile)."""
  level = config.stress_levels[session]
  if level == 0:
    return []
  rng = config_lib.rng(config, config_lib.CUES, subject, session, clip)
  profile = subject_profile(config, subject)
  kinds = list(profile.kinds)
  if level == 1:
    (lo, hi) = _WEAK_INTENSITY
    alone = [k for k in kinds if k != "head_jitter"] or kinds
    chosen = _pick(rng, alone, 1)
  else:
    (lo, hi) = _STRONG_INTENSITY
    chosen = _pick(rng, kinds, int(rng.integers(2, 4)))
  events = []
  num_frames, fps = config.num_frames, config.fps
  for kind in chosen:
    intensity = float(rng.uniform(lo, hi)) * config.cue_gain * profile.gain(kind)
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


def event_rows(events: Sequence[CueEvent]) -> np.ndarray:
  """(MAX_EVENTS, 4) float32 rows (kind index into EVENT_KINDS, start, end, intensity);
  unused rows have kind -1."""
  rows = np.zeros((MAX_EVENTS, 4), np.float32)
  rows[:, 0] = -1
  for row, event in zip(rows, events, strict=False):
    row[:] = (EVENT_KINDS.index(event.kind), event.start, event.end, event.intensity)
  return rows
