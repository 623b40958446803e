"""model.freeze_trunk: no updates, no optimizer state, stored BN statistics, no trunk gradient."""

from __future__ import annotations

import functools

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from stress_jax import steps
from stress_jax.models import build_model
from tests import tiny_config, torch_resnet18

# Also run by the GPU check with the accelerator as JAX's default backend.
pytestmark = pytest.mark.gpu_ok

FRAMES = 3


def model_config(**overrides):
  config = tiny_config.get_config().model
  config.update(overrides)
  return config


def batch_for(config, seed=0, batch=2):
  rng = np.random.default_rng(seed)
  if config.input_mode == "pixels":
    inputs = rng.uniform(0, 1, (batch, FRAMES, 112, 112, 3))
  else:
    inputs = rng.normal(0, 1, (batch, FRAMES, 7, 7, config.stage_widths[-1]))
  return {
    "inputs": inputs.astype(np.float32),
    "landmarks": rng.uniform(0.3, 0.7, (batch, FRAMES, 68, 2)).astype(np.float32),
    "frame_mask": np.ones((batch, FRAMES), bool),
    "label": rng.integers(0, 3, (batch,)).astype(np.int32),
    "photometric": np.zeros((batch, 2), np.float32),
    "valid": np.ones((batch,), bool),
  }


def setup(abstract=False, **overrides):
  """(model, state, unjitted step, batch); abstract: the state as ShapeDtypeStructs."""
  config = model_config(**overrides)
  optim = tiny_config.get_config().optim
  model = build_model(config)
  tx = steps.make_optimizer(optim, 100, bool(config.freeze_trunk))
  batch = batch_for(config)
  init = functools.partial(steps.init_state, model, tx, dtype=jnp.float32)
  if abstract:
    state = jax.eval_shape(init, jax.random.key(0), batch)
  else:
    state = jax.jit(init)(jax.random.key(0), batch)
  step = functools.partial(
    steps.train_step,
    model=model,
    tx=tx,
    schedule=steps.learning_rate_schedule(optim, 100),
    dtype=jnp.float32,
  )
  return model, state, step, batch


def keys_of(tree) -> set[str]:
  paths = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {getattr(k, "key", None) for path, _ in paths for k in path}


def test_frozen_trunk_is_bit_identical_after_training_while_the_head_learns():
  _, state, step, batch = setup(freeze_trunk=True)
  initial = jax.device_get(state)
  step = jax.jit(step)
  for _ in range(3):  # step 0 has learning rate 0 (warm-up)
    state, metrics = step(state, batch, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
  final = jax.device_get(state)
  for name in ("params", "batch_stats"):
    before, after = getattr(initial, name)["trunk"], getattr(final, name)["trunk"]
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
      np.testing.assert_array_equal(a, b)
  head = ("head", "block1", "conv1", "kernel")
  for name, path in (("params", head), ("params", ("classifier", "kernel"))):
    assert not np.array_equal(_get(initial, name, path), _get(final, name, path)), path
  stats = ("head", "block1", "bn1", "mean")
  assert not np.array_equal(_get(initial, "batch_stats", stats), _get(final, "batch_stats", stats))


def _get(state, name, path):
  tree = getattr(state, name)
  for key in path:
    tree = tree[key]
  return tree


def test_without_freezing_the_trunk_moves():
  _, state, step, batch = setup(freeze_trunk=False)
  before = jax.device_get(state.params["trunk"]["stem_conv"]["kernel"])
  stats = jax.device_get(state.batch_stats["trunk"]["stem_bn"]["mean"])
  step = jax.jit(step)
  for _ in range(2):
    state, _ = step(state, batch, jax.random.key(1))
  assert not np.array_equal(before, state.params["trunk"]["stem_conv"]["kernel"])
  assert not np.array_equal(stats, state.batch_stats["trunk"]["stem_bn"]["mean"])


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_optimizer_state_has_no_trunk_leaves(optimizer):
  config = model_config(freeze_trunk=True)
  inputs = [batch_for(config)[k] for k in ("inputs", "landmarks", "frame_mask")]
  model = build_model(config)
  params = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, *inputs))["params"]
  optim = tiny_config.get_config().optim
  optim.name = optimizer
  frozen = jax.eval_shape(steps.make_optimizer(optim, 100, freeze_trunk=True).init, params)
  full = jax.eval_shape(steps.make_optimizer(optim, 100).init, params)
  assert "trunk" in keys_of(full) and "trunk" not in keys_of(frozen)
  assert "head" in keys_of(frozen) and "classifier" in keys_of(frozen)
  trunk_size = sum(x.size for x in jax.tree.leaves(params["trunk"]))
  size = lambda tree: sum(np.prod(x.shape, dtype=int) for x in jax.tree.leaves(tree))
  moments = 2 if optimizer == "adamw" else 1
  assert size(full) - size(frozen) == moments * trunk_size


