"""The trunk's hand-written layers against the flax layers they replace.

BatchNorm: the same outputs, running statistics and gradients as flax's nn.BatchNorm.
Stem max pool: the same outputs and gradients as autodiff of nn.max_pool.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stress_jax.models.resnet import BN_EPSILON, BN_MOMENTUM, BatchNorm, stem_max_pool

# Also run by the GPU check with the accelerator as JAX's default backend.
pytestmark = pytest.mark.gpu_ok


@pytest.mark.parametrize("train,masked", [(True, True), (True, False), (False, False)])
def test_batch_norm_matches_flax(train, masked):
  keys = jax.random.split(jax.random.key(3), 4)
  x = jax.random.normal(keys[0], (6, 5, 5, 4)) * 3.0 + 1.5
  mask = None
  if masked:
    mask = jnp.array([True, False, True, True, False, True]).reshape(6, 1, 1, 1)
    # Garbage on masked images must not reach the statistics.
    x = jnp.where(mask, x, 1e4)
  variables = {
    "params": {
      "scale": jax.random.uniform(keys[1], (4,), minval=0.5, maxval=1.5),
      "bias": jax.random.normal(keys[2], (4,)),
    },
    "batch_stats": {"mean": jnp.full((4,), 0.3), "var": jnp.full((4,), 2.0)},
  }
  cotangent = jax.random.normal(keys[3], x.shape)
  if masked:
    # As in the model: masked images' outputs are pooled away, so no cotangent.
    cotangent = jnp.where(mask, cotangent, 0.0)
  reference = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON)

  def run(apply):
    def forward(params, x):
      return apply({**variables, "params": params}, x)

    (y, stats), pullback = jax.vjp(forward, variables["params"], x, has_aux=False)[0:2]
    return y, stats, pullback((cotangent, jax.tree.map(jnp.zeros_like, stats)))

  def ours(v, x):
    y, state = BatchNorm().apply(v, x, train, mask, mutable=["batch_stats"])
    return y, state["batch_stats"]

  def theirs(v, x):
    y, state = reference.apply(v, x, mask=mask, mutable=["batch_stats"])
    return y, state["batch_stats"]

  want_y, want_stats, (want_dparams, want_dx) = run(theirs)
  got_y, got_stats, (got_dparams, got_dx) = run(ours)
  keep = np.ones(6, bool) if mask is None else np.asarray(mask).reshape(6)
  np.testing.assert_allclose(got_y[keep], want_y[keep], rtol=1e-5, atol=1e-5)
  for got, want in zip(jax.tree.leaves(got_stats), jax.tree.leaves(want_stats), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got_dx[keep], want_dx[keep], rtol=1e-4, atol=1e-5)
  for got, want in zip(jax.tree.leaves(got_dparams), jax.tree.leaves(want_dparams), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  init = BatchNorm().init(jax.random.key(0), x, False)
  assert jax.tree.structure(init) == jax.tree.structure(reference.init(jax.random.key(0), x))


@pytest.mark.parametrize("size", [8, 9])
def test_stem_max_pool_gradient_matches_flax(size):
  """The hand-written VJP gives what autodiff of nn.max_pool gives, ties included."""
  key = jax.random.key(5)
  x = jax.random.normal(key, (2, size, size, 3))
  # Rounded values put equal maxima in one window: the first (row-major) tap wins.
  x = x.at[1].set(jnp.round(x[1]))
  cotangent = jax.random.normal(jax.random.key(6), (2, (size + 1) // 2, (size + 1) // 2, 3))

  def stock(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

  want_y, want_pullback = jax.vjp(stock, x)
  got_y, got_pullback = jax.vjp(stem_max_pool, x)
  np.testing.assert_array_equal(got_y, want_y)
  np.testing.assert_allclose(got_pullback(cotangent)[0], want_pullback(cotangent)[0], atol=1e-6)
