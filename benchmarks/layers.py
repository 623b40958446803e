"""Section `layers`: the trunk's hand-written layers against flax's stock ones.

stress_jax.models.resnet builds its trunk's BatchNorms with the module-level factory
`_batch_norm` (a hand-written BatchNorm) and its stem pool with `stem_max_pool` (a max
pool with its own VJP). `stock_layers` swaps either for flax's nn.BatchNorm (with the
frame mask) or nn.max_pool under the same module and parameter names, so every variant
trains the same parameter tree. (The convolutions are flax's nn.Conv already: a
chunked convolution with its own VJP was measured here and removed.) Each
variant's paper-config training step and streaming frame (encode one frame + classify
the 48-frame window) is compiled under its swap, then the variants are timed in
interleaved rounds: the machine's speed drifts between minutes, and a round-robin
gives every variant the same drift. A hand-written layer stays in the model only if
swapping it for the stock one makes the paper step or the streaming frame at least
10% slower (KEEP_THRESHOLD).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time

import numpy as np

from benchmarks import common

KEEP_THRESHOLD = 1.10

# variant -> the layers it swaps for flax's. "custom" is the model as shipped.
VARIANTS = {
  "custom": (),
  "stock_batchnorm": ("batchnorm",),
  "stock_max_pool": ("max_pool",),
  "stock_all": ("batchnorm", "max_pool"),
}


def _stock_batch_norm(x, train: bool, mask, dtype, name: str):
  import flax.linen as nn

  from stress_jax.models import resnet

  bn = nn.BatchNorm(
    use_running_average=not train,
    momentum=resnet.BN_MOMENTUM,
    epsilon=resnet.BN_EPSILON,
    dtype=dtype,
    name=name,
  )
  return bn(x, mask=mask if train else None)


def _stock_max_pool(x):
  import flax.linen as nn

  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


_SWAPS = {
  "batchnorm": ("_batch_norm", _stock_batch_norm),
  "max_pool": ("stem_max_pool", _stock_max_pool),
}


@contextlib.contextmanager
def stock_layers(*swaps: str):
  """Within the block, models traced build the named layers from flax's stock modules."""
  from stress_jax.models import resnet

  saved = {}
  try:
    for swap in swaps:
      attribute, replacement = _SWAPS[swap]
      saved[attribute] = getattr(resnet, attribute)
      setattr(resnet, attribute, replacement)
    yield
  finally:
    for attribute, original in saved.items():
      setattr(resnet, attribute, original)


def _compiled_variant(s: dict, config_name: str, swaps) -> dict:
  """The variant's training step and streaming frame, traced and compiled under its swaps."""
  import jax
  import jax.numpy as jnp

  with stock_layers(*swaps):
    setup = common.train_setup(config_name, s[f"{config_name}_batch"], s.get("dtype"))
    rng = jax.random.key(1)
    step = setup["step"].lower(setup["state"], setup["batch"], rng).compile()
    model, variables, empty_window, t = common.stream_model(setup["config"])
    _, _, fused = common.stream_functions(model)
    crop = jnp.asarray(np.random.default_rng(0).integers(0, 256, (112, 112, 3), np.uint8))
    points = jnp.asarray(np.random.default_rng(1).uniform(0.25, 0.75, (68, 2)), jnp.float32)
    face = jnp.asarray(True)
    frame = fused.lower(variables, empty_window(), crop, points, face).compile()
  variant = {"setup": setup, "step": step, "rng": rng, "window": empty_window()}

  def train_once():
    setup["state"], metrics = step(setup["state"], setup["batch"], rng)
    jax.block_until_ready(metrics["loss"])
    variant["loss"] = float(metrics["loss"])

  def frame_once():
    variant["window"], probabilities, _ = frame(variables, variant["window"], crop, points, face)
    np.asarray(probabilities)

  variant.update(train_once=train_once, frame_once=frame_once, window_frames=t)
  return variant


def _interleaved(functions: dict, rounds: int, calls: int) -> dict:
  """Per name: median over `rounds` of the mean time of `calls` back-to-back calls."""
  times = {name: [] for name in functions}
  for _ in range(rounds):
    for name, fn in functions.items():
      started = time.perf_counter()
      for _ in range(calls):
        fn()
      times[name].append((time.perf_counter() - started) / calls)
  return {name: statistics.median(values) for name, values in times.items()}


def worker_layers(s: dict, config_name: str = "paper") -> dict:
  """Training step and streaming frame, hand-written vs stock layers (see the module doc)."""
  variants = {}
  for name, swaps in VARIANTS.items():
    variants[name] = _compiled_variant(s, config_name, swaps)
    # Progress on stderr: the harness keeps it for a failed section's message.
    print(f"layers: compiled {name}", file=sys.stderr, flush=True)
  for variant in variants.values():
    for _ in range(s["train_warmup"]):
      variant["train_once"]()
    for _ in range(5):
      variant["frame_once"]()
  rounds = max(3, s["train_repeats"] // 2)
  step_s = _interleaved({k: v["train_once"] for k, v in variants.items()}, rounds, 1)
  frame_s = _interleaved({k: v["frame_once"] for k, v in variants.items()}, 3 * rounds, 10)
  custom_step, custom_frame = step_s["custom"], frame_s["custom"]
  by_variant = {
    name: {
      "step_s": round(step_s[name], 4),
      "frame_ms": round(1000 * frame_s[name], 2),
      # > 1: the stock swap is slower, i.e. the hand-written layer is faster.
      "step_vs_custom": round(step_s[name] / custom_step, 3),
      "frame_vs_custom": round(frame_s[name] / custom_frame, 3),
      "loss_finite": bool(np.isfinite(variants[name]["loss"])),
    }
    for name in variants
  }

  def pays(row):
    return max(row["step_vs_custom"], row["frame_vs_custom"]) >= KEEP_THRESHOLD

  keep = {layer: pays(by_variant[f"stock_{layer}"]) for layer in ("batchnorm", "max_pool")}
  return {
    "config": config_name,
    "per_device_batch_clips": s[f"{config_name}_batch"],
    "frames_per_clip": variants["custom"]["setup"]["num_frames"],
    "window_frames": variants["custom"]["window_frames"],
    "rounds": rounds,
    "by_variant": by_variant,
    "keep_threshold": KEEP_THRESHOLD,
    "keep": keep,
    "method": (
      f"each variant's jitted {config_name} training step and fused streaming frame compiled "
      f"under its swap, {s['train_warmup']} warm-up steps, then {rounds} interleaved rounds "
      "(one step each) and 3x as many rounds of 10 frames; median per variant"
    ),
  }
