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
from stress_jax.faces import records


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
  dilation = np.zeros(num_frames)
  flush = np.zeros(num_frames)
  sweat = np.zeros(num_frames)
  gaze = np.array(state["gaze"], np.float64)
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
    elif event.kind == "gaze_aversion":
      # Away and mostly down, with small saccades between fixations every 2-3 frames.
      rng = config_lib.rng(config, config_lib.JITTER, subject, session, clip, 100 + event.start)
      side = rng.choice([-1.0, 1.0])
      away = np.array([side * (0.07 + 0.04 * min(event.intensity, 1.2)), 0.03])
      hops = np.repeat(rng.uniform(-0.025, 0.025, (num_frames // 2 + 1, 2)), 2, axis=0)
      ramp = _ramp(event, num_frames)[:, None]
      gaze = gaze + ramp * (away + hops[:num_frames] * event.intensity)
    elif event.kind == "pupil_dilation":
      dilation = np.maximum(dilation, min(event.intensity, 1.2) * _ramp(event, num_frames))
    elif event.kind == "flush":
      flush = np.maximum(flush, min(event.intensity, 1.2) * _ramp(event, num_frames))
    elif event.kind == "sweat":
      sweat = np.maximum(sweat, min(event.intensity, 1.2) * _ramp(event, num_frames))
    else:
      raise ValueError(f"unknown cue kind {event.kind!r}")
  state["eye_open"] = 1 - np.maximum(state.pop("blink"), burst)
  state["mouth_open"] = state["mouth_open"] * (1 - np.clip(press, 0, 1))
  # The iris stays inside the eye opening (half an eye width is about 0.22).
  gaze[:, 0] = np.clip(gaze[:, 0], -0.12, 0.12)
  gaze[:, 1] = np.clip(gaze[:, 1], -0.04, 0.05)
  state.update(
    brow_drop=brow_drop,
    lip_press=press,
    gaze=gaze,
    pupil=0.42 + 0.3 * dilation,
    flush=flush,
    sweat=sweat,
  )
  return state


# Points in the face frame (u along the eye line, one unit = the eye-centre distance,
# from the eyes' midpoint; v towards the upper lip, one unit = eyes to upper lip).
CHEEKS_AND_FOREHEAD = np.array([[-0.48, 0.45], [0.48, 0.45], [0.0, -0.58]])
SWEAT_SPOTS = np.array(
  [
    [-0.22, -0.52], [0.06, -0.62], [0.24, -0.5], [-0.06, -0.46], [0.15, -0.68], [-0.16, -0.66],
    [0.04, 0.4], [-0.03, 0.6], [-0.14, 0.86], [0.13, 0.87],
  ]
)  # fmt: skip


def face_frame_points(landmarks: np.ndarray, uv: np.ndarray) -> np.ndarray:
  """(..., 68, 2) landmarks, (K, 2) face-frame points -> (..., K, 2) in the landmarks' space."""
  right = landmarks[..., 36:42, :].mean(-2)
  left = landmarks[..., 42:48, :].mean(-2)
  origin = 0.5 * (right + left)
  along = left - right
  down = landmarks[..., 51, :] - origin
  return (
    origin[..., None, :]
    + uv[:, 0, None] * along[..., None, :]
    + uv[:, 1, None] * down[..., None, :]
  )


REGION_SIZE = records.CUE_REGION_SIZE  # per-frame maps, a cell is 4x4 crop pixels


def _eyes(lm):
  return np.stack([lm[..., 36:42, :].mean(-2), lm[..., 42:48, :].mean(-2)], axis=-2)


# Each kind: (the points it acts around, from crop landmarks (68, 2) / crop size; blob
# sigma as a share of the crop; weight).
_CUE_POINTS = {
  "blink_burst": (lambda lm: lm[np.r_[fg.RIGHT_EYE, fg.LEFT_EYE]], 0.055, 1.0),
  "brow_furrow": (lambda lm: lm[[19, 20, 21, 22, 23, 24, 27]], 0.06, 1.0),
  # The jaw rises as the pressed mouth closes, so its outline is part of the press.
  "lip_press": (lambda lm: lm[np.r_[fg.OUTER_LIP, 1:16]], 0.05, 1.0),
  # Jitter moves the whole head; mark the face broadly but faintly.
  "head_jitter": (lambda lm: lm[np.r_[fg.JAW, fg.NOSE_BRIDGE]], 0.08, 0.4),
  "gaze_aversion": (_eyes, 0.05, 1.0),
  "pupil_dilation": (_eyes, 0.045, 1.0),
  "flush": (lambda lm: face_frame_points(lm, CHEEKS_AND_FOREHEAD), 0.085, 1.0),
  "sweat": (lambda lm: face_frame_points(lm, SWEAT_SPOTS), 0.045, 1.0),
}


def _blobs(points: np.ndarray, sigma: float, size: int) -> np.ndarray:
  centres = (np.arange(size) + 0.5) / size
  dx = (centres[None, :] - points[:, 0, None]) ** 2  # (P, x)
  dy = (centres[None, :] - points[:, 1, None]) ** 2  # (P, y)
  nearest = (dy[:, :, None] + dx[:, None, :]).min(axis=0)
  return np.exp(-nearest / (2 * sigma**2))


def cue_regions(
  events: Sequence[CueEvent], landmarks: np.ndarray, size: int = REGION_SIZE
) -> np.ndarray:
  """(T, size, size) uint8 maps, 255 = fully inside: each frame marks the events active on it.

  landmarks: (T, 68, 2) crop coordinates / crop size, the renderer's true points (the
  region is truth, whatever the detector stored), so each frame's map follows its face.
  """
  regions = np.zeros((len(landmarks), size, size), np.float32)
  for event in events:
    points_of, sigma, weight = _CUE_POINTS[event.kind]
    for f in range(event.start, event.end):
      blob = weight * _blobs(points_of(landmarks[f]), sigma, size)
      regions[f] = np.maximum(regions[f], blob)
  return np.round(regions * 255).astype(np.uint8)
