"""Training: a pure jitted step over a device mesh, orbax checkpoints, exact resume.

Parallelism is data parallel with `jax.jit` over a Mesh whose single axis is
`data`: the batch is sharded `P('data')`, parameters and optimizer state are
replicated `P()`. XLA inserts the gradient all-reduce, and BatchNorm statistics
are computed over the global batch because the model sees one global array. The
same program runs on one CPU, fake CPU devices, a GPU or a TPU pod slice; several
hosts join through `jax.distributed` (see the top-level train.py).
"""

from __future__ import annotations

import functools
import json
import pathlib
import signal
import sys
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stress_jax import checkpointing, input_pipeline, metrics, protocols
from stress_jax.metric_writer import MetricWriter
from stress_jax.models import build_model

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a terminated job


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


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(optim_config, total_steps)
  if optim_config.name == "adamw":
    update = optax.adamw(schedule, weight_decay=optim_config.weight_decay, mask=_decay_mask)
  elif optim_config.name == "sgd":
    update = optax.chain(
      optax.add_decayed_weights(optim_config.weight_decay, mask=_decay_mask),
      optax.sgd(schedule, momentum=optim_config.momentum, nesterov=True),
    )
  else:
    raise ValueError(f"unknown optimizer {optim_config.name!r}; use 'adamw' or 'sgd'")
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


def init_state(model, tx, rng, batch: dict, dtype) -> TrainState:
  batch = input_pipeline.device_preprocess(batch, dtype)
  variables = model.init(
    {"params": rng, "dropout": rng},
    batch["inputs"],
    batch["landmarks"],
    batch["frame_mask"],
    train=False,
  )
  params = variables["params"]
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=variables.get("batch_stats", {}),
    opt_state=tx.init(params),
  )


def _variables(state: TrainState) -> dict:
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return variables


