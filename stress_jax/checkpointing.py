"""orbax checkpoints of (train state, data iterator state), keep-last-N plus best-on-validation.

Layout: `<workdir>/checkpoints/<step>/{state,data}` plus orbax's metrics. The
state is a pytree of arrays (no pickle); the grain iterator state is JSON. Saves
are asynchronous: training goes on while the previous checkpoint is written.
"""

from __future__ import annotations

import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from stress_jax import storage

# Model selection is on validation macro-F1: it does not reward predicting the
# majority class, and accuracy breaks its ties.
SELECTION_METRIC = "val_selection"


class _PeriodicSaveWithoutMetrics(logging.Filter):
  """Periodic saves carry no validation metrics by design; orbax warns on each one."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "did not provide metrics" not in record.getMessage()


logging.getLogger("absl").addFilter(_PeriodicSaveWithoutMetrics())


def selection_score(val_metrics: dict) -> float:
  return float(val_metrics["macro_f1"]) + 1e-6 * float(val_metrics["accuracy"])


class CheckpointManager:
  def __init__(self, workdir, train_config, *, read_only: bool = False):
    self.directory = storage.absolute(workdir) / "checkpoints"
    policy = checkpoint_managers.AnyPreservationPolicy(
      [
        checkpoint_managers.LatestN(n=int(train_config.keep_checkpoints)),
        checkpoint_managers.BestN(
          get_metric_fn=lambda m: m[SELECTION_METRIC],
          n=1,
          keep_checkpoints_without_metrics=False,
        ),
      ]
    )
    options = ocp.CheckpointManagerOptions(
      preservation_policy=policy,
      best_fn=lambda m: m[SELECTION_METRIC],
      best_mode="max",
      enable_async_checkpointing=bool(train_config.get("async_checkpoints", True)),
      create=not read_only,
      read_only=read_only,
    )
    self._manager = ocp.CheckpointManager(
      self.directory, item_names=("state", "data"), options=options
    )

  def save(self, step: int, state, data_state: dict, *, val_metrics=None, force=False) -> None:
    metrics = None if val_metrics is None else {SELECTION_METRIC: selection_score(val_metrics)}
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
      ),
      metrics=metrics,
      force=force,
    )

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    return self._manager.best_step()

  def restore(self, step: int, target_state):
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
      ),
    )
    return restored["state"], restored["data"]

  def restore_latest(self, target_state):
    step = self.latest_step()
    if step is None:
      return None
    return self.restore(step, target_state)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def load_state_arrays(workdir, step: int | None = None) -> tuple[int, dict]:
  """A checkpoint's train state as plain numpy arrays, without building the model.

  Returns (step, {"params": ..., "batch_stats": ..., "step": ..., "opt_state": ...}).
  """
  directory = storage.absolute(workdir) / "checkpoints"
  if not directory.is_dir():
    raise FileNotFoundError(f"no checkpoints in {workdir} (expected {directory})")
  manager = ocp.CheckpointManager(
    directory,
    item_handlers={
      "state": ocp.StandardCheckpointHandler(),
      "data": ocp.JsonCheckpointHandler(),
    },
    options=ocp.CheckpointManagerOptions(read_only=True, create=False),
  )
  try:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoints in {directory}")
    # Restore onto this process's first device whatever devices saved it, so a
    # checkpoint from a TPU pod or 4 fake devices reads back on a laptop.
    metadata = manager.item_metadata(step)["state"]
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata
    )
    restored = manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
    )
  finally:
    manager.close()
  return step, jax.tree.map(np.asarray, dict(restored["state"]))
