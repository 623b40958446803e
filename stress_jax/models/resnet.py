"""ResNet-18 building blocks (BasicBlock, BatchNorm, ReLU, bias-free convs) in flax.linen.

Every BatchNorm takes the per-image `mask` of the folded (B*T) batch, so padded or
face-less frames never enter the batch statistics in training mode.

Trunk parameter count of the paper config (stem 64, stages (64, 128, 256) x 2 blocks),
conv kernels plus BatchNorm scale and bias (running statistics not counted):

  stem     7*7*3*64 = 9,408 + BN 2*64 = 128                                    9,536
  stage 1  4 convs 3*3*64*64 = 4*36,864 = 147,456 + 4 BN * 128 = 512         147,968
  stage 2  3*3*64*128 = 73,728; 3*3*128*128 = 147,456 (x3 = 442,368);
           1x1 projection 64*128 = 8,192; 5 BN * 256 = 1,280                  525,568
  stage 3  3*3*128*256 = 294,912; 3*3*256*256 = 589,824 (x3 = 1,769,472);
           1x1 projection 128*256 = 32,768; 5 BN * 512 = 2,560              2,099,712
  total                                                                     2,782,784
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# PyTorch-style BatchNorm (momentum 0.1 there is 0.9 here; same epsilon), so statistics
# follow the ResNet-18 recipe the paper's trunk was trained with.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# He-normal (fan_out) as in torchvision's ResNet; BN then sees unit-scale activations.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class BatchNorm(nn.Module):
  """BatchNorm over the folded image batch, with the variables of flax's nn.BatchNorm.

  `mask` (N, 1, 1, 1) keeps masked images out of the batch statistics in training mode.
  Same parameters (`scale`, `bias`), running statistics (`mean`, biased `var`) and
  update rule as nn.BatchNorm, so checkpoints carry over. It reduces each image to
  per-channel sums first and combines those (N, C) rows, where flax's masked form
  reduces a masked copy of the whole tensor (section `layers` of benchmarks/ times
  the two in the model).
  """

  momentum: float = BN_MOMENTUM
  epsilon: float = BN_EPSILON
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool, mask=None):
    channels = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,), jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, (channels,), jnp.float32)
    if train:
      mean, var = _masked_moments(x, mask)
      if not self.is_initializing():
        keep = self.momentum
        running_mean.value = keep * running_mean.value + (1 - keep) * mean
        running_var.value = keep * running_var.value + (1 - keep) * var
    else:
      mean, var = running_mean.value, running_var.value
    multiplier = scale * lax.rsqrt(var + self.epsilon)
    shift = bias - mean * multiplier
    return (x.astype(jnp.float32) * multiplier + shift).astype(self.dtype)


def _masked_moments(x, mask):
  """Per-channel mean and biased variance (float32) over the images `mask` keeps."""
  images, height, width, channels = x.shape
  rows = x.reshape(images, height * width, channels).astype(jnp.float32)
  sums = jnp.sum(rows, axis=1)
  squares = jnp.sum(jnp.square(rows), axis=1)
  if mask is None:
    kept = jnp.float32(images)
  else:
    keep = jnp.reshape(mask, (images, 1)).astype(bool)
    # where, not a product: a masked image's sums never reach the statistics, even inf.
    sums = jnp.where(keep, sums, 0.0)
    squares = jnp.where(keep, squares, 0.0)
    kept = jnp.maximum(jnp.sum(keep.astype(jnp.float32)), 1.0)
  count = kept * (height * width)
  mean = jnp.sum(sums, axis=0) / count
  # E[x^2] - E[x]^2 as flax's default (use_fast_variance); clipped at 0 like it.
  var = jnp.maximum(jnp.sum(squares, axis=0) / count - jnp.square(mean), 0.0)
  return mean, var


def _batch_norm(x, train: bool, mask, dtype: Any, name: str):
  return BatchNorm(dtype=dtype, name=name)(x, train, mask if train else None)


def _conv(features: int, kernel: int, strides: int, dtype: Any, name: str) -> nn.Conv:
  """Bias-free square conv with ResNet's padding; parameter `kernel` (HWIO), float32."""
  pad = kernel // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    (strides, strides),
    padding=((pad, pad), (pad, pad)),
    use_bias=False,
    dtype=dtype,
    param_dtype=jnp.float32,
    kernel_init=conv_init,
    name=name,
  )


