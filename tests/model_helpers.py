"""Tiny StressNet configs, inputs and variables the model tests share (tests/test_model*.py)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from stress_jax.configs import common
from stress_jax.models import StressNetConfig, build_model, init_variables

B, T, C = 2, 4, 3
# Frame 2 of clip 0 is masked between valid frames (velocity must skip it); clip 1 has a
# single valid frame.
MASK = np.array([[True, True, False, True], [True, False, False, False]])

TINY = dict(
  stem_width=8,
  stage_widths=(8, 16, 32),
  stage_blocks=(1, 1, 1),
  head_width=32,
  head_blocks=1,
  attention_hidden=16,
  landmark_hidden=16,
  dropout_rate=0.5,  # inert in eval mode; train-mode tests hold the dropout rng fixed
  num_classes=C,
)


def tiny(**overrides) -> StressNetConfig:
  cfg = common.model_config()
  cfg.update({**TINY, **overrides})
  return StressNetConfig.from_any(cfg)


def make_inputs(cfg: StressNetConfig, seed: int = 0, mask=MASK):
  rng = np.random.default_rng(seed)
  steps = mask.shape[1]
  if cfg.input_mode == "pixels":
    # Per-frame brightness, so frames differ and attention has something to prefer.
    x = rng.uniform(0, 1, (B, steps, 112, 112, 3)) * rng.uniform(0.3, 1, (B, steps, 1, 1, 1))
  else:
    x = np.maximum(rng.normal(0, 1, (B, steps, 7, 7, cfg.feature_channels)), 0)
  # A plausible face: canonical eye positions plus jitter, so the inter-ocular scale is real.
  landmarks = rng.uniform(0.2, 0.8, (B, steps, 68, 2))
  landmarks[:, :, 36:42] = [0.33, 0.38] + rng.normal(0, 0.01, (B, steps, 6, 2))
  landmarks[:, :, 42:48] = [0.67, 0.38] + rng.normal(0, 0.01, (B, steps, 6, 2))
  return (
    jnp.asarray(x, jnp.float32),
    jnp.asarray(landmarks, jnp.float32),
    jnp.asarray(mask),
  )


def corrupt_masked(x, landmarks, mask, seed=1):
  """Garbage (large but finite) wherever the mask is False; valid frames untouched."""
  rng = np.random.default_rng(seed)
  m = np.asarray(mask)
  x = np.array(x)
  landmarks = np.array(landmarks)
  x[~m] = rng.normal(0, 1e4, x[~m].shape)
  landmarks[~m] = rng.normal(0, 1e6, landmarks[~m].shape)
  return jnp.asarray(x), jnp.asarray(landmarks)


@functools.cache
def base_variables():
  """Variables of the full tiny pixel model, drawn in numpy on init's abstract tree.

  XLA takes 5-15 s on a busy CPU to compile flax's init (dozens of PRNG kernels), more
  than all forward passes here together; `test_init_variables_runs` covers the real init.
  Kernels scaled by fan-in keep activations O(1); running statistics away from (0, 1) make the
  eval-mode BatchNorm differ from the train-mode one.
  """
  return drawn_variables(tiny())


@functools.cache
def drawn_variables(cfg: StressNetConfig, seed: int = 0):
  """Variables of any `cfg`, drawn in numpy as base_variables' are (no compiled init)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      gain = 2 if len(leaf.shape) == 4 else 1  # He for ReLU convs, LeCun for Dense
      value = rng.normal(0, np.sqrt(gain / fan_in), leaf.shape)
    elif name in ("scale", "var"):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    else:  # bias, mean
      value = rng.normal(0, 0.1, leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract_variables(cfg))


def variables_for(cfg: StressNetConfig):
  """The base variables cut down to `cfg`'s parameter tree (shapes checked against init).

  Ablations only drop subtrees, except the classifier, whose input rows are the image
  clip vector followed by the landmark clip vector.
  """
  base = {col: traverse_util.flatten_dict(tree) for col, tree in base_variables().items()}
  want = abstract_variables(cfg)
  out = {}
  for col, tree in want.items():
    flat = {}
    for path, leaf in traverse_util.flatten_dict(tree).items():
      value = base[col][path]
      if path == ("classifier", "kernel") and value.shape != leaf.shape:
        rows = leaf.shape[0]
        value = value[:rows] if cfg.image_stream else value[-rows:]
      assert value.shape == leaf.shape, (path, value.shape, leaf.shape)
      flat[path] = value
    out[col] = traverse_util.unflatten_dict(flat)
  return out


@functools.cache
def forward_fn(cfg: StressNetConfig, train: bool):
  model = build_model(cfg)
  if train:
    return jax.jit(
      lambda v, x, lm, m, rng: model.apply(
        v, x, lm, m, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
      )
    )
  return jax.jit(lambda v, x, lm, m, rng: (model.apply(v, x, lm, m), None))


def forward(cfg, variables, x, landmarks, mask, train=False, rng=None):
  """((logits, aux), new_state or None)."""
  rng = jax.random.key(7) if rng is None else rng
  return forward_fn(cfg, train)(variables, x, landmarks, mask, rng)


@functools.cache
def abstract_variables(cfg: StressNetConfig):
  model = build_model(cfg)
  return jax.eval_shape(lambda rng: init_variables(model, rng, 1, 2), jax.random.key(0))


def param_paths(cfg: StressNetConfig) -> dict[str, tuple[int, ...]]:
  flat = traverse_util.flatten_dict(abstract_variables(cfg)["params"], sep="/")
  return {path: leaf.shape for path, leaf in flat.items()}
