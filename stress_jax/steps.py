"""The pure pieces of training: state, optimizer, loss, and the train/eval steps.

`train_step` is a pure function of (state, batch, rng); `Trainer` (trainer.py) jits
it over a device mesh. Kept apart from the loop so that benchmarks, export and
evaluation can use the steps without the loop's checkpointing and logging.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stress_jax import cli, input_pipeline
from stress_jax.models import pretrained as pretrained_weights
from stress_jax.objectives import Objective, cross_entropy, flatten_triplets, training_loss

__all__ = ["cross_entropy"]  # re-exported: benchmarks score the plain loss through steps

FROZEN = "trunk"  # the parameter subtree model.freeze_trunk keeps fixed


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  batch_stats: dict
  opt_state: optax.OptState


def compute_dtype(model_config):
  return jnp.bfloat16 if model_config.dtype == "bfloat16" else jnp.float32


def _decay_mask(params):
  # Weight decay on kernels only: BatchNorm scales/biases and dense biases are 1-D.
  return jax.tree.map(lambda p: p.ndim > 1, params)


def learning_rate_schedule(optim_config, total_steps: int) -> optax.Schedule:
  warmup = min(int(optim_config.warmup_steps), max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=optim_config.learning_rate,
    warmup_steps=warmup,
    decay_steps=max(total_steps, warmup + 1),
    end_value=optim_config.learning_rate * optim_config.end_learning_rate_factor,
  )


def split_frozen(params: dict, freeze_trunk: bool) -> tuple[dict, dict]:
  """(trained, frozen) halves of `params`; frozen is {} unless freeze_trunk."""
  if not freeze_trunk or FROZEN not in params:
    return params, {}
  return {k: v for k, v in params.items() if k != FROZEN}, {FROZEN: params[FROZEN]}


def without_frozen(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx` over every parameter but the trunk: its state holds no trunk leaves.

  Accepts full or trunk-less trees (evaluation builds the state from full params), and
  returns updates for the trunk-less tree only.
  """

  def init(params):
    return tx.init(split_frozen(params, True)[0])

  def update(updates, state, params=None):
    if params is not None:
      params = split_frozen(params, True)[0]
    return tx.update(split_frozen(updates, True)[0], state, params)

  return optax.GradientTransformation(init, update)


def make_optimizer(
  optim_config, total_steps: int, freeze_trunk: bool = False
) -> optax.GradientTransformation:
  tx = _make_optimizer(optim_config, total_steps)
  return without_frozen(tx) if freeze_trunk else tx


def _make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(optim_config, total_steps)
  if optim_config.name == "adamw":
    update = optax.adamw(schedule, weight_decay=optim_config.weight_decay, mask=_decay_mask)
  elif optim_config.name == "sgd":
    update = optax.chain(
      optax.add_decayed_weights(optim_config.weight_decay, mask=_decay_mask),
      optax.sgd(schedule, momentum=optim_config.momentum, nesterov=True),
    )
  else:
    raise cli.ConfigError(f"unknown optimizer {optim_config.name!r}; use 'adamw' or 'sgd'")
  if optim_config.clip_norm and optim_config.clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(optim_config.clip_norm), update)
  return update


def dummy_batch(handle: input_pipeline.DatasetHandle, batch_size: int) -> dict:
  """Zeros shaped like a device batch, for initialisation and shape checks."""
  transform = input_pipeline.ClipTransform(handle)
  example = transform(handle.source(handle.subjects[:1])[0])
  return {
    key: np.zeros((batch_size, *np.shape(example[key])), np.asarray(example[key]).dtype)
    for key in input_pipeline.DEVICE_KEYS
  }


def init_state(model, tx, rng, batch: dict, pretrained=None, *, dtype) -> TrainState:
  """A fresh state; `pretrained` ({"params/trunk/...": array}, pretrained.load_for_model)
  replaces those variables before the optimizer state is built from the parameters."""
  variables = init_variables(model, rng, batch, pretrained, dtype=dtype)
  return state_from_variables(variables, tx)


def state_from_variables(variables: dict, tx) -> TrainState:
  params = variables["params"]
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=variables.get("batch_stats", {}),
    opt_state=tx.init(params),
  )


def init_variables(model, rng, batch: dict, pretrained=None, *, dtype) -> dict:
  """The model's params and batch_stats; only the batch's shapes matter."""
  batch = input_pipeline.device_preprocess(batch, dtype)
  variables = model.init(
    {"params": rng, "dropout": rng},
    batch["inputs"],
    batch["landmarks"],
    batch["frame_mask"],
    train=False,
  )
  if pretrained:
    variables = pretrained_weights.merge(variables, pretrained)
  return dict(variables)


def _variables(state: TrainState) -> dict:
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return variables


def train_step(state: TrainState, batch: dict, rng, *, model, tx, schedule, dtype, objective=None):
  """One optimizer step on a global batch. Pure: the dropout key is fold_in(rng, step).

  objective: an objectives.Objective (None = cross-entropy). With the triplet objective
  the batch holds (B, 3, ...) triplet rows (stress_jax/triplets.py).
  """
  objective = objective or Objective()
  if objective.triplet:
    batch = flatten_triplets(batch)
  batch = input_pipeline.device_preprocess(batch, dtype)
  dropout_rng = jax.random.fold_in(rng, state.step)
  weights = batch["valid"].astype(jnp.float32)
  # A frozen trunk is a constant here: not differentiated, not in the optimizer state.
  trained, frozen = split_frozen(state.params, model.config.freeze_trunk)

  def loss_fn(trained):
    (logits, aux), updates = model.apply(
      {"params": {**trained, **frozen}, "batch_stats": state.batch_stats},
      batch["inputs"],
      batch["landmarks"],
      batch["frame_mask"],
      train=True,
      with_embedding=objective.triplet,
      rngs={"dropout": dropout_rng},
      mutable=["batch_stats"],
    )
    loss, terms = training_loss(objective, logits, aux, batch["label"], weights)
    return loss, (logits, updates, terms)

  (loss, (logits, updates, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trained)
  param_updates, opt_state = tx.update(grads, state.opt_state, trained)
  params = {**optax.apply_updates(trained, param_updates), **frozen}
  correct = (logits.argmax(-1) == batch["label"]).astype(jnp.float32)
  step_metrics = {
    "loss": loss,
    "accuracy": (correct * weights).sum() / jnp.maximum(weights.sum(), 1.0),
    "grad_norm": optax.global_norm(grads),
    "param_norm": optax.global_norm(params),
    "learning_rate": schedule(state.step),
    **terms,
  }
  new_state = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats=updates.get("batch_stats", state.batch_stats),
    opt_state=opt_state,
  )
  return new_state, step_metrics


def eval_step(state: TrainState, batch: dict, *, model, dtype):
  batch = input_pipeline.device_preprocess(batch, dtype)
  logits, aux = model.apply(
    _variables(state), batch["inputs"], batch["landmarks"], batch["frame_mask"], train=False
  )
  return jax.nn.softmax(logits.astype(jnp.float32), -1), aux
