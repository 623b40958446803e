"""Bias-free NHWC convolution that can run in chunks of images on the CPU backend.

A clip batch folds B x T frames into one image batch (192 images for the paper config).
With jaxlib 0.10's YNNPACK convolution fusions, XLA:CPU ran such a convolution, and
above all its kernel gradient, far slower over that many images than over a few dozen
(1.6 s per step over 192 images against 0.85 s in chunks of 24), which is why this
module exists. stress_jax now turns those fusions off (stress_jax/xla_cpu.py), and with
XLA's own convolutions chunking no longer pays: paired runs of the paper step at batch
4 gave 8.2 vs 8.9 s and 8.7 vs 8.5 s (chunks of 24 vs whole batch), inference was 15%
slower in chunks (2.46 vs 2.09 s), the demo step 15% slower too. So the model default
is `conv_chunk_images=0`; chunking stays available (and tested) for other CPUs.

`chunked_conv` computes exactly the convolution and its gradients (the kernel gradient
is the sum over chunks, so only the float summation order changes), one chunk after
the other in a `lax.map`/`lax.scan`. Everything between the convolutions (BatchNorm
statistics above all) still sees the whole batch. On GPU/TPU a large batch is what
keeps the device busy, so `resolve_chunk` turns "auto" chunking off there.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# Measured per 3x3 layer of the paper model on 2 CPU cores: 24 images per chunk was
# fastest or within 5% of it for every layer (benchmarks/run.py section `convs`).
CPU_CHUNK_IMAGES = 24
AUTO = -1

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def resolve_chunk(chunk_images: int) -> int:
  """-1 (auto) -> CPU_CHUNK_IMAGES on the CPU backend, 0 (off) elsewhere."""
  if chunk_images == AUTO:
    return CPU_CHUNK_IMAGES if jax.default_backend() == "cpu" else 0
  if chunk_images < 0:
    raise ValueError(f"conv_chunk_images must be -1 (auto), 0 (off) or > 0, got {chunk_images}")
  return chunk_images


def _plain_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DIMENSION_NUMBERS)


def _split(x, chunk: int):
  """(N, ...) -> ((N // chunk, chunk, ...), tail of N % chunk images or None)."""
  count = x.shape[0] // chunk
  body = x[: count * chunk].reshape((count, chunk) + x.shape[1:])
  tail = x[count * chunk :] if x.shape[0] % chunk else None
  return body, tail


def _join(body, tail):
  flat = body.reshape((-1,) + body.shape[2:])
  return flat if tail is None else jnp.concatenate([flat, tail], axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def chunked_conv(x, kernel, strides, padding, chunk: int):
  """conv_general_dilated(x, kernel) over `chunk` images at a time (x: NHWC, kernel: HWIO)."""
  body, tail = _split(x, chunk)
  out = lax.map(lambda images: _plain_conv(images, kernel, strides, padding), body)
  tail_out = None if tail is None else _plain_conv(tail, kernel, strides, padding)
  return _join(out, tail_out)


def _chunked_conv_fwd(x, kernel, strides, padding, chunk):
  return chunked_conv(x, kernel, strides, padding, chunk), (x, kernel)


def _input_grad(cotangent, flipped_kernel, strides, padding, input_hw):
  """d conv / d input as a stride-1 conv of the (dilated) cotangent, standard NHWC/HWIO.

  Written out because XLA:CPU only rewrites JAX's transposed-kernel form to its fast
  convolution outside loops; inside the chunk loop it took twice as long.
  """
  size = flipped_kernel.shape[:2]
  pads = []
  for axis in range(2):
    low, high = padding[axis]
    # Rows the forward conv never reached (stride remainder) get zero gradient.
    remainder = (input_hw[axis] + low + high - size[axis]) % strides[axis]
    pads.append((size[axis] - 1 - low, size[axis] - 1 - high + remainder))
  return lax.conv_general_dilated(
    cotangent,
    flipped_kernel,
    (1, 1),
    pads,
    lhs_dilation=strides,
    dimension_numbers=DIMENSION_NUMBERS,
  )


def _kernel_grad(images, cotangent, kernel_hw, strides, padding):
  """d conv / d kernel as a convolution over the image axis, in XLA:CPU's fast layout.

  Images become the contracted "feature" axis: (C, H, W, N) convolved with the
  cotangent as an (OH, OW, N, O) kernel dilated by the stride gives (C, kh, kw, O).
  XLA makes this rewrite itself outside loops but not inside the chunk loop, where
  its generic convolution took 11 s instead of 0.1 s.
  """
  out_hw = cotangent.shape[1:3]
  pads = []
  for axis in range(2):
    low = padding[axis][0]
    reach = strides[axis] * (out_hw[axis] - 1)
    pads.append((low, kernel_hw[axis] + reach - images.shape[1 + axis] - low))
  grad = lax.conv_general_dilated(
    jnp.transpose(images, (3, 1, 2, 0)),
    jnp.transpose(cotangent, (1, 2, 0, 3)),
    (1, 1),
    pads,
    rhs_dilation=strides,
    dimension_numbers=DIMENSION_NUMBERS,
  )
  return jnp.transpose(grad, (1, 2, 0, 3))


def _chunked_conv_bwd(strides, padding, chunk, residuals, cotangent):
  x, kernel = residuals
  flipped = jnp.transpose(jnp.flip(kernel, (0, 1)), (0, 1, 3, 2))
  kernel_hw = kernel.shape[:2]

  # Named so a profile can tell the two gradients apart (benchmarks/op_profile.py).
  @jax.named_scope("input_grad")
  def input_grad(grads):
    return _input_grad(grads, flipped, strides, padding, x.shape[1:3])

  @jax.named_scope("kernel_grad")
  def kernel_grad(images, grads):
    return _kernel_grad(images, grads, kernel_hw, strides, padding)

  x_body, x_tail = _split(x, chunk)
  g_body, g_tail = _split(cotangent, chunk)
  # Two loops, not one: where the input gradient is unused (the stem) XLA drops its
  # whole loop as dead code, which it cannot do for one output of a shared loop.
  dx_body = lax.map(input_grad, g_body)

  def accumulate(total, pair):
    return total + kernel_grad(*pair), None

  dkernel, _ = lax.scan(accumulate, jnp.zeros_like(kernel), (x_body, g_body))
  dx_tail = None
  if x_tail is not None:
    dx_tail = input_grad(g_tail)
    dkernel = dkernel + kernel_grad(x_tail, g_tail)
  return _join(dx_body, dx_tail).astype(x.dtype), dkernel.astype(kernel.dtype)


chunked_conv.defvjp(_chunked_conv_fwd, _chunked_conv_bwd)


def conv_nhwc(x, kernel, strides, padding, chunk: int):
  """The convolution, chunked only when there is more than one chunk to run.

  A symbolic batch (jax.export) is never chunked: the exported program may be served
  on any backend, and the split needs a known size.
  """
  if chunk and isinstance(x.shape[0], int) and x.shape[0] > chunk:
    return chunked_conv(x, kernel, tuple(strides), tuple(map(tuple, padding)), chunk)
  return _plain_conv(x, kernel, strides, padding)


class Conv(nn.Module):
  """Bias-free square conv, parameter `kernel` (HWIO) as in nn.Conv(use_bias=False).

  Same parameter name, shape and initialiser as the nn.Conv it replaces, so parameter
  paths and checkpoints are unchanged. `chunk_images` as in `resolve_chunk`.
  """

  features: int
  kernel_size: int
  strides: int = 1
  chunk_images: int = 0
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):
    size = self.kernel_size
    kernel = self.param(
      "kernel", self.kernel_init, (size, size, x.shape[-1], self.features), jnp.float32
    )
    pad = size // 2
    return conv_nhwc(
      x.astype(self.dtype),
      kernel.astype(self.dtype),
      (self.strides, self.strides),
      ((pad, pad), (pad, pad)),
      resolve_chunk(self.chunk_images),
    )
