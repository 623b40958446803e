"""A run's compiled pieces: dataset handle, subject split, mesh, model and jitted steps.

Parallelism is data parallel with `jax.jit` over a Mesh whose single axis is
`data`: the batch is sharded `P('data')`, parameters and optimizer state are
replicated `P()`. XLA inserts the gradient all-reduce, and BatchNorm statistics
are computed over the global batch because the model sees one global array. The
same program runs on one CPU, fake CPU devices, a GPU or a TPU pod slice; several
hosts join through `jax.distributed` (see the top-level train.py).
"""

from __future__ import annotations

import functools
import pathlib

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stress_jax import input_pipeline, metrics, protocols
from stress_jax.models import build_model
from stress_jax.objectives import Objective
from stress_jax.steps import (
  TrainState,
  compute_dtype,
  dummy_batch,
  eval_step,
  init_state,
  learning_rate_schedule,
  make_optimizer,
  train_step,
)


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
    self.workdir = pathlib.Path(workdir)
    self.handle = open_dataset_once(config.data)
    with config.unlocked():
      config.model.num_classes = len(self.handle.label_names)
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
    self.data_sharding = NamedSharding(self.mesh, P("data"))
    self.replicated = NamedSharding(self.mesh, P())
    if self.global_batch % jax.device_count():
      raise ValueError(
        f"batch_size={self.global_batch} is not divisible by {jax.device_count()} devices"
      )

    root = jax.random.key(int(config.seed))
    init_rng, data_rng, self.dropout_rng = jax.random.split(root, 3)
    self.data_seed = int(jax.random.randint(data_rng, (), 0, 2**31 - 1))
    self.model = build_model(config.model)
    self.dtype = compute_dtype(config.model)
    self.schedule = learning_rate_schedule(config.optim, self.total_steps)
    self.tx = make_optimizer(config.optim, self.total_steps)

    sample = dummy_batch(self.handle, self.global_batch)
    self.init_rng = init_rng
    self.state_shardings = None
    init = functools.partial(init_state, self.model, self.tx, dtype=self.dtype)
    abstract = jax.eval_shape(init, init_rng, sample)
    self.state_shardings = jax.tree.map(lambda _: self.replicated, abstract)
    self._init = jax.jit(init, out_shardings=self.state_shardings)
    self._sample = sample
    self.objective = Objective.from_config(config.train)
    self.p_train_step = jax.jit(
      functools.partial(
        train_step,
        model=self.model,
        tx=self.tx,
        schedule=self.schedule,
        dtype=self.dtype,
        objective=self.objective,
      ),
      in_shardings=(self.state_shardings, self.data_sharding, self.replicated),
      out_shardings=(self.state_shardings, self.replicated),
      donate_argnums=0,
    )
    self.p_eval_step = jax.jit(
      functools.partial(eval_step, model=self.model, dtype=self.dtype),
      in_shardings=(self.state_shardings, self.data_sharding),
    )

  def initial_state(self) -> TrainState:
    sample = {k: jax.device_put(v, self.data_sharding) for k, v in self._sample.items()}
    return self._init(self.init_rng, sample)

  def abstract_state(self):
    return jax.eval_shape(lambda: self.initial_state())

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


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D `data` mesh over every device of every process.

  Auto axis types: XLA's sharding propagation places the replicated parameters
  and inserts the gradient all-reduce (jax >= 0.7 defaults to Explicit types).
  """
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def open_dataset_once(data_config) -> input_pipeline.DatasetHandle:
  """Process 0 builds a missing dataset; the others wait for it, then open it."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
      handle = input_pipeline.open_dataset(data_config)
    multihost_utils.sync_global_devices("dataset ready")
    if jax.process_index() != 0:
      handle = input_pipeline.open_dataset(data_config)
    return handle
  return input_pipeline.open_dataset(data_config)
