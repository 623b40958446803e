"""How scheduled cue events change a clip's face, and the map of where on the face they act.

`apply_cues` adds the events to the session's per-frame states (eyelids, brows,
lips, head pose); `cue_region` draws the ground-truth map that attention is scored
against. A new cue kind is an entry in `cues.EVENT_KINDS` and its schedule, a
branch in `apply_cues` and an entry in `_CUE_LANDMARKS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stress_jax.datasets.synthetic import config as config_lib
from stress_jax.datasets.synthetic import timeline
from stress_jax.datasets.synthetic.config import SimulatorConfig
from stress_jax.datasets.synthetic.cues import CueEvent, burst_blinks, cue_frames
from stress_jax.faces import geometry as fg


def _ramp(event: CueEvent, num_frames: int) -> np.ndarray:
  """Onset, hold and offset inside the event's frames; zero outside them."""
  length = event.end - event.start
  k = np.arange(length)
  ramp = np.minimum(1.0, np.minimum((k + 1) / 3.0, (length - k) / 3.0))
  out = np.zeros(num_frames)
  out[event.start : event.end] = ramp
  return out


def apply_cues(
  state: dict[str, np.ndarray],
  events: Sequence[CueEvent],
  config: SimulatorConfig,
  subject: int,
  session: int,
  clip: int,
) -> dict[str, np.ndarray]:
  """The final per-frame states: `timeline.confounder_states` with the cue events acting.

  Updates `state` in place and returns it. Head jitter shakes the pose; the other
  kinds close the eyes, lower the brows or press the lips over their frames.
  """
  num_frames = config.num_frames
  burst = np.zeros(num_frames)
  brow_drop = np.zeros(num_frames)
  press = np.zeros(num_frames)
  for event in events:
    if event.kind == "blink_burst":
      count = burst_blinks(event.intensity)
      length = event.end - event.start
      centres = event.start + (np.arange(count) + 0.5) * length / count
      closure = timeline.blink_closure(
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
      rng = config_lib.rng(config, config_lib.JITTER, subject, session, clip, event.start)
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
  state["eye_open"] = 1 - np.maximum(state.pop("blink"), burst)
  state["mouth_open"] = state["mouth_open"] * (1 - np.clip(press, 0, 1))
  state.update(brow_drop=brow_drop, lip_press=press)
  return state


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
