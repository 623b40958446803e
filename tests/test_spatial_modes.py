"""Applying the spatial attention map: residual x + a*x, gate a*x, softmax over cells."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stress_jax.models import StressNetConfig
from stress_jax.models.attention import SpatialAttention

# Also run by the GPU check with the accelerator as JAX's default backend.
pytestmark = pytest.mark.gpu_ok


def _apply(mode, x, kernel=None, bias=0.0):
  module = SpatialAttention(3, jnp.float32, mode)
  variables = module.init(jax.random.key(0), x)
  if kernel is not None:
    variables = {"params": {"conv": {"kernel": kernel, "bias": jnp.full((1,), bias)}}}
  return module.apply(variables, x), variables


def _numpy_logits(x, kernel, bias):
  """CBAM's map logits written out in numpy: [mean_c, max_c], zero-padded kxk correlation."""
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  pooled = np.stack([x.mean(-1), x.max(-1)], -1)
  k = kernel.shape[0]
  padded = np.pad(pooled, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
  n, h, w, _ = pooled.shape
  logits = np.full((n, h, w), float(bias))
  for i in range(h):
    for j in range(w):
      logits[:, i, j] += np.einsum("nabc,abc->n", padded[:, i : i + k, j : j + k], kernel[..., 0])
  return logits


def test_modes_apply_the_map_as_documented():
  x = jax.random.normal(jax.random.key(1), (2, 5, 5, 4))
  kernel = jax.random.normal(jax.random.key(4), (3, 3, 2, 1)) * 0.5
  logits = _numpy_logits(x, kernel, 0.3)
  sigmoid = 1 / (1 + np.exp(-logits))
  xs = np.asarray(x, np.float64)
  (residual, a), _ = _apply("residual", x, kernel, 0.3)
  np.testing.assert_allclose(a, sigmoid, rtol=1e-5)
  np.testing.assert_allclose(residual, xs + sigmoid[..., None] * xs, rtol=1e-5, atol=1e-6)
  (gated, a_gate), _ = _apply("gate", x, kernel, 0.3)
  np.testing.assert_allclose(a_gate, sigmoid, rtol=1e-5)
  np.testing.assert_allclose(gated, sigmoid[..., None] * xs, rtol=1e-5, atol=1e-6)
  (soft, weights), _ = _apply("softmax", x, kernel, 0.3)
  flat = np.exp(logits.reshape(2, -1) - logits.reshape(2, -1).max(-1, keepdims=True))
  softmax = (flat / flat.sum(-1, keepdims=True)).reshape(2, 5, 5)
  np.testing.assert_allclose(weights, softmax, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(soft, 25 * softmax[..., None] * xs, rtol=1e-5, atol=1e-6)
  # The mean over cells of the softmax output is the weights' weighted sum of the cells.
  np.testing.assert_allclose(
    soft.mean(axis=(1, 2)), (softmax[..., None] * xs).sum(axis=(1, 2)), rtol=1e-5, atol=1e-6
  )


def test_softmax_with_flat_logits_leaves_features_unchanged():
  x = jax.random.normal(jax.random.key(2), (1, 4, 4, 3))
  (out, weights), _ = _apply("softmax", x, jnp.zeros((3, 3, 2, 1)))
  np.testing.assert_allclose(weights, np.full((1, 4, 4), 1 / 16), rtol=1e-6)
  np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-6)


def test_unknown_mode_is_a_config_error():
  with pytest.raises(ValueError, match="spatial_attention_mode must be one of"):
    StressNetConfig(spatial_attention_mode="hard")


def test_channels_input_reads_every_channel_and_pooled_only_mean_and_max():
  x = jax.random.normal(jax.random.key(3), (1, 4, 4, 6))
  module = SpatialAttention(1, jnp.float32, "softmax", "channels")
  variables = module.init(jax.random.key(0), x)
  assert variables["params"]["conv"]["kernel"].shape == (1, 1, 6, 1)
  kernel = (jnp.arange(6, dtype=jnp.float32) + 1).reshape(1, 1, 6, 1) / 6
  params = {"params": {"conv": {"kernel": kernel, "bias": jnp.zeros((1,))}}}
  _, weights = module.apply(params, x)
  # A 1x1 conv over the channels: the map is the softmax of each cell's projection.
  logits = (x[0] @ kernel[0, 0]).reshape(-1)
  np.testing.assert_allclose(
    np.asarray(weights).reshape(-1), jax.nn.softmax(logits), rtol=1e-5, atol=1e-7
  )
  # Reordering the channels keeps each cell's mean and max, so only the "channels" map moves.
  y = x[..., ::-1]
  assert not np.allclose(module.apply(params, y)[1], weights, atol=1e-4)
  pooled = SpatialAttention(1, jnp.float32, "softmax", "pooled")
  pooled_params = pooled.init(jax.random.key(0), x)
  assert pooled_params["params"]["conv"]["kernel"].shape == (1, 1, 2, 1)
  np.testing.assert_allclose(
    pooled.apply(pooled_params, y)[1], pooled.apply(pooled_params, x)[1], rtol=1e-6
  )
  with pytest.raises(ValueError, match="spatial_attention_input must be one of"):
    StressNetConfig(spatial_attention_input="mean")
