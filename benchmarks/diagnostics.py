"""Sections that explain the training figures rather than measure a goal.

breakdown    where a paper step's time goes: jitted pieces timed alone
profile      XLA profile of the whole step by kind of operation (op_profile.py)
plain        the paper architecture as a plain flax/optax jit (plain_reference.py)
xla_default  the paper step and a streaming frame under jaxlib's default XLA:CPU flags
convs        the model's 3x3 convolutions alone, XLA vs torch (profile_step.conv_table)
"""

from __future__ import annotations

import functools
import os
import statistics
import time

import numpy as np

from benchmarks import common


def worker_breakdown(s: dict) -> dict:
  """Times jitted pieces of the paper step on its batch: each forward + backward alone.

  trunk      device_preprocess + ResNet-18 stem/stages 1-3 (train-mode BN) fwd+bwd to
             its parameters, cotangent of the stage-3 map given
  head       residual head block + spatial attention + GAP fwd+bwd (to its params and
             to the stage-3 map, as in the full step)
  temporal   temporal attention + landmark stream + dropout + classifier + loss fwd+bwd
  optimizer  clip_by_global_norm + AdamW update + apply_updates (donated)
  The pieces run one at a time, so their sum can differ from the fused step (XLA fuses
  across the boundaries there, and the step has a few metrics).
  """
  import jax
  import jax.numpy as jnp
  import optax

  from stress_jax import input_pipeline, steps
  from stress_jax.models import stressnet

  setup = common.train_setup("paper", s["paper_batch"], s.get("dtype"))
  model, state, tx = setup["model"], setup["state"], setup["tx"]
  host = setup["host_batch"]
  compute = setup["compute"]
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  b, t = host["frame_mask"].shape
  n = b * t

  def fold(batch):
    batch = input_pipeline.device_preprocess(batch, compute)
    x = batch["inputs"].reshape(n, 112, 112, 3).astype(jnp.float32)
    x = ((x - stressnet.PIXEL_MEAN) / stressnet.PIXEL_STD).astype(compute)
    return x, jnp.ones((n, 1, 1, 1), bool)

  def trunk_loss(params, batch, cotangent):
    x, mask = fold(batch)
    out, _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      x,
      mask,
      method=lambda m, x, mask: m.trunk(x, True, mask),
      mutable=["batch_stats"],
    )
    return jnp.sum(out.astype(jnp.float32) * cotangent)

  def head_loss(params, features, cotangent):
    def head(m, x, mask):
      x = m.head(x, True, mask)
      x, _ = m.spatial_attention(x)
      return jnp.mean(x.astype(jnp.float32), axis=(1, 2))

    out, _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      features,
      jnp.ones((n, 1, 1, 1), bool),
      method=head,
      mutable=["batch_stats"],
    )
    return jnp.sum(out * cotangent)

  def temporal_loss(params, vectors, batch, rng):
    (logits, _), _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      vectors,
      batch["landmarks"],
      batch["frame_mask"],
      train=True,
      method="classify_clip",
      rngs={"dropout": rng},
      mutable=["batch_stats"],
    )
    return steps.cross_entropy(logits, batch["label"], batch["valid"].astype(jnp.float32))

  batch = setup["batch"]
  rng = jax.random.key(2)
  features_shape = jax.eval_shape(
    lambda p, bt: model.apply(
      {"params": p, "batch_stats": variables["batch_stats"]},
      *fold(bt),
      method=lambda m, x, mask: m.trunk(x, False, mask),
    ),
    state.params,
    batch,
  )
  key = jax.random.key(3)
  features = jax.random.normal(key, features_shape.shape, jnp.float32).astype(compute)
  trunk_cotangent = jax.random.normal(key, features_shape.shape, jnp.float32)
  width = setup["config"].model.head_width
  head_cotangent = jax.random.normal(key, (n, width), jnp.float32)
  vectors = jax.random.normal(key, (b, t, width), jnp.float32)

  pieces = {
    "trunk": (jax.jit(jax.grad(trunk_loss)), (state.params, batch, trunk_cotangent)),
    "head_spatial": (
      jax.jit(jax.grad(head_loss, argnums=(0, 1))),
      (state.params, features, head_cotangent),
    ),
    "temporal_landmark_classifier": (
      jax.jit(jax.grad(temporal_loss, argnums=(0, 1))),
      (state.params, vectors, batch, rng),
    ),
  }
  grads = jax.tree.map(jnp.ones_like, state.params)

  def update(params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_update = jax.jit(update, donate_argnums=(0, 1))
  repeats = s["breakdown_repeats"]
  out = {}
  for name, (fn, args) in pieces.items():
    seconds, _ = common.median_time(
      lambda fn=fn, args=args: jax.block_until_ready(fn(*args)), repeats, 2
    )
    flops = common.flops(fn.lower(*args).compile())
    out[name] = {"s": round(seconds, 4), "gflop": round(flops / 1e9, 2)}
  params, opt_state = jax.tree.map(jnp.copy, state.params), jax.tree.map(jnp.copy, state.opt_state)
  times = []
  for i in range(repeats + 2):
    started = time.perf_counter()
    params, opt_state = opt_update(params, opt_state, grads)
    jax.block_until_ready(params)
    if i >= 2:
      times.append(time.perf_counter() - started)
  out["optimizer"] = {"s": round(statistics.median(times), 4)}
  full_step = jax.jit(
    functools.partial(
      steps.train_step,
      model=model,
      tx=tx,
      schedule=steps.learning_rate_schedule(setup["config"].optim, 1000),
      dtype=compute,
    )
  )
  seconds, _ = common.median_time(
    lambda: jax.block_until_ready(full_step(state, batch, rng)[1]["loss"]), repeats, 2
  )
  total = sum(v["s"] for v in out.values())
  return {
    "per_device_batch_clips": b,
    "frames_per_clip": t,
    "pieces": out,
    "sum_of_pieces_s": round(total, 4),
    "full_step_s": round(seconds, 4),
    "fractions": {k: round(v["s"] / total, 3) for k, v in out.items()},
    "method": (
      "each piece jitted alone (fwd+bwd via jax.grad, optimizer update donated), median "
      "of timed runs after 2 warm-ups; fraction = piece / sum of pieces"
    ),
  }


def worker_profile(s: dict) -> dict:
  """Paper step time by kind of operation and by model part, from an XLA profile."""
  import jax

  from benchmarks import op_profile

  setup = common.train_setup("paper", s["paper_batch"], s.get("dtype"))
  state, step, batch = setup["state"], setup["step"], setup["batch"]
  rng = jax.random.key(1)
  for _ in range(2):
    state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics["loss"])
  images = {s["paper_batch"] * setup["num_frames"]}
  default, _ = op_profile.profile_step(step, state, batch, rng, s["profile_steps"], images)
  return {"default": default, "per_device_batch_clips": s["paper_batch"]}


