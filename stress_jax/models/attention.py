"""Spatial (CBAM-style) and temporal attention, and masked pooling over frames."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stress_jax.errors import ConfigError

# Stands in for -inf on masked scores: exp() of it underflows to exactly 0 in float32,
# while a true -inf would give NaN (inf - inf) on a clip whose frames are all masked.
MASKED_SCORE = -1e9


SPATIAL_MODES = ("residual", "gate", "softmax")
# What the map's conv reads: CBAM's channel mean and max ("pooled"), every channel, or
# ("deviation") the channel mean and max of the map and of its distance from the clip's
# mean map, which needs the clip (the `reference` argument).
SPATIAL_INPUTS = ("pooled", "channels", "deviation")


class SpatialAttention(nn.Module):
  """CBAM spatial attention; by default applied residually: x + a * x.

  logits = conv_kxk([mean_c(x), max_c(x)]) give one (h, w) map per image (`inputs`
  "pooled", CBAM); with `inputs` "channels" the conv reads all of x's channels, so
  whether a cell carries evidence need not survive a two-number summary. With `inputs`
  "deviation" it reads CBAM's two numbers for x and for |x - reference|, where the
  reference is the clip's mean map over its valid frames: a frame's map alone cannot
  say which part of *this* face has changed, which is what a cue is (the landmark
  stream's deviation descriptor rests on the same idea). The conv has a
  bias and no BatchNorm (CBAM puts a BN there; with a single output channel a bias does
  the same job and keeps the map independent of batch statistics). `mode`:

    residual  a = sigmoid(logits), out = x + a * x (the authors' code)
    gate      a = sigmoid(logits), out = a * x (CBAM as published)
    softmax   a = softmax of the logits over the h*w cells, out = (h*w) * a * x, so the
              global average pool that follows is the a-weighted sum of the cells: the
              weights compete for a fixed total, which pressures the map to choose cells
              (uniform a gives out = x)

  Returns (out, a) with a in float32, shape (N, h, w).
  """

  kernel_size: int = 7
  dtype: Any = jnp.float32
  mode: str = "residual"
  inputs: str = "pooled"

  @nn.compact
  def __call__(self, x, reference=None):
    if self.mode not in SPATIAL_MODES:
      raise ConfigError(f"spatial_attention_mode must be one of {SPATIAL_MODES}, got {self.mode!r}")
    if self.inputs not in SPATIAL_INPUTS:
      raise ConfigError(
        f"spatial_attention_input must be one of {SPATIAL_INPUTS}, got {self.inputs!r}"
      )
    summary = lambda y: [jnp.mean(y, axis=-1, keepdims=True), jnp.max(y, axis=-1, keepdims=True)]  # noqa: E731
    pooled = x
    if self.inputs == "pooled":
      pooled = jnp.concatenate(summary(x), axis=-1)
    elif self.inputs == "deviation":
      if reference is None:
        raise ValueError("spatial_attention_input 'deviation' needs the clip's reference map")
      pooled = jnp.concatenate(summary(x) + summary(jnp.abs(x - reference)), axis=-1)
    logits = nn.Conv(
      1,
      (self.kernel_size, self.kernel_size),
      padding="SAME",
      dtype=self.dtype,
      param_dtype=jnp.float32,
      name="conv",
    )(pooled)
    logits = logits.astype(jnp.float32)[..., 0]
    if self.mode == "softmax":
      n, h, w = logits.shape
      attention = jax.nn.softmax(logits.reshape(n, h * w), axis=-1).reshape(n, h, w)
      return (h * w) * attention[..., None].astype(x.dtype) * x, attention
    attention = jax.nn.sigmoid(logits)
    gated = attention[..., None].astype(x.dtype) * x
    return (gated if self.mode == "gate" else x + gated), attention


def masked_mean(vectors, frame_mask):
  """Mean of (B, T, D) over the valid frames of each clip; zeros for an all-masked clip."""
  valid = frame_mask.astype(vectors.dtype)[..., None]
  total = jnp.sum(jnp.where(frame_mask[..., None], vectors, 0), axis=1)
  return total / jnp.maximum(jnp.sum(valid, axis=1), 1)


def masked_softmax(scores, frame_mask):
  """Softmax over T of (B, T) float32 scores, restricted to valid frames.

  Weights sum to 1 over each clip's valid frames and are exactly 0 on masked ones;
  a clip with no valid frame gets all-zero weights instead of NaN.
  """
  scores = jnp.where(frame_mask, scores.astype(jnp.float32), MASKED_SCORE)
  shifted = scores - jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))
  exp = jnp.where(frame_mask, jnp.exp(shifted), 0.0)
  total = jnp.sum(exp, axis=-1, keepdims=True)
  # The max is over valid frames whenever there is one, so total >= 1 then; 0 means none.
  return exp / jnp.where(total > 0, total, 1.0)


def pool_frames(weights, vectors, frame_mask):
  """sum_t weights_t * vectors_t (B, D) float32 over (B, T) weights and (B, T, D) vectors.

  Masked frames' vectors are replaced by zeros first, so whatever they hold cannot reach
  the output even through a weight that is not exactly zero.
  """
  vectors = jnp.where(frame_mask.astype(bool)[..., None], vectors, 0).astype(jnp.float32)
  # An elementwise sum, not a matmul: accelerators may run float32 matmuls at reduced
  # precision, and T is small.
  return jnp.sum(weights[..., None] * vectors, axis=1)


class TemporalAttentionPool(nn.Module):
  """Pools per-frame vectors (B, T, D) into one clip vector (B, D) with weights (B, T).

  With `use_attention`, frame t scores s_t = MLP([v_t, m]) where m is the mean of the
  clip's valid frame vectors (Dense(hidden) -> tanh -> Dense(1)), and the weights are
  the masked softmax of the scores: they sum to 1 over the valid frames and are exactly
  0 on masked frames. Without it (no parameters at all) the weights are uniform over the
  valid frames, i.e. the clip vector is the masked mean. An all-masked clip gets zero
  weights and a zero clip vector.

  Masked frames' vectors are replaced by zeros first, so whatever they hold (cached
  garbage, huge values) never reaches a score, a weight or the output. Scores, weights
  and the pooled vector are float32.
  """

  hidden: int = 128
  use_attention: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, vectors, frame_mask):
    frame_mask = frame_mask.astype(bool)
    vectors = jnp.where(frame_mask[..., None], vectors, 0).astype(jnp.float32)
    if self.use_attention:
      context = masked_mean(vectors, frame_mask)
      context = jnp.broadcast_to(context[:, None, :], vectors.shape)
      h = jnp.concatenate([vectors, context], axis=-1)
      h = nn.Dense(self.hidden, dtype=self.dtype, param_dtype=jnp.float32, name="score_hidden")(h)
      h = jnp.tanh(h)
      scores = nn.Dense(1, dtype=self.dtype, param_dtype=jnp.float32, name="score_out")(h)
      weights = masked_softmax(scores[..., 0], frame_mask)
    else:
      valid = frame_mask.astype(jnp.float32)
      weights = valid / jnp.maximum(jnp.sum(valid, axis=-1, keepdims=True), 1.0)
    return pool_frames(weights, vectors, frame_mask), weights
