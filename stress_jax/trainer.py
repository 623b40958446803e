"""A run's compiled pieces: dataset handle, subject split, mesh, model and jitted steps.

Parallelism is data parallel with `jax.jit` over a Mesh whose single axis is
`data`: the batch is sharded `P('data')`, parameters and optimizer state are
replicated `P()`. XLA inserts the gradient all-reduce, and BatchNorm statistics
are computed over the global batch because the model sees one global array. The
same program runs on one CPU, fake CPU devices, a GPU or a TPU pod slice; several
hosts join through `jax.distributed` (see the top-level train.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stress_jax import cli, input_pipeline, metrics, protocols, storage
from stress_jax.models import build_model, pretrained, resolve_dtype
from stress_jax.objectives import Objective
from stress_jax.steps import (
  TrainState,
  compute_dtype,
  dummy_batch,
  eval_step,
  init_state,
  init_variables,
  learning_rate_schedule,
  make_optimizer,
  state_from_variables,
  train_step,
)


class BatchSizeError(cli.UserError, ValueError):
  """A config's global batch that the devices cannot share evenly (a user error)."""


def _host(x) -> np.ndarray:
  """A (possibly multi-host) global array -> the whole array on this host."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


class Trainer:
  """Holds what one run needs: data handle, mesh, model, compiled steps."""

  def __init__(self, config, workdir):
    self.config = config
    self.workdir = storage.as_path(workdir)
    self.handle = open_dataset_once(config.data)
    with config.unlocked():
      config.model.num_classes = len(self.handle.label_names)
      # Recorded resolved in config.json: evaluation and export compute as training did.
      config.model.dtype = resolve_dtype(config.model.dtype, jax.default_backend())
    self.split = protocols.split_subjects(config.protocol, self.handle.subjects)
    self.global_batch = int(config.input.batch_size)
    self.steps_per_epoch = input_pipeline.steps_per_epoch(
      self.handle, self.split.train, self.global_batch
    )
    self.num_epochs = int(config.train.num_epochs)
    if config.train.num_steps > 0:
      self.total_steps = int(config.train.num_steps)
      self.num_epochs = -(-self.total_steps // self.steps_per_epoch)
    else:
      self.total_steps = self.num_epochs * self.steps_per_epoch

    self.mesh = make_mesh()
    if self.global_batch % jax.device_count():
      raise BatchSizeError(
        f"input.batch_size={self.global_batch} does not divide over the {jax.device_count()} "
        f"devices of {jax.process_count()} process(es); use a multiple of {jax.device_count()}"
      )

    root = jax.random.key(int(config.seed))
    init_rng, data_rng, self.dropout_rng = jax.random.split(root, 3)
    self.data_seed = int(jax.random.randint(data_rng, (), 0, 2**31 - 1))
    self.model = build_model(config.model)
    self.dtype = compute_dtype(config.model)
    self.schedule = learning_rate_schedule(config.optim, self.total_steps)
    # The model's own config: its defaults cover a config.json from before these fields.
    self.tx = make_optimizer(config.optim, self.total_steps, self.model.config.freeze_trunk)

    sample = dummy_batch(self.handle, self.global_batch)
    self.init_rng = init_rng
    self.objective = Objective.from_config(config.train)
    model_config = self.model.config
    if model_config.detach_stream_attention and self.model.has_stream_heads:
      if self.objective.stream_weight <= 0:
        raise cli.ConfigError(
          "model.detach_stream_attention needs train.stream_loss_weight > 0: the frame "
          "weights learn only from the stream heads' loss"
        )
    steps = jit_steps(
      self.model, self.tx, self.schedule, self.dtype, self.mesh, sample, self.objective
    )
    self.data_sharding = steps.data_sharding
    self.replicated = steps.replicated
    self.state_shardings = steps.state_shardings
    abstract = steps.abstract_state
    self._abstract_variables = {"params": abstract.params, "batch_stats": abstract.batch_stats}
    self._init = steps.init
    self.p_train_step = steps.train_step
    self.p_eval_step = steps.eval_step

  def initial_state(self) -> TrainState:
    """The step-0 state, with model.pretrained's weights when it names a file."""
    return self._init(self.init_rng, self._pretrained())

  def _pretrained(self) -> dict | None:
    # Read here, not in __init__: evaluation builds a Trainer from a run's config.json
    # and restores a checkpoint, so it never needs the file.
    path = str(self.config.model.get("pretrained", "") or "")
    if not path:
      return None
    weights = pretrained.load_for_model(path, self._abstract_variables)
    pixel_norm = self.model.config.pixel_norm
    if pixel_norm != "imagenet":
      logging.warning(
        "model.pretrained with pixel_norm=%r: ImageNet weights expect pixel_norm='imagenet'",
        pixel_norm,
      )
    return {
      k: jax.make_array_from_process_local_data(self.replicated, v) for k, v in weights.items()
    }

  def train_iterator(self):
    dataset = input_pipeline.train_dataset(
      self.handle,
      self.split.train,
      self.config.input,
      seed=self.data_seed,
      num_epochs=self.num_epochs,
      triplets=self.objective.triplet,
    )
    return iter(dataset)

  def predict(self, state: TrainState, subjects, *, keep_metadata=False):
    """Probabilities and host metadata for every clip of `subjects` (padding removed)."""
    if keep_metadata and jax.process_count() > 1:
      # Metadata stays on the host that read it while outputs are gathered from all
      # hosts; their rows would not line up.
      raise ValueError("per-clip metadata needs a single process; evaluate in one process")
    batch_size = int(self.config.input.eval_batch_size)
    # Keep each device's share whole: round the eval batch up to the device count.
    batch_size = -(-batch_size // jax.device_count()) * jax.device_count()
    outputs = []
    for batch in input_pipeline.eval_batches(
      self.handle, subjects, batch_size, keep_metadata=keep_metadata
    ):
      global_batch = input_pipeline.to_global(batch, self.data_sharding)
      probabilities, aux = self.p_eval_step(state, global_batch)
      host = {
        "probabilities": _host(probabilities),
        "label": _host(global_batch["label"]),
        "valid": _host(global_batch["valid"]),
      }
      if keep_metadata:
        host.update({f"aux/{k}": _host(v) for k, v in aux.items()})
        host.update({k: v for k, v in batch.items() if k not in input_pipeline.DEVICE_KEYS})
        host["frame_mask"] = batch["frame_mask"]
      outputs.append(host)
    merged = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    valid = merged.pop("valid").astype(bool)
    return {k: v[valid] for k, v in merged.items()}

  def evaluate(self, state: TrainState, subjects) -> dict:
    out = self.predict(state, subjects)
    return metrics.classification_metrics(
      out["label"], out["probabilities"], self.handle.label_names
    )


@dataclasses.dataclass(frozen=True)
class JittedSteps:
  """The shardings and jitted functions of one (model, optimizer, mesh)."""

  data_sharding: NamedSharding
  replicated: NamedSharding
  state_shardings: Any
  abstract_state: Any  # the TrainState's shapes and dtypes
  init: Callable  # (rng, pretrained=None) -> TrainState, placed with state_shardings
  train_step: Callable  # (state, batch, rng) -> (state, metrics); donates state
  eval_step: Callable  # (state, batch) -> (probabilities, aux)


def jit_steps(model, tx, schedule, dtype, mesh, sample, objective=None) -> JittedSteps:
  """Jits init/train/eval over `mesh`: batch sharded on `data`, state replicated.

  `sample` is a host batch of the global batch shape (only its shapes are used). The
  Trainer and the benchmarks both build their steps here, so a benchmark times the
  program `python train.py` runs.
  """
  data_sharding = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())
  abstract = jax.eval_shape(
    functools.partial(init_state, model, tx, dtype=dtype), jax.random.key(0), sample
  )
  state_shardings = jax.tree.map(lambda _: replicated, abstract)
  # Initialisation needs only the input's shapes. One clip of zeros made inside the
  # program keeps the variables' program free of the batch size, the data sharding and
  # the optimizer, so runs of one model share it, and the persistent compilation cache
  # too: XLA:CPU takes seconds to compile the initialisers' random number generation.
  clip = {k: ((1, *np.shape(v)[1:]), np.asarray(v).dtype) for k, v in sample.items()}

  def variables(rng, pretrained):
    zeros = {k: jax.numpy.zeros(shape, dt) for k, (shape, dt) in clip.items()}
    return init_variables(model, rng, zeros, pretrained, dtype=dtype)

  make_variables = jax.jit(variables, out_shardings=replicated)
  make_state = jax.jit(
    functools.partial(state_from_variables, tx=tx), out_shardings=state_shardings
  )

  def init(rng, pretrained=None):
    return make_state(make_variables(rng, pretrained))

  return JittedSteps(
    data_sharding=data_sharding,
    replicated=replicated,
    state_shardings=state_shardings,
    abstract_state=abstract,
    init=init,
    train_step=jax.jit(
      functools.partial(
        train_step, model=model, tx=tx, schedule=schedule, dtype=dtype, objective=objective
      ),
      in_shardings=(state_shardings, data_sharding, replicated),
      out_shardings=(state_shardings, replicated),
      donate_argnums=0,
    ),
    eval_step=jax.jit(
      functools.partial(eval_step, model=model, dtype=dtype),
      in_shardings=(state_shardings, data_sharding),
    ),
  )


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D `data` mesh over every device of every process.

  Auto axis types: XLA's sharding propagation places the replicated parameters
  and inserts the gradient all-reduce (jax >= 0.7 defaults to Explicit types).
  """
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def open_dataset_once(data_config) -> input_pipeline.DatasetHandle:
  """Process 0 builds a missing dataset; the others wait for it; then all open it."""
  from stress_jax.data import build

  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
      build.ensure_built(data_config)
    multihost_utils.sync_global_devices("dataset ready")
  else:
    build.ensure_built(data_config)
  return input_pipeline.open_dataset(data_config)
