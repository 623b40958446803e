"""Chunked convolution: the same values and gradients as one convolution over the batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from stress_jax.models import build_model
from stress_jax.models.conv import CPU_CHUNK_IMAGES, chunked_conv, resolve_chunk
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
