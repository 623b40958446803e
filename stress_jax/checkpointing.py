"""orbax checkpoints of (train state, data iterator state), keep-last-N plus best-on-validation.

Layout: `<workdir>/checkpoints/<step>/{state,data}` plus orbax's metrics. The
state is a pytree of arrays (no pickle); the grain iterator state is JSON. Saves
are asynchronous: training goes on while the previous checkpoint is written.
"""

from __future__ import annotations

import logging
import re
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers

from stress_jax import cli, storage

# Where a checkpoint that fails to restore is moved: kept for inspection, out of
# orbax's way (it would otherwise be picked as the latest again on every resume).
CORRUPT_DIR = "checkpoints_corrupt"


class CheckpointError(cli.UserError):
  """A checkpoint cannot be used; the message is one line naming it."""


class NoCheckpointError(FileNotFoundError):
  """The workdir holds no checkpoint (or not the step asked for)."""


def describe_failure(step_dir, error: BaseException) -> str:
  """The file at fault in a failed restore of `step_dir`, and why, in a few words."""
  step_dir = epath.Path(step_dir)
  for name in ("state", "data"):
    if not (step_dir / name).exists():
      return f"{step_dir / name}/ is missing"
  if not (step_dir / "state" / "_METADATA").exists():
    return f"{step_dir / 'state' / '_METADATA'} is missing"
  text = " ".join(str(e) for e in _chain(error))
  array = re.search(r'Error reading "([^"]+)" in OCDBT database at local file "([^"]+)"', text)
  if array:
    return f"array {array.group(1)} in {array.group(2)} is unreadable (truncated or corrupt)"
  path = re.search(re.escape(str(step_dir)) + r"[^\s'\",]*", text)
  first = str(error).strip().splitlines()[0][:160] if str(error).strip() else repr(error)
  return f"{path.group(0) if path else step_dir}: {first}"


def _chain(error: BaseException):
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def intact_steps(directory, steps) -> list[int]:
  """The steps among `steps` whose files are all there (a cheap check, no array reads)."""
  directory = epath.Path(directory)
  return [
    s
    for s in steps
    if (directory / str(s) / "state" / "_METADATA").exists()
    and (directory / str(s) / "data").exists()
  ]


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

  def save(self, step: int, state, data_state: dict, *, val_metrics=None, force=False) -> bool:
    if force and step in self._manager.all_steps():
      # orbax itself saves at the step all hosts agreed to stop on (its preemption
      # sync point), so a step may already be written when the loop forces its save.
      return False
    metrics = None if val_metrics is None else {SELECTION_METRIC: selection_score(val_metrics)}
    return self._manager.save(
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
    """The newest checkpoint that restores; broken ones are reported and moved aside.

    Returns (state, data_state) or None when no checkpoint restores.
    """
    for step in sorted(self.all_steps(), reverse=True):
      self._check_fits(step, target_state)
      try:
        return self.restore(step, target_state)
      except Exception as error:  # orbax/tensorstore raise many types for a broken file
        where = describe_failure(self.directory / str(step), error)
        moved = self.move_aside(step)
        print(
          f"checkpoint step {step} does not restore ({where}); moved to {moved}, "
          "trying the next older one",
          file=sys.stderr,
          flush=True,
        )
    return None

  def _check_fits(self, step: int, target_state) -> None:
    """A checkpoint of another model is the user's mismatch, not a corrupt file."""
    try:
      state_dir = epath.Path(self.directory) / str(step) / "state"
      metadata = ocp.StandardCheckpointHandler().metadata(state_dir)
    except Exception:  # unreadable metadata: let restore fail and move it aside
      return
    if metadata is None or "params" not in metadata:
      return
    want = _shapes(jax.tree.map(np.shape, dict(target_state.params)))
    have = _shapes(jax.tree.map(lambda m: tuple(m.shape), dict(metadata["params"])))
    for name in sorted(set(want) | set(have)):
      if want.get(name) != have.get(name):
        raise CheckpointError(
          f"checkpoint step {step} in {self.directory} does not fit the config's model: "
          f"params{name} is {have.get(name, 'absent')} there but {want.get(name, 'absent')} "
          "in the model"
        )

  def move_aside(self, step: int) -> epath.Path:
    self.wait()
    source = epath.Path(self.directory) / str(step)
    target = epath.Path(self.directory).parent / CORRUPT_DIR / str(step)
    if jax.process_index() == 0:
      target.parent.mkdir(parents=True, exist_ok=True)
      if target.exists():
        target.rmtree()
      source.rename(target)
    self._manager.reload()
    return target

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _shapes(tree) -> dict[str, tuple]:
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, tuple))[0]
  return {jax.tree_util.keystr(path): value for path, value in leaves}


def load_state_arrays(workdir, step: int | None = None) -> tuple[int, dict]:
  """A checkpoint's train state as plain numpy arrays, without building the model.

  Returns (step, {"params": ..., "batch_stats": ..., "step": ..., "opt_state": ...}).
  A checkpoint that does not read raises CheckpointError naming it and the intact
  ones (nothing is moved: readers do not change the workdir).
  """
  try:
    return _load_state_arrays(workdir, step)
  except (NoCheckpointError, CheckpointError):
    raise
  except Exception as error:  # orbax/tensorstore raise many types for a broken file
    directory = storage.absolute(workdir) / "checkpoints"
    steps = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    bad = step if step is not None else (steps[-1] if steps else None)
    intact = [s for s in intact_steps(directory, steps) if s != bad]
    raise CheckpointError(
      f"checkpoint step {bad} does not restore ({describe_failure(directory / str(bad), error)}); "
      f"intact checkpoints: {', '.join(map(str, intact)) or 'none'}"
    ) from error


def _load_state_arrays(workdir, step: int | None = None) -> tuple[int, dict]:
  directory = storage.absolute(workdir) / "checkpoints"
  if not directory.is_dir():
    raise NoCheckpointError(f"no checkpoints in {workdir} (expected {directory})")
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
      raise NoCheckpointError(f"no checkpoints in {directory}")
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
