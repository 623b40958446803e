"""Faults a user runs into: two runs on one workdir, a crash mid-write, a config that
cannot work, Ctrl-C, a full disk, a broken model folder. Each gives one line, or
recovers with nothing lost.

Most cases run in-process on the tiny config; SIGINT and the misspelt config field
need the real command (a subprocess each).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from stress_jax import cli, metric_writer, provenance, train
from tests import tiny_config
from tests.conftest import REPO, TINY_CONFIG, one_line_error, subprocess_env, train_command


def strict_json(text: str):
  """json.loads that refuses NaN and infinities, as every other JSON reader does."""

  def refuse(constant):
    raise ValueError(f"{constant} is not JSON")

  return json.loads(text, parse_constant=refuse)


def tiny(data_dir, **overrides):
  config = tiny_config.get_config()
  config.data.data_dir = str(data_dir)
  config.train.num_steps = 4
  config.train.eval_every_steps = 4
  config.train.checkpoint_every_steps = 2
  for dotted, value in overrides.items():
    section, name = dotted.split("__")
    config[section][name] = value
  return config


@pytest.fixture(scope="module")
def finished_run(fake_data_dir, tmp_path_factory):
  """A 4-step run trained in this process (checkpoints at steps 2 and 4)."""
  workdir = tmp_path_factory.mktemp("faults") / "run"
  summary = train.train_and_evaluate(tiny(fake_data_dir), workdir)
  return workdir, summary


def _copy(finished_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(finished_run[0], workdir)
  return workdir


# ---------------------------------------------------------------- one run per workdir


def test_second_run_is_refused_naming_the_holder(fake_data_dir, tmp_path):
  from stress_jax import workdir_lock

  workdir = tmp_path / "run"
  with workdir_lock.held(workdir):
    with pytest.raises(cli.UserError) as refused:
      train.train_and_evaluate(tiny(fake_data_dir), workdir)
    message = str(refused.value)
    assert "\n" not in message
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message
    assert "started" in message
    assert not (workdir / "config.json").exists() and not (workdir / "metrics.jsonl").exists()
    # The same from another process, as a user's second terminal sees it.
    line = one_line_error(
      train_command(workdir, fake_data_dir)[1:],
    )
    assert line.startswith(f"train.py: error: {workdir} is in use by another run (host ")
    assert f"pid {os.getpid()}" in line
  # Released on exit: the workdir the lock made is gone again with it.
  assert not workdir.exists()


def test_lock_of_a_killed_run_is_taken_over_with_one_line(tmp_path, capsys):
  from stress_jax import workdir_lock

  workdir = tmp_path / "run"
  killed = subprocess.run(
    [
      sys.executable,
      "-c",
      "import os, signal, sys; from stress_jax import workdir_lock; "
      "workdir_lock.acquire(sys.argv[1]); print(os.getpid(), flush=True); "
      "os.kill(os.getpid(), signal.SIGKILL)",
      str(workdir),
    ],
    env=subprocess_env(),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  assert (workdir / workdir_lock.LOCK_NAME).exists()  # left behind
  capsys.readouterr()
  with workdir_lock.held(workdir):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "taking over" in err[0] and f"pid {killed.stdout.strip()}" in err[0]
    holder = json.loads((workdir / workdir_lock.LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid()
  assert not (workdir / workdir_lock.LOCK_NAME).exists()


# ---------------------------------------------------------------- crash-consistent logs


def test_partial_trailing_line_is_dropped_on_resume(tmp_path, capsys):
  writer = metric_writer.MetricWriter(tmp_path, enabled=True)
  for step in range(1, 8):
    writer.write(step, {"loss": 1.0}, prefix="train/")
  writer.close()
  with open(tmp_path / "metrics.jsonl", "a") as log:
    log.write('{"step": 8, "train/lo')  # what a crash mid-write leaves
  capsys.readouterr()
  resumed = metric_writer.MetricWriter(tmp_path, enabled=True, resume_step=5)
  resumed.write(6, {"loss": 2.0}, prefix="train/")
  resumed.close()
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "metrics.jsonl" in err[0] and "dropped" in err[0], err
  rows = [strict_json(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_broken_log_is_refused_before_config_or_provenance_change(finished_run, tmp_path):
  workdir = _copy(finished_run, tmp_path)
  log = workdir / "metrics.jsonl"
  lines = log.read_text().splitlines()
  lines.insert(2, "{not json")
  log.write_text("\n".join(lines) + "\n")
  before = {name: (workdir / name).read_bytes() for name in ("config.json", "provenance.json")}
  config = tiny(_data_dir(finished_run), train__num_steps=6)
  with pytest.raises(cli.UserError) as refused:
    train.train_and_evaluate(config, workdir, allow_config_change=["train.num_steps"])
  assert f"{log}" in str(refused.value) and "line 3" in str(refused.value)
  after = {name: (workdir / name).read_bytes() for name in before}
  assert after == before


def _data_dir(finished_run):
  return json.loads((finished_run[0] / "config.json").read_text())["data"]["data_dir"]


def test_resume_after_a_crash_mid_write_trains_on(finished_run, tmp_path, capsys):
  workdir = _copy(finished_run, tmp_path)
  with open(workdir / "metrics.jsonl", "a") as log:
    log.write('{"step": 5, "train/loss": 0.6')
  capsys.readouterr()
  config = tiny(_data_dir(finished_run), train__num_steps=6)
  summary = train.train_and_evaluate(config, workdir, allow_config_change=["train.num_steps"])
  assert summary["final_step"] == 6
  assert "dropped" in capsys.readouterr().err
  rows = [strict_json(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4, 5, 6]
  recorded = strict_json((workdir / "provenance.json").read_text())
  assert recorded["config"]["train.num_steps"] == 6


# ---------------------------------------------------------------- configs checked first


@pytest.mark.parametrize(
  ("field", "value", "allowed"),
  [
    ("optim__learning_rate", -0.1, "> 0"),
    ("input__batch_size", 0, ">= 1"),
    ("input__eval_batch_size", -2, ">= 1"),
    ("train__num_epochs", 0, ">= 1"),
    ("train__checkpoint_every_steps", 0, ">= 1"),
    ("data__num_frames", 0, ">= 1"),
    ("model__dropout_rate", 1.5, "[0, 1)"),
    ("train__stream_loss_weight", -1.0, ">= 0"),
    ("optim__warmup_steps", -3, ">= 0"),
    ("optim__learning_rate", float("nan"), "> 0"),
  ],
)
def test_config_that_cannot_work_is_one_line_naming_field_and_range(
  fake_data_dir, tmp_path, field, value, allowed
):
  config = tiny(fake_data_dir, **{field: value})
  if field == "train__num_epochs":
    config.train.num_steps = -1
  with pytest.raises(cli.ConfigError) as refused:
    train.train_and_evaluate(config, tmp_path / "run")
  message = str(refused.value)
  assert message.startswith(field.replace("__", ".")) and allowed in message, message
  assert "\n" not in message
  assert not (tmp_path / "run").exists()


def test_batch_larger_than_the_training_set_is_one_config_error(fake_data_dir, tmp_path):
  with pytest.raises(cli.ConfigError) as refused:
    train.train_and_evaluate(tiny(fake_data_dir, input__batch_size=4096), tmp_path / "run")
  assert "input.batch_size=4096" in str(refused.value) and "training clips" in str(refused.value)
  assert not (tmp_path / "run").exists()


def test_misspelt_config_field_is_one_line_with_the_suggestion(tmp_path):
  line = one_line_error(
    [REPO / "train.py", f"--config={TINY_CONFIG}", "--config.train.nmu_steps=3"]
  )
  assert line.startswith("train.py: error: ") and "train.nmu_steps" in line
  assert "did you mean train.num_steps" in line.lower()


# ---------------------------------------------------------------- one line per failure


def test_full_disk_names_the_path_and_the_last_good_checkpoint(
  fake_data_dir, tmp_path, monkeypatch
):
  workdir = tmp_path / "run"
  write = metric_writer.MetricWriter.write

  def fill_up(self, step, scalars, prefix=""):
    if step >= 3:
      raise OSError(errno.ENOSPC, "No space left on device", str(workdir / "metrics.jsonl"))
    return write(self, step, scalars, prefix)

  monkeypatch.setattr(metric_writer.MetricWriter, "write", fill_up)
  with pytest.raises(cli.UserError) as full:
    train.train_and_evaluate(tiny(fake_data_dir), workdir)
  message = str(full.value)
  assert "no space left" in message.lower() and str(workdir / "metrics.jsonl") in message
  assert "last good checkpoint: step 2" in message, message


def test_unreadable_provenance_is_named(finished_run, tmp_path):
  workdir = _copy(finished_run, tmp_path)
  (workdir / "provenance.json").write_text('{"config": {')
  with pytest.raises(cli.UserError) as refused:
    train.train_and_evaluate(tiny(_data_dir(finished_run)), workdir)
  assert str(workdir / "provenance.json") in str(refused.value)
  with pytest.raises(cli.UserError):
    provenance.read(workdir)


def _export_folder(tmp_path, model_bytes=b"\x00truncated"):
  folder = tmp_path / "export"
  folder.mkdir()
  (folder / "config.json").write_text(json.dumps({"input_mode": "pixels", "num_frames": 4}))
  (folder / "labels.txt").write_text("no_stress\nstress\n")
  (folder / "model.stablehlo").write_bytes(model_bytes)
  return folder


def test_predict_names_the_broken_file_of_a_model_folder(tmp_path):
  from stress_jax import export

  folder = _export_folder(tmp_path)
  with pytest.raises(cli.UserError) as broken:
    export.load_exported(folder)
  assert str(folder / "model.stablehlo") in str(broken.value)
  (folder / "model.stablehlo").write_bytes(b"")
  (folder / "labels.txt").unlink()
  with pytest.raises(cli.UserError) as missing:
    export.load_exported(folder)
  assert str(folder / "labels.txt") in str(missing.value)
  (folder / "labels.txt").write_text("a\n")
  (folder / "config.json").write_text("{")
  with pytest.raises(cli.UserError) as unreadable:
    export.load_exported(folder)
  assert str(folder / "config.json") in str(unreadable.value)


def test_predict_on_a_truncated_model_is_one_line(tmp_path):
  folder = _export_folder(tmp_path)
  video = tmp_path / "frames"
  video.mkdir()
  line = one_line_error(["-m", "stress_jax.predict", f"--model={folder}", f"--video={video}"])
  assert line.startswith("predict: error: ") and str(folder / "model.stablehlo") in line


def _wait_for_step(metrics_path, step, proc, timeout=180):
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, "training ended before it could be interrupted"
    if metrics_path.exists():
      for line in metrics_path.read_text().splitlines():
        row = json.loads(line)
        if row["step"] >= step and "train/loss" in row:
          return
    time.sleep(0.05)
  raise AssertionError(f"step {step} never logged")


def test_sigint_saves_like_sigterm_and_exits_130_with_one_line(fake_data_dir, tmp_path):
  workdir = tmp_path / "run"
  args = ("--config.train.num_steps=200", "--config.train.checkpoint_every_steps=1000")
  proc = subprocess.Popen(
    train_command(workdir, fake_data_dir, *args),
    env=subprocess_env(1),
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  _wait_for_step(workdir / "metrics.jsonl", 3, proc)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
  assert proc.returncode == 130, err[-3000:]
  assert len(lines) == 1 and "interrupted at step" in lines[0], err[-3000:]
  steps = [p.name for p in (workdir / "checkpoints").iterdir()]
  assert steps and all(name.isdigit() for name in steps), steps  # no orbax temp folder
  step = int(lines[0].split("interrupted at step ")[1].split(":")[0])
  assert str(step) in steps


# ---------------------------------------------------------------- valid JSON everywhere


def test_every_json_the_run_writes_is_strict(finished_run, tmp_path):
  workdir, summary = finished_run
  text = (workdir / "summary.json").read_text()
  parsed = strict_json(text)
  precision = parsed["test"]["precision"]
  # The premise: the 4-step model never predicts some class, whose precision is undefined.
  assert None in precision.values() or any(
    isinstance(v, float) and math.isnan(v) for v in summary["test"]["precision"].values()
  )
  for name in ("config.json", "provenance.json"):
    strict_json((workdir / name).read_text())
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    strict_json(line)
  writer = metric_writer.MetricWriter(tmp_path, enabled=True)
  writer.write(1, {"loss": float("nan"), "grad": float("inf")})
  writer.close()
  assert strict_json((tmp_path / "metrics.jsonl").read_text()) == {
    "step": 1,
    "loss": None,
    "grad": None,
  }


def test_evaluate_names_an_unreadable_summary_of_the_workdir(tmp_path):
  from stress_jax import evaluate

  (tmp_path / "summary.json").write_text('{"label_names": ["a", ')
  with pytest.raises(cli.UserError) as broken:
    evaluate.label_names(tmp_path, tiny_config.get_config())
  assert str(tmp_path / "summary.json") in str(broken.value)


@pytest.mark.parametrize(
  ("fault", "code", "expected"),
  [
    (OSError(errno.ENOSPC, "No space left on device", "/full/out.json"), 2, "no space left"),
    (KeyboardInterrupt(), 130, "interrupted"),
  ],
)
def test_every_entry_point_turns_a_full_disk_and_ctrl_c_into_one_line(
  capsys, fault, code, expected
):
  def main(argv):
    raise fault

  with pytest.raises(SystemExit) as exited:
    cli.guarded(main, "tool")(["tool"])
  assert exited.value.code == code
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("tool: ") and expected in err[0], err