def cross_entropy(logits, labels, weights):
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def train_step(state: TrainState, batch: dict, rng, *, model, tx, schedule, dtype):
  """One optimizer step on a global batch. Pure: the dropout key is fold_in(rng, step)."""
  batch = input_pipeline.device_preprocess(batch, dtype)
  dropout_rng = jax.random.fold_in(rng, state.step)
  weights = batch["valid"].astype(jnp.float32)

  def loss_fn(params):
    (logits, _), updates = model.apply(
      {"params": params, "batch_stats": state.batch_stats},
      batch["inputs"],
      batch["landmarks"],
      batch["frame_mask"],
      train=True,
      rngs={"dropout": dropout_rng},
      mutable=["batch_stats"],
    )
    return cross_entropy(logits, batch["label"], weights), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, param_updates)
  correct = (logits.argmax(-1) == batch["label"]).astype(jnp.float32)
  step_metrics = {
    "loss": loss,
    "accuracy": (correct * weights).sum() / jnp.maximum(weights.sum(), 1.0),
    "grad_norm": optax.global_norm(grads),
    "param_norm": optax.global_norm(params),
    "learning_rate": schedule(state.step),
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
    self.p_train_step = jax.jit(
      functools.partial(
        train_step, model=self.model, tx=self.tx, schedule=self.schedule, dtype=self.dtype
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


class _Preemption:
  """SIGTERM (cloud preemption) sets a flag; the loop saves and stops at the next step."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self._previous)

  def agreed(self) -> bool:
    """Every process must stop at the same step, or the collectives would hang."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.array(self.requested))
    return bool(np.any(flags))


def _check_finite(pending: list[tuple[int, dict]]) -> None:
  if not pending:
    return
  losses = np.asarray(jax.device_get([m["loss"] for _, m in pending]))
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    step = pending[int(bad[0])][0]
    raise FloatingPointError(
      f"non-finite loss ({losses[bad[0]]}) at step {step}; stopping before it is checkpointed"
    )


def write_config(config, workdir: pathlib.Path) -> None:
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))


def train_and_evaluate(config, workdir) -> dict:
  """Trains (resuming from `workdir` if it holds checkpoints) and evaluates on test subjects."""
  workdir = pathlib.Path(workdir)
  trainer = Trainer(config, workdir)
  write_config(config, workdir)
  writer = MetricWriter(workdir)
  manager = checkpointing.CheckpointManager(workdir, config.train)

  state = trainer.initial_state()
  restored = manager.restore_latest(state)
  train_iter = trainer.train_iterator()
  if restored is not None:
    state, data_state = restored
    train_iter.set_state(data_state)
    logging.info("resumed from step %d", int(state.step))
  start_step = int(state.step)
  total_steps = trainer.total_steps
  if jax.process_index() == 0:
    print(
      f"training {config.data.name}: {len(trainer.split.train)} train / "
      f"{len(trainer.split.val)} val / {len(trainer.split.test)} test subjects, "
      f"{trainer.steps_per_epoch} steps per epoch, {total_steps} steps, "
      f"{jax.device_count()} device(s) x {jax.process_count()} process(es)"
      + (f"; resuming at step {start_step}" if start_step else ""),
      flush=True,
    )

  eval_every = int(config.train.eval_every_steps)
  eval_every = trainer.steps_per_epoch if eval_every <= 0 else eval_every
  log_every = max(1, int(config.train.log_every_steps))
  progress = _progress(config, start_step, total_steps)
  pending: list[tuple[int, dict]] = []
  last_log_time, last_log_step = time.time(), start_step
  preempted = False

  with _Preemption() as preemption:
    for step in range(start_step + 1, total_steps + 1):
      batch = next(train_iter)
      data_state = train_iter.get_state()
      state, step_metrics = trainer.p_train_step(
        state, input_pipeline.to_global(batch, trainer.data_sharding), trainer.dropout_rng
      )
      pending.append((step, step_metrics))
      if len(pending) > 1:
        # Wait (without copying anything to the host) for the step before this one:
        # keeps one step queued behind the running one, so input batches do not pile
        # up in memory and the progress bar tracks real work.
        jax.block_until_ready(pending[-2][1]["loss"])
      is_last = step == total_steps
      if step % log_every == 0 or is_last:
        _check_finite(pending)
        averaged = {k: float(np.mean([float(m[k]) for _, m in pending])) for k in pending[0][1]}
        pending.clear()
        elapsed = time.time() - last_log_time
        averaged["clips_per_s"] = (step - last_log_step) * trainer.global_batch / max(elapsed, 1e-9)
        last_log_time, last_log_step = time.time(), step
        writer.write(step, averaged, prefix="train/")
        if progress is not None:
          progress.set_postfix(
            loss=f"{averaged['loss']:.3f}",
            acc=f"{averaged['accuracy']:.2f}",
            clips_s=f"{averaged['clips_per_s']:.1f}",
          )
      if progress is not None:
        progress.update(1)
      if step % eval_every == 0 or is_last:
        _check_finite(pending)
        val = trainer.evaluate(state, trainer.split.val)
        writer.write(step, _scalars(val), prefix="val/")
        manager.save(step, state, data_state, val_metrics=val)
      elif step % int(config.train.checkpoint_every_steps) == 0:
        _check_finite(pending)
        manager.save(step, state, data_state)
      if not is_last and preemption.agreed():
        _check_finite(pending)
        manager.save(step, state, data_state, force=True)
        preempted = True
        break
  if progress is not None:
    progress.close()
  manager.wait()
  writer.flush()
  if preempted:
    writer.close()
    manager.close()
    if jax.process_index() == 0:
      print(
        f"preempted (SIGTERM) at step {int(state.step)}: checkpoint saved in {workdir}; "
        "run the same command again to resume",
        flush=True,
      )
    return {"preempted": True, "step": int(state.step)}

  summary = final_evaluation(trainer, manager, state, workdir, writer)
  writer.close()
  manager.close()
  return summary


def _scalars(result: dict) -> dict:
  return {k: v for k, v in result.items() if isinstance(v, (int, float))}


def final_evaluation(trainer, manager, last_state, workdir, writer) -> dict:
  """Test-subject metrics of the checkpoint selected on validation subjects."""
  best_step = manager.best_step()
  state = last_state
  if best_step is not None and best_step != int(last_state.step):
    state, _ = manager.restore(best_step, last_state)
  faithfulness = None
  if trainer.handle.synthetic and jax.process_count() == 1:
    # The attention must be scored against the clips' cue annotations, which only
    # the host metadata carries; keep_metadata lines it up in one process only.
    from stress_jax import faithfulness as attention

    out = trainer.predict(state, trainer.split.test, keep_metadata=True)
    test = metrics.classification_metrics(
      out["label"], out["probabilities"], trainer.handle.label_names
    )
    faithfulness = attention.attention_faithfulness(out)
  else:
    test = trainer.evaluate(state, trainer.split.test)
  step = int(last_state.step)
  writer.write(step, _scalars(test), prefix="test/")
  summary = {
    "dataset": trainer.config.data.name,
    "fold": int(trainer.config.protocol.fold),
    "selected_step": int(state.step),
    "final_step": step,
    "test_subjects": list(trainer.split.test),
    "val_subjects": list(trainer.split.val),
    "label_names": list(trainer.handle.label_names),
    "test": test,
  }
  if faithfulness:
    summary["attention_faithfulness"] = faithfulness
  if jax.process_index() == 0:
    (pathlib.Path(workdir) / "summary.json").write_text(json.dumps(summary, indent=2))
  return summary


def _progress(config, start_step, total_steps):
  if jax.process_index() != 0 or not config.train.progress_bar:
    return None
  from tqdm import tqdm

  return tqdm(
    total=total_steps,
    initial=start_step,
    unit="step",
    dynamic_ncols=True,
    file=sys.stdout,
    mininterval=1.0,
  )
