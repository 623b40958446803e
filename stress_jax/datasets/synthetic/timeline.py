"""A recorded session: the confounders every class shares, as continuous signals over time.

Head motion, speech-like mouth motion, spontaneous blinks, eyebrow flashes, gaze
shifts and illumination drift run through a whole session, so clips cut from it
overlap in time and carry them across clip boundaries. Their amplitudes and rates
scale with `SimulatorConfig.confounder_gain`. Stress cues are added on top of
these states by `cue_effects`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from stress_jax.datasets.synthetic import config as config_lib
from stress_jax.datasets.synthetic import identity
from stress_jax.datasets.synthetic.config import SimulatorConfig


class Smooth:
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
class Session:
  signals: dict[str, Smooth]
  blink_times: np.ndarray
  blink_widths: np.ndarray
  flash_starts: np.ndarray
  flash_ends: np.ndarray
  flash_amps: np.ndarray
  saccade_times: np.ndarray
  gaze: np.ndarray  # (len(saccade_times) + 1, 2)


@functools.lru_cache(maxsize=256)
def session_timeline(config: SimulatorConfig, subject: int, session: int) -> Session:
  rng = config_lib.rng(config, config_lib.SESSION, subject, session)
  idn = identity.subject_identity(config, subject)
  conf = config.confounder_gain
  duration = config.num_session_frames / config.fps + 1.0
  signals = {
    name: Smooth(rng, lo, hi)
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
  return Session(
    signals=signals,
    blink_times=blinks,
    blink_widths=rng.uniform(0.18, 0.3, len(blinks)),
    flash_starts=flashes,
    flash_ends=flashes + flash_len,
    flash_amps=rng.uniform(0.5, 1.0, len(flashes)),
    saccade_times=saccades,
    gaze=gaze,
  )


def blink_closure(t: np.ndarray, centres: np.ndarray, widths: np.ndarray) -> np.ndarray:
  """Eyelid closure in [0, 1] at times t: flat-topped triangles, fully shut near each centre."""
  if len(centres) == 0:
    return np.zeros_like(t)
  distance = np.abs(t[:, None] - centres[None]) / (0.5 * widths[None])
  return np.clip(1.6 * (1 - distance), 0, 1).max(axis=1)


def confounder_states(
  config: SimulatorConfig, subject: int, session: int, clip: int
) -> dict[str, np.ndarray]:
  """Per-frame pose, lighting and expression of a clip from its session alone (no cues).

  `blink` is the spontaneous eyelid closure and `mouth_open` the speech opening;
  `cue_effects.apply_cues` turns them into the final eye and mouth states.
  """
  idn = identity.subject_identity(config, subject)
  ses = session_timeline(config, subject, session)
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
  talking = np.clip(0.6 + 0.8 * sig["speech"](t), 0, 1)
  flashes = np.clip(
    np.minimum(t[:, None] - ses.flash_starts, ses.flash_ends - t[:, None]) / 0.12, 0, 1
  )
  state.update(
    blink=blink_closure(t, ses.blink_times, ses.blink_widths),
    mouth_open=np.clip(
      0.07 * idn.talkativeness * conf * talking * np.maximum(sig["syllable"](t), 0), 0, 0.2
    ),
    brow_raise=(flashes * ses.flash_amps).max(axis=1, initial=0.0) * min(conf, 1.5),
    gaze=ses.gaze[np.searchsorted(ses.saccade_times, t)],
  )
  return state
