"""What each stream reads before attention: pixel scaling, the landmark descriptor and MLP,
and the clip mean map the "deviation" spatial input compares each frame with."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from stress_jax.errors import ConfigError
from stress_jax.faces.geometry import LEFT_EYE, NUM_LANDMARKS, RIGHT_EYE
from stress_jax.models.attention import masked_mean
from stress_jax.models.config import LANDMARK_REFERENCES, PIXEL_NORMS

# Inter-ocular distance floor in crop units (~1 pixel of a 112 crop; a real face has
# ~0.34). Keeps a degenerate detection from dividing by zero.
MIN_INTEROCULAR = 1e-2

LANDMARK_FEATURES = 6 * NUM_LANDMARKS  # normalised, velocity, deviation: 136 each


def normalize_pixels(x, pixel_norm: str = "fixed"):
  """[0, 1] RGB pixels (..., 3) -> the trunk's input scale for `pixel_norm` (PIXEL_NORMS)."""
  if pixel_norm not in PIXEL_NORMS:
    raise ConfigError(f"pixel_norm must be one of {sorted(PIXEL_NORMS)}, got {pixel_norm!r}")
  mean, std = PIXEL_NORMS[pixel_norm]
  return (x - jnp.asarray(mean, x.dtype)) / jnp.asarray(std, x.dtype)


def masked_median(values, frame_mask):
  """Median over T of (B, T, D) taken over each clip's valid frames; zeros if none.

  Even counts average the two middle values, as numpy.median does.
  """
  mask = frame_mask.astype(bool)
  ordered = jnp.sort(jnp.where(mask[..., None], values, jnp.inf), axis=1)
  count = jnp.sum(mask, axis=1)
  low = jnp.maximum((count - 1) // 2, 0)[:, None, None]
  high = jnp.minimum(count // 2, jnp.maximum(count - 1, 0))[:, None, None]
  pick = lambda index: jnp.take_along_axis(ordered, index, axis=1)  # noqa: E731
  middle = 0.5 * (pick(low) + pick(high))
  return jnp.where((count > 0)[:, None, None], middle, 0.0)


def landmark_features(landmarks, frame_mask, reference: str = "mean"):
  """Per-frame landmark descriptor: (B,T,68,2) crop units, (B,T) -> (B,T,408) float32.

  Each frame's 68 points are centred on their mean (steadier than the eye midpoint,
  which moves with every blink) and divided by the inter-ocular distance (eye centres =
  mean of points 36-41 and 42-47), so the descriptor ignores where the face sits in the
  crop and how large it is. Velocity is the normalised shape minus the previous frame's;
  it is 0 on the first frame and wherever this or the previous frame is masked.
  Deviation is the normalised shape minus the clip's reference shape over its valid
  frames: their mean, or (`reference="median"`) their per-coordinate median. With the
  mean, cue frames pull the reference toward themselves, so the frames *without* a cue
  deviate too (the other way) and say as much about the cue as the cue frames do; the
  median of a clip whose cues fill less than half of it is the person's rest shape,
  and only cue frames deviate from it (docs/spatial_attention.md, section 7).
  Layout: [shape (136), velocity (136), deviation (136)]. Masked frames are zeroed
  before use, so their content cannot reach the output.
  """
  mask = frame_mask.astype(bool)
  points = jnp.where(mask[..., None, None], landmarks.astype(jnp.float32), 0.0)
  centre = jnp.mean(points, axis=-2, keepdims=True)
  right_eye = jnp.mean(points[..., RIGHT_EYE, :], axis=-2)
  left_eye = jnp.mean(points[..., LEFT_EYE, :], axis=-2)
  # sqrt of a floored square rather than norm(): finite gradients at coincident eyes.
  interocular = jnp.sqrt(
    jnp.maximum(jnp.sum(jnp.square(left_eye - right_eye), axis=-1), MIN_INTEROCULAR**2)
  )
  shape = (points - centre) / interocular[..., None, None]
  shape = shape.reshape(*shape.shape[:-2], 2 * NUM_LANDMARKS)
  previous = jnp.concatenate([jnp.zeros_like(shape[:, :1]), shape[:, :-1]], axis=1)
  previous_valid = jnp.concatenate([jnp.zeros_like(mask[:, :1]), mask[:, :-1]], axis=1)
  velocity = jnp.where((mask & previous_valid)[..., None], shape - previous, 0.0)
  # Deviation from the clip's own mean shape: people differ at rest (brow height,
  # mouth width), so a cue is a change against the person's baseline, not a value.
  if reference not in LANDMARK_REFERENCES:
    raise ConfigError(f"landmark_reference must be one of {LANDMARK_REFERENCES}, got {reference!r}")
  if reference == "median":
    baseline = masked_median(shape, mask)
  else:
    weights = mask[..., None].astype(jnp.float32)
    baseline = jnp.sum(shape * weights, axis=1, keepdims=True) / jnp.maximum(
      jnp.sum(weights, axis=1, keepdims=True), 1.0
    )
  deviation = jnp.where(mask[..., None], shape - baseline, 0.0)
  return jnp.concatenate([shape, velocity, deviation], axis=-1)


def clip_mean_map(x, valid, batch: int, steps: int, reference: str = "mean"):
  """(B*T,h,w,C) maps, (B*T,) validity -> each frame's clip mean (or `reference="median"`:
  per-element median) over valid frames, (B*T,h,w,C)."""
  flat, mask = x.reshape(batch, steps, -1), valid.reshape(batch, steps)
  if reference == "median":
    middle = masked_median(flat, mask)[:, 0]
  else:
    middle = masked_mean(flat, mask)
  return jnp.broadcast_to(middle[:, None], flat.shape).reshape(x.shape).astype(x.dtype)


class LandmarkMLP(nn.Module):
  """Two ReLU layers of width `hidden` over each frame's landmark descriptor."""

  hidden: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for layer in (1, 2):
      x = nn.Dense(self.hidden, dtype=self.dtype, param_dtype=jnp.float32, name=f"dense{layer}")(x)
      x = nn.relu(x)
    return x
