"""The training loop: resume, step, log, evaluate, checkpoint, stop on preemption.

The compiled pieces live in trainer.py (mesh, jitted steps) and steps.py (the pure
step functions); this module only drives them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import signal
import sys
import time

import jax
import numpy as np
from absl import logging

from stress_jax import (
  checkpointing,
  cli,
  config_checks,
  input_pipeline,
  jsonio,
  metric_writer,
  metrics,
  provenance,
  storage,
  workdir_lock,
)
from stress_jax.metric_writer import MetricWriter
from stress_jax.trainer import Trainer

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a terminated job
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell expects after Ctrl-C


class DivergedError(cli.UserError, FloatingPointError):
  """The loss became NaN or infinite; nothing after the last finite step is saved."""


class DiskFullError(cli.UserError, OSError):
  """A write failed for want of space; the message names the file and the last good checkpoint."""


class _Preemption:
  """A preemption notice stops the loop after a saved step, at the same step on every host.

  One process: SIGTERM sets a flag, and so does the first SIGINT (Ctrl-C), which is
  remembered so the run can exit 130 as a shell expects; a second Ctrl-C stops at
  once (KeyboardInterrupt). Several processes: jax's preemption sync manager
  (started by jax.distributed.initialize) receives the notice (SIGTERM, or the
  platform's own notifier) on any host and tells every host the first step all of
  them can still reach; between notices each call answers locally, so no host round
  trip is added to a step.
  """

  def __init__(self):
    self.requested = False
    self.interrupted = False
    self._previous = {}
    self._synced = jax.process_count() > 1

  def __enter__(self):
    if not self._synced:
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.requested = True
    if signum == signal.SIGINT:
      self.interrupted = True
      signal.signal(signal.SIGINT, signal.default_int_handler)

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)

  def agreed(self, step: int) -> bool:
    """Call once per step on every process; every process must stop at the same step."""
    if not self._synced:
      return self.requested
    from jax.experimental import multihost_utils

    return multihost_utils.reached_preemption_sync_point(step)


def _check_finite(pending: list[tuple[int, dict]]) -> None:
  if not pending:
    return
  losses = np.asarray(jax.device_get([m["loss"] for _, m in pending]))
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    step = pending[int(bad[0])][0]
    raise DivergedError(
      f"non-finite loss ({losses[bad[0]]}) at step {step}; stopping before it is checkpointed"
    )


def write_config(config, workdir) -> None:
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))


def train_and_evaluate(config, workdir, allow_config_change=()) -> dict:
  """Trains (resuming from `workdir` if it holds checkpoints) and evaluates on test subjects.

  The config's ranges are checked first (config_checks.py), then the workdir is locked
  against a second run (workdir_lock.py). A workdir that holds a run of another config
  or dataset, or a log a crash cannot have left, is refused before anything is written
  (stress_jax/provenance.py), unless `allow_config_change` names the changed fields.
  """
  started = time.time()
  config_checks.check(config)
  with workdir_lock.held_for_run(workdir):
    try:
      return _train_and_evaluate(config, storage.as_path(workdir), allow_config_change, started)
    except Exception as error:
      full = _no_space(error)
      if full is None:
        raise
      raise DiskFullError(_disk_full_message(workdir, full)) from error


def _no_space(error: BaseException) -> BaseException | None:
  """The error of a full disk in `error`'s chain (orbax and tensorstore wrap it), if any."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return error
    if "No space left on device" in str(error):
      return error
    error = error.__cause__ or error.__context__
  return None


def _disk_full_message(workdir, error: BaseException) -> str:
  path = getattr(error, "filename", None)
  if not path:
    found = re.search(r"(?:gs://|/)[^\s'\",:]+", str(error))
    path = found.group(0) if found else workdir
  directory = storage.absolute(workdir) / "checkpoints"
  steps = []
  if directory.is_dir():
    steps = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
  intact = checkpointing.intact_steps(directory, steps)
  last = f"step {intact[-1]} in {directory}" if intact else "none (the run starts over)"
  return (
    f"no space left on device writing {path}; last good checkpoint: {last}. Free some space "
    "and run the same command again to resume"
  )


def _train_and_evaluate(config, workdir, allow_config_change, started) -> dict:
  trainer = Trainer(config, workdir)
  fingerprint = provenance.fingerprint(config, trainer.handle)
  provenance.check(workdir, fingerprint, provenance.parse_allow(allow_config_change))
  if jax.process_index() == 0:
    metric_writer.check_log(workdir)  # refuses a damaged log before anything changes
  manager = checkpointing.CheckpointManager(workdir, config.train)
  try:
    return _run(config, workdir, trainer, manager, fingerprint, started)
  except Exception:
    # A save in flight ends (written or failed) before the error is reported: the last
    # good checkpoint the error names is then on disk, and no temp folder is left.
    with contextlib.suppress(Exception):
      manager.wait()
    raise


def _run(config, workdir, trainer, manager, fingerprint, started) -> dict:
  state = trainer.initial_state()
  restored = manager.restore_latest(state)
  train_iter = trainer.train_iterator()
  if restored is not None:
    state, data_state = restored
    train_iter.set_state(data_state)
    logging.info("resumed from step %d", int(state.step))
  start_step = int(state.step)
  # Every check has passed: only now does the run change what the workdir records.
  write_config(config, workdir)
  if jax.process_index() == 0:
    provenance.record(workdir, fingerprint)
  total_steps = trainer.total_steps
  # A finished run asked again (say, to report its other checkpoint) trains no step.
  evaluation_only = start_step >= total_steps
  if evaluation_only and jax.process_index() == 0:
    # Its test row is written anew below.
    metric_writer.drop_rows(workdir, prefix="test/")
  # Rows logged after the restored checkpoint belong to steps that run again.
  writer = MetricWriter(workdir, resume_step=start_step)
  # Signals are caught from before the run says it is training: a SIGTERM sent on that
  # line (as a scheduler or a test may) still stops at a saved step.
  signals = contextlib.ExitStack()
  preemption = signals.enter_context(_Preemption())
  if jax.process_index() == 0:
    print(
      f"training {input_pipeline.dataset_name(config.data)}: {len(trainer.split.train)} train / "
      f"{len(trainer.split.val)} val / {len(trainer.split.test)} test subjects, "
      f"{trainer.steps_per_epoch} steps per epoch, {total_steps} steps, "
      f"{jax.device_count()} device(s) x {jax.process_count()} process(es)"
      + (
        "; already trained, evaluating only"
        if evaluation_only
        else (f"; resuming at step {start_step}" if start_step else "")
      ),
      flush=True,
    )

  eval_every = int(config.train.eval_every_steps)
  eval_every = trainer.steps_per_epoch if eval_every <= 0 else eval_every
  log_every = max(1, int(config.train.log_every_steps))
  progress = None if evaluation_only else _progress(config, start_step, total_steps)
  pending: list[tuple[int, dict]] = []
  last_log_time, last_log_step = time.time(), start_step
  preempted = False

  with signals:
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
      if preemption.agreed(step) and not is_last:
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
    step = int(state.step)
    if preemption.interrupted:
      # stderr: the one line a Ctrl-C'd command leaves; the exit status says 130.
      print(
        f"interrupted at step {step}: checkpoint saved in {workdir}; "
        "run the same command again to resume",
        file=sys.stderr,
        flush=True,
      )
      return {"preempted": True, "step": step, "exit_code": INTERRUPTED_EXIT_CODE}
    if jax.process_index() == 0:
      print(
        f"preempted at step {step}: checkpoint saved in {workdir}; "
        "run the same command again to resume",
        flush=True,
      )
    return {"preempted": True, "step": step, "exit_code": PREEMPTED_EXIT_CODE}

  # An evaluation-only rerun keeps the training's wall time (final_evaluation).
  summary = final_evaluation(
    trainer, manager, state, workdir, writer, None if evaluation_only else started
  )
  writer.close()
  manager.close()
  return summary


def _scalars(result: dict) -> dict:
  return {k: v for k, v in result.items() if isinstance(v, (int, float))}


def final_evaluation(trainer, manager, last_state, workdir, writer, started=None) -> dict:
  """Test-subject metrics of the reported checkpoint (config.train.report_checkpoint):
  the one selected on validation subjects, or the last."""
  rule = trainer.config.train.get("report_checkpoint", "best")
  best_step = manager.best_step() if rule == "best" else None
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
    "report_checkpoint": rule,
    "test_subjects": list(trainer.split.test),
    "val_subjects": list(trainer.split.val),
    "label_names": list(trainer.handle.label_names),
    "test": test,
    "epochs": int(trainer.num_epochs),
    "steps": int(trainer.total_steps),
  }
  if started is not None:
    # This invocation only (a resumed run counts from its restart), dataset build included.
    summary["wall_seconds"] = round(time.time() - started, 1)
  else:
    previous = storage.as_path(workdir) / "summary.json"
    if previous.exists():
      with contextlib.suppress(ValueError, OSError):
        kept = json.loads(previous.read_text()).get("wall_seconds")
        if kept is not None:
          summary["wall_seconds"] = kept
  if faithfulness:
    summary["attention_faithfulness"] = faithfulness
  if jax.process_index() == 0:
    jsonio.write(storage.as_path(workdir) / "summary.json", summary)
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