def _stem_pool(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


@jax.custom_vjp
def stem_max_pool(x):
  """ResNet's 3x3 / stride 2 / pad 1 max pool (NHWC), with a cheaper backward pass.

  Forward is nn.max_pool. The gradient is JAX's own: each output's cotangent goes to
  the first window position (row-major) holding the window's maximum. JAX derives it
  with a variadic reduce_window that carries an int32 index per dimension (four
  full-size int32 tensors) and a scatter, slow on XLA:CPU (section `layers` of
  benchmarks/ times the two in the model). Here the choice is one int8 map, and the
  cotangent is assembled at
  output resolution: with stride 2 and window 3 an even input row/column lies in one
  window (its centre), an odd one in two (the end of one, the start of the next).
  """
  return _stem_pool(x)


def _stem_pool_fwd(x):
  y = _stem_pool(x)
  return y, (x, y)


def _interleave(even, odd, axis: int, size: int):
  """Positions 0, 2, 4, ... from `even`, 1, 3, ... from `odd` (which may be one shorter)."""
  if odd.shape[axis] < even.shape[axis]:
    odd = lax.pad(odd, jnp.zeros((), odd.dtype), _pad_end(odd.ndim, axis))
  both = jnp.stack([even, odd], axis=axis + 1)
  shape = list(even.shape)
  shape[axis] *= 2
  return lax.slice_in_dim(both.reshape(shape), 0, size, axis=axis)


def _pad_end(ndim: int, axis: int):
  config = [(0, 0, 0)] * ndim
  config[axis] = (0, 1, 0)
  return config


def _odd_positions(ends, starts, axis: int, count: int):
  """Odd position 2p+1: window p's last tap (ends[p]) + window p+1's first (starts[p+1])."""
  following = lax.slice_in_dim(starts, 1, starts.shape[axis], axis=axis)
  following = lax.pad(following, jnp.zeros((), starts.dtype), _pad_end(starts.ndim, axis))
  return lax.slice_in_dim(ends, 0, count, axis=axis) + lax.slice_in_dim(
    following, 0, count, axis=axis
  )


def _stem_pool_bwd(residuals, g):
  x, y = residuals
  n, h, w, c = x.shape
  oh, ow = y.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)

  def view(i, j):
    limit = (n, i + 2 * (oh - 1) + 1, j + 2 * (ow - 1) + 1, c)
    return lax.slice(padded, (0, i, j, 0), limit, (1, 2, 2, 1))

  # Scanning backwards leaves the first maximising tap: the tie-break above.
  choice = jnp.full(y.shape, 8, jnp.int8)
  for k in range(7, -1, -1):
    choice = jnp.where(view(*divmod(k, 3)) == y, jnp.int8(k), choice)
  zero = jnp.zeros((), g.dtype)
  tap = {divmod(k, 3): jnp.where(choice == k, g, zero) for k in range(9)}
  # Columns first, per window row offset i; then rows. Tap offset 1 is a window's
  # centre (even positions), 2 its end and 0 the next window's start (odd positions).
  by_row_tap = {}
  for i in range(3):
    odd = _odd_positions(tap[(i, 2)], tap[(i, 0)], 2, w // 2)
    by_row_tap[i] = _interleave(tap[(i, 1)], odd, 2, w)
  odd = _odd_positions(by_row_tap[2], by_row_tap[0], 1, h // 2)
  return (_interleave(by_row_tap[1], odd, 1, h),)


stem_max_pool.defvjp(_stem_pool_fwd, _stem_pool_bwd)


class BasicBlock(nn.Module):
  """Two 3x3 convs with a residual; 1x1 conv + BN projection when the shape changes."""

  features: int
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    residual = x
    y = _conv(self.features, 3, self.strides, self.dtype, "conv1")(x)
    y = _batch_norm(y, train, mask, self.dtype, "bn1")
    y = nn.relu(y)
    y = _conv(self.features, 3, 1, self.dtype, "conv2")(y)
    y = _batch_norm(y, train, mask, self.dtype, "bn2")
    if self.strides != 1 or x.shape[-1] != self.features:
      residual = _conv(self.features, 1, self.strides, self.dtype, "proj_conv")(x)
      residual = _batch_norm(residual, train, mask, self.dtype, "proj_bn")
    return nn.relu(y + residual)


class ResNetTrunk(nn.Module):
  """ResNet-18 stem and the first len(stage_widths) stages: (N,112,112,3) -> (N,7,7,C)."""

  stem_width: int = 64
  stage_widths: Sequence[int] = (64, 128, 256)
  stage_blocks: Sequence[int] = (2, 2, 2)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    x = _conv(self.stem_width, 7, 2, self.dtype, "stem_conv")(x)
    x = _batch_norm(x, train, mask, self.dtype, "stem_bn")
    x = nn.relu(x)
    x = stem_max_pool(x)
    for stage, (width, blocks) in enumerate(zip(self.stage_widths, self.stage_blocks, strict=True)):
      for block in range(blocks):
        # Only the first block of stages 2+ downsamples, as in ResNet-18.
        strides = 2 if stage > 0 and block == 0 else 1
        name = f"stage{stage + 1}_block{block + 1}"
        x = BasicBlock(width, strides, self.dtype, name=name)(x, train, mask)
    return x


class ResidualHead(nn.Module):
  """`num_blocks` stride-1 BasicBlocks that lift the stage-3 map to `features` channels."""

  features: int = 512
  num_blocks: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False, mask=None):
    for block in range(self.num_blocks):
      x = BasicBlock(self.features, 1, self.dtype, name=f"block{block + 1}")(x, train, mask)
    return x
