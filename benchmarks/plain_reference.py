"""The paper architecture written the plain way: the "plain jit" reference for MFU.

Stock flax.linen layers (nn.Conv, nn.BatchNorm without masks, nn.max_pool), optax
AdamW and one `jax.jit` of value_and_grad + update: what a user would write first.
Same shapes and FLOPs as stress_jax's paper model (the ResNet-18 stem and stages 1-3,
one residual block to 512, CBAM spatial attention, average pooling, temporal
attention over [frame, clip mean], classifier); the landmark stream and masks are left
out (under 0.1% of the step's FLOPs). benchmarks/run.py times it in the same run as
our step, so "how far is our step from a plain jit" is measured, not assumed.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

STAGES = ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 1))


class PlainBlock(nn.Module):
  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    def norm(name):
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)

    y = nn.Conv(self.features, (3, 3), self.strides, padding=1, use_bias=False)(x)
    y = nn.relu(norm("bn1")(y))
    y = nn.Conv(self.features, (3, 3), padding=1, use_bias=False)(y)
    y = norm("bn2")(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), self.strides, use_bias=False)(x)
      x = norm("proj_bn")(x)
    return nn.relu(y + x)


class PlainStressNet(nn.Module):
  num_classes: int = 3

  @nn.compact
  def __call__(self, clips, train: bool):
    batch, steps = clips.shape[:2]
    x = clips.reshape((batch * steps,) + clips.shape[2:])
    x = nn.Conv(64, (7, 7), 2, padding=3, use_bias=False)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for features, strides in STAGES:
      x = PlainBlock(features, strides)(x, train)
    pooled = jnp.concatenate([x.mean(-1, keepdims=True), x.max(-1, keepdims=True)], -1)
    x = x + jax.nn.sigmoid(nn.Conv(1, (7, 7), padding=3)(pooled)) * x
    frames = x.mean((1, 2)).reshape(batch, steps, -1)
    context = jnp.broadcast_to(frames.mean(1, keepdims=True), frames.shape)
    hidden = nn.tanh(nn.Dense(128)(jnp.concatenate([frames, context], -1)))
    weights = jax.nn.softmax(nn.Dense(1)(hidden)[..., 0], -1)
    return nn.Dense(self.num_classes)(jnp.einsum("bt,btd->bd", weights, frames))


def make_step(model: PlainStressNet, tx):
  def step(params, batch_stats, opt_state, clips, labels):
    def loss_fn(params):
      logits, updates = model.apply(
        {"params": params, "batch_stats": batch_stats}, clips, True, mutable=["batch_stats"]
      )
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1, 2))


def setup(batch: int, frames: int, seed: int = 0):
  """(jitted step, initial (params, batch_stats, opt_state), clips, labels)."""
  model = PlainStressNet()
  keys = jax.random.split(jax.random.key(seed), 2)
  clips = jax.random.uniform(keys[0], (batch, frames, 112, 112, 3))
  labels = jnp.zeros((batch,), jnp.int32)
  variables = jax.jit(lambda key: model.init(key, clips[:1, :2], False))(keys[1])
  tx = optax.adamw(1e-3, weight_decay=1e-4)
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
  return make_step(model, tx), state, clips, labels