def worker_plain(s: dict) -> dict:
  """The plain-jit reference (benchmarks/plain_reference.py) at the paper batch."""
  import jax

  from benchmarks import plain_reference

  batch_size = s["paper_batch"]
  step, state, clips, labels = plain_reference.setup(batch_size, 48)
  flops = common.flops(step.lower(*state, clips, labels).compile())

  def once():
    nonlocal state
    *state, loss = step(*state, clips, labels)
    jax.block_until_ready(loss)

  step_s, runs = common.median_time(once, s["train_repeats"], s["train_warmup"])
  peak = common.matmul_peak(max(3, s["peak_repeats"] // 2), (1024, 2048))["gflops"]
  return {
    "per_device_batch_clips": batch_size,
    "frames_per_clip": 48,
    "step_s": round(step_s, 4),
    "step_s_runs": [round(t, 4) for t in runs],
    "clips_per_s": round(batch_size / step_s, 3),
    "step_gflop": round(flops / 1e9, 2),
    "achieved_gflops": round(flops / step_s / 1e9, 1),
    "matmul_peak_gflops": round(peak, 1),
  }


def worker_xla_default(s: dict) -> dict:
  """The paper training step and a streaming frame with jaxlib's default XLA:CPU flags.

  run_section starts this worker with STRESS_JAX_KEEP_XLA_FLAGS=1, so XLA_FLAGS holds
  only what the user set; the same figures under stress_jax's flags are train_paper's
  step_s and infer's encode_one_frame_ms.
  """
  import jax

  setup = common.train_setup("paper", s["paper_batch"], s.get("dtype"))
  step_s, runs = common.time_steps(setup, max(3, s["train_repeats"] // 2), s["train_warmup"])
  model, variables, _, _ = common.stream_model()
  encode, _, _ = common.stream_functions(model)
  crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
  encode_s, _ = common.median_time(
    lambda: jax.block_until_ready(encode(variables, crop, True)), 30, 3
  )
  return {
    "xla_flags_in_effect": os.environ.get("XLA_FLAGS", ""),
    "per_device_batch_clips": s["paper_batch"],
    "step_s": round(step_s, 4),
    "step_s_runs": [round(t, 4) for t in runs],
    "encode_one_frame_ms": round(1000 * encode_s, 2),
  }


def worker_convs(s: dict) -> dict:
  from benchmarks import profile_step

  return profile_step.conv_table(frames=96 if s["quick"] else 192, repeats=3 if s["quick"] else 5)