def count_convs(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    total += eqn.primitive.name == "conv_general_dilated"
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(sub, jex.ClosedJaxpr):
          total += count_convs(sub.jaxpr)
        elif isinstance(sub, jex.Jaxpr):
          total += count_convs(sub)
  return total


def step_convs(**overrides) -> int:
  _, state, step, batch = setup(abstract=True, **overrides)
  return count_convs(jax.make_jaxpr(step)(state, batch, jax.random.key(1)).jaxpr)


def test_no_convolution_of_a_trunk_gradient_is_traced():
  """Frozen step = the trunk's inference forward + a features-mode step of the same head.

  Any gradient through the trunk (input or kernel) would add convolutions to the left side.
  """
  model, state, _, batch = setup(abstract=True, freeze_trunk=True)

  def trunk_forward(module, x):
    return module.trunk(x, False)

  variables = {"params": state.params, "batch_stats": state.batch_stats}
  frames = batch["inputs"].reshape(-1, 112, 112, 3)
  trunk = count_convs(
    jax.make_jaxpr(lambda v, x: model.apply(v, x, method=trunk_forward))(variables, frames).jaxpr
  )
  frozen = step_convs(freeze_trunk=True)
  features = step_convs(input_mode="features")
  full = step_convs(freeze_trunk=False)
  assert trunk == 1 + 3 * 2 + 2  # stem, one 2-conv block per stage, two projections
  assert frozen == trunk + features
  assert full > frozen + trunk  # sanity: training the trunk adds its backward convolutions


def test_trainer_loads_pretrained_and_keeps_it_frozen(fake_data_dir, tmp_path):
  """Through Trainer: model.pretrained fills the trunk, freeze_trunk keeps it over steps."""
  from stress_jax.trainer import Trainer

  config = tiny_config.get_config()
  model = config.model
  torch_model = torch_resnet18.randomized(
    3, widths=(model.stem_width, *model.stage_widths, model.head_width), blocks=1
  )
  path = tmp_path / "tiny_resnet.safetensors"
  save_file({k: v.numpy().copy() for k, v in torch_model.state_dict().items()}, str(path))
  config.data.data_dir = str(fake_data_dir)
  model.update({"pretrained": str(path), "freeze_trunk": True, "pixel_norm": "imagenet"})
  trainer = Trainer(config, tmp_path / "run")
  state = trainer.initial_state()
  np.testing.assert_array_equal(
    state.params["trunk"]["stage2_block1"]["proj_conv"]["kernel"],
    torch_model.layer2[0].downsample[0].weight.detach().numpy().transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(
    state.batch_stats["trunk"]["stem_bn"]["var"], torch_model.bn1.running_var.numpy()
  )
  np.testing.assert_array_equal(  # layer4.0 fits the tiny head (16 -> 16) too
    state.params["head"]["block1"]["conv2"]["kernel"],
    torch_model.layer4[0].conv2.weight.detach().numpy().transpose(2, 3, 1, 0),
  )
  # Evaluation rebuilds the optimizer state from full params (evaluate._state): same tree.
  assert jax.tree.structure(trainer.tx.init(state.params)) == jax.tree.structure(state.opt_state)
  trunk = jax.device_get(state.params["trunk"])
  from stress_jax import input_pipeline

  batches = trainer.train_iterator()
  for _ in range(2):
    batch = input_pipeline.to_global(next(batches), trainer.data_sharding)
    state, _ = trainer.p_train_step(state, batch, trainer.dropout_rng)
  for a, b in zip(jax.tree.leaves(trunk), jax.tree.leaves(state.params["trunk"]), strict=True):
    np.testing.assert_array_equal(a, b)
