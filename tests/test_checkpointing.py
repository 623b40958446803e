"""A checkpoint that does not restore is named, moved aside, and the newest intact one used."""

from __future__ import annotations

import shutil

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stress_jax import checkpointing
from stress_jax.steps import TrainState

TRAIN = ml_collections.ConfigDict(dict(keep_checkpoints=5, async_checkpoints=False))


def _state(step: int, width: int = 3) -> TrainState:
  return TrainState(
    step=jnp.asarray(step, jnp.int32),
    params={"dense": {"kernel": jnp.full((width, 2), float(step))}},
    batch_stats={"bn": {"mean": jnp.full((2,), float(step))}},
    opt_state={"mu": jnp.full((width, 2), 0.5 * step)},
  )


def _saved(workdir, steps=(1, 2, 3)):
  manager = checkpointing.CheckpointManager(workdir, TRAIN)
  for step in steps:
    manager.save(step, _state(step), {"position": step})
  manager.wait()
  manager.close()


def _truncate_arrays(step_dir):
  for path in (step_dir / "state").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(path.read_bytes()[:5])


def _remove_metadata(step_dir):
  (step_dir / "state" / "_METADATA").unlink()


def _remove_state(step_dir):
  shutil.rmtree(step_dir / "state")


@pytest.mark.parametrize(
  ("damage", "named"),
  [
    (_truncate_arrays, "unreadable (truncated or corrupt)"),
    (_remove_metadata, "_METADATA is missing"),
    (_remove_state, "state/ is missing"),
  ],
)
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, capfd, damage, named):
  _saved(tmp_path)
  damage(tmp_path / "checkpoints" / "3")
  manager = checkpointing.CheckpointManager(tmp_path, TRAIN)
  state, data = manager.restore_latest(_state(0))
  manager.close()
  assert int(state.step) == 2 and data == {"position": 2}
  np.testing.assert_array_equal(state.params["dense"]["kernel"], np.full((3, 2), 2.0))
  lines = [line for line in capfd.readouterr().err.splitlines() if "checkpoint step" in line]
  assert len(lines) == 1 and "checkpoint step 3 does not restore" in lines[0]
  assert named in lines[0]
  assert (tmp_path / checkpointing.CORRUPT_DIR / "3").is_dir()
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [
    "1",
    "2",
  ]

  # A reader (evaluate, export) names the broken one and the intact ones, moves nothing.
  _saved(tmp_path / "again")
  damage(tmp_path / "again" / "checkpoints" / "3")
  with pytest.raises(checkpointing.CheckpointError) as error:
    checkpointing.load_state_arrays(tmp_path / "again")
  message = str(error.value)
  assert "checkpoint step 3 does not restore" in message and named in message
  assert message.endswith("intact checkpoints: 1, 2") and "\n" not in message
  assert (tmp_path / "again" / "checkpoints" / "3").is_dir()


def test_a_checkpoint_of_another_model_is_refused_not_moved(tmp_path):
  _saved(tmp_path, steps=(1,))
  manager = checkpointing.CheckpointManager(tmp_path, TRAIN)
  with pytest.raises(checkpointing.CheckpointError, match=r"\(3, 2\) there but \(4, 2\)"):
    manager.restore_latest(_state(0, width=4))
  manager.close()
  assert (tmp_path / "checkpoints" / "1").is_dir()


def test_forced_save_of_a_step_already_written_is_skipped(tmp_path):
  # At a preemption sync point orbax writes the step itself inside an ordinary save, and
  # the loop's forced save of the same step follows: it must not raise.
  _saved(tmp_path, steps=(1, 2))
  manager = checkpointing.CheckpointManager(tmp_path, TRAIN)
  assert manager.save(2, _state(2), {"step": 2}, force=True) is False
  assert manager.save(3, _state(3), {"step": 3}, force=True) is True
  manager.wait()
  assert manager.all_steps() == [1, 2, 3]
  manager.close()
