"""The trunk's own layers against the originals they replace.

Chunked convolution: the same values and gradients as one convolution over the batch.
BatchNorm: the same outputs, running statistics and gradients as flax's nn.BatchNorm.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from stress_jax.models import build_model
from stress_jax.models.conv import CPU_CHUNK_IMAGES, chunked_conv, resolve_chunk
from stress_jax.models.resnet import BN_EPSILON, BN_MOMENTUM, BatchNorm
from tests.test_models import make_inputs, tiny, variables_for


def reference_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(
    x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def relative_error(actual, expected):
  return float(jnp.max(jnp.abs(actual - expected)) / jnp.max(jnp.abs(expected)))


# (images, size, in, out, kernel, stride, chunk): odd sizes with stride 2 leave a row the
# forward conv never reads; 10 images in chunks of 4 leave a tail of 2.
CASES = [
  (10, 12, 3, 8, 7, 2, 4),  # the stem's 7x7 / 2
  (10, 9, 4, 6, 3, 1, 4),
  (9, 13, 4, 6, 3, 2, 3),
  (8, 14, 4, 6, 3, 2, 4),
  (10, 13, 4, 6, 1, 2, 4),  # the 1x1 / 2 projection
]


@pytest.mark.parametrize("images,size,c_in,c_out,kernel,stride,chunk", CASES)
def test_chunked_conv_matches_one_convolution(images, size, c_in, c_out, kernel, stride, chunk):
  keys = jax.random.split(jax.random.key(images + size + kernel), 3)
  x = jax.random.normal(keys[0], (images, size, size, c_in))
  weights = jax.random.normal(keys[1], (kernel, kernel, c_in, c_out))
  pad = ((kernel // 2, kernel // 2),) * 2
  strides = (stride, stride)
  expected = reference_conv(x, weights, strides, pad)
  cotangent = jax.random.normal(keys[2], expected.shape)

  actual = jax.jit(chunked_conv, static_argnums=(2, 3, 4))(x, weights, strides, pad, chunk)
  assert actual.shape == expected.shape
  assert relative_error(actual, expected) < 1e-6

  def pullback(conv):
    return jax.jit(lambda x, w: jax.vjp(conv, x, w)[1](cotangent))(x, weights)

  want_dx, want_dw = pullback(lambda x, w: reference_conv(x, w, strides, pad))
  got_dx, got_dw = pullback(lambda x, w: chunked_conv(x, w, strides, pad, chunk))
  assert relative_error(got_dx, want_dx) < 1e-5
  assert relative_error(got_dw, want_dw) < 1e-5


def test_resolve_chunk():
  assert resolve_chunk(0) == 0
  assert resolve_chunk(5) == 5
  expected = CPU_CHUNK_IMAGES if jax.default_backend() == "cpu" else 0
  assert resolve_chunk(-1) == expected
  with pytest.raises(ValueError, match="conv_chunk_images"):
    resolve_chunk(-2)


def test_chunked_model_trains_like_the_unchunked_one():
  """Same parameter tree, logits, BatchNorm statistics and gradients, chunked or not."""
  whole, chunked = tiny(conv_chunk_images=0), tiny(conv_chunk_images=3)
  variables = variables_for(whole)
  x, landmarks, mask = make_inputs(whole)

  def loss_and_grads(cfg):
    model = build_model(cfg)

    def loss(params):
      (logits, aux), state = model.apply(
        {**variables, "params": params},
        x,
        landmarks,
        mask,
        train=True,
        rngs={"dropout": jax.random.key(0)},
        mutable=["batch_stats"],
      )
      return jnp.sum(jnp.sin(logits)), (logits, state)

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

  (_, (want_logits, want_state)), want_grads = loss_and_grads(whole)
  (_, (got_logits, got_state)), got_grads = loss_and_grads(chunked)
  assert jax.tree.structure(got_grads) == jax.tree.structure(want_grads)
  np.testing.assert_allclose(got_logits, want_logits, rtol=1e-5, atol=1e-6)
  for got, want in zip(jax.tree.leaves(got_state), jax.tree.leaves(want_state), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  for got, want in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
    assert relative_error(got, want) < 1e-4


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
