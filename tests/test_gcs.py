"""gs:// workdirs and datasets end to end, against a GCS emulator on 127.0.0.1.

Training reads the TFDS shards from the bucket, is preempted, resumes from the
bucket's checkpoint and must end exactly where a local run ends; evaluate, export,
predict and crossval then read and write the same bucket.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from stress_jax import checkpointing, storage
from tests.conftest import REPO, sigterm_at_start, subprocess_env, train_command
from tests.gcs_emulator import BUCKET, Emulator
from tests.test_train import assert_trees_close
from tests.trained_model import TINY_RUN_ARGS as ARGS
from tests.trained_model import TINY_RUN_STEPS as STEPS
from tests.trained_model import tiny_run  # noqa: F401  (fixture)

ROOT = f"gs://{BUCKET}"


@pytest.fixture(scope="module")
def emulator():
  saved = dict(os.environ)
  server = Emulator()
  server.apply()
  try:
    yield server
  finally:
    server.stop()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def bucket_data(emulator, fake_data_dir):
  # ArrayRecordWriter cannot write to a bucket: datasets are built locally, then copied up.
  assert storage.upload_tree(fake_data_dir, f"{ROOT}/data") > 0
  return f"{ROOT}/data"


@pytest.fixture(scope="module")
def bucket_run(emulator, bucket_data, tiny_run):  # noqa: F811
  """A gs:// run preempted right after it starts, then resumed; its local twin is tiny_run."""
  local = tiny_run[0]

  workdir = f"{ROOT}/runs/fold0"
  env = emulator.env(subprocess_env(1))
  returncode, out, err = sigterm_at_start(
    train_command(workdir, bucket_data, *ARGS), env, timeout=600
  )
  assert returncode == 143, err[-4000:]
  assert "preempted at step" in out
  stopped = int(out.split("preempted at step ")[1].split(":")[0])

  resumed = subprocess.run(
    train_command(workdir, bucket_data, *ARGS),
    env=env,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert resumed.returncode == 0, resumed.stderr[-4000:]
  return {"workdir": workdir, "local": local, "stopped": stopped, "stdout": resumed.stdout}


def test_bucket_run_resumes_to_the_local_result(bucket_run):
  assert 1 <= bucket_run["stopped"] < STEPS
  assert f"resuming at step {bucket_run['stopped']}" in bucket_run["stdout"]
  _, local = checkpointing.load_state_arrays(bucket_run["local"])
  step, remote = checkpointing.load_state_arrays(bucket_run["workdir"])
  assert step == STEPS
  assert_trees_close(local["params"], remote["params"], rtol=0, atol=1e-6)
  assert_trees_close(local["opt_state"], remote["opt_state"], rtol=0, atol=1e-6)


def test_bucket_workdir_holds_config_metrics_events_and_summary(bucket_run):
  workdir = storage.as_path(bucket_run["workdir"])
  assert json.loads((workdir / "config.json").read_text())["model"]["stem_width"] == 8
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  # Both runs' rows, in order: the preempted one's, then the resumed one's.
  train_steps = [r["step"] for r in rows if "train/loss" in r]
  assert train_steps == list(range(1, STEPS + 1))
  assert any("test/accuracy" in r for r in rows)
  events = [p.name for p in (workdir / "tensorboard").iterdir()]
  assert len([e for e in events if e.startswith("events.out.tfevents.")]) == 2, events
  summary = json.loads((workdir / "summary.json").read_text())
  local = json.loads((bucket_run["local"] / "summary.json").read_text())
  assert summary["test"]["confusion_matrix"] == local["test"]["confusion_matrix"]


def test_evaluate_export_predict_and_crossval_on_the_bucket(bucket_run, tmp_path, monkeypatch):
  from stress_jax import crossval, evaluate, export, predict
  from tests.trained_model import feat_video

  monkeypatch.setenv("STRESS_JAX_CACHE_DIR", str(tmp_path / "cache"))
  workdir = bucket_run["workdir"]
  result = evaluate.evaluate(workdir, "test", "latest", num_pictures=1)
  written = storage.as_path(result["output_dir"])
  assert str(written).startswith(ROOT)
  assert json.loads((written / "metrics.json").read_text())["step"] == STEPS
  assert (written / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

  model = f"{ROOT}/exports/fold0"
  exported = export.export_model(workdir, model, platforms=("cpu",), verify=False)
  assert exported["workdir"] == workdir
  summary = predict.run(model, str(feat_video()), f"{ROOT}/predictions", num_pictures=1)
  lines = storage.as_path(f"{ROOT}/predictions/single_face.jsonl").read_text().splitlines()
  assert len(lines) == summary["windows"] > 0

  # A crossval root whose fold 0 is the bucket run: the tables land in the bucket.
  root = storage.as_path(f"{ROOT}/crossval")
  fold = crossval.fold_directory(root, "full", 0, False)
  (fold / "summary.json").write_text((storage.as_path(workdir) / "summary.json").read_text())
  table = crossval.collect(root, 3, False)
  crossval.write_tables(root, table)
  assert "1/3 folds" in (root / "crossval.md").read_text()
  # A gs:// path taken for a local one lands in a folder named `gs:` under the working
  # directory (it once did, and was committed): nothing may write there.
  assert not (REPO / "gs:").exists() and not pathlib.Path("gs:").exists()


def test_remote_text_file_appends_across_writers(emulator):
  path = f"{ROOT}/text/log.jsonl"
  first = storage.RemoteTextFile(path, interval_s=3600)
  first.write("a\n")
  first.flush()  # within the interval: nothing uploaded yet
  assert not storage.as_path(path).exists()
  first.close()
  second = storage.RemoteTextFile(path)
  second.write("b\n")
  second.close()
  assert storage.as_path(path).read_text() == "a\nb\n"


def test_local_copy_fetches_changed_objects_again(emulator, tmp_path, monkeypatch):
  monkeypatch.setenv("STRESS_JAX_CACHE_DIR", str(tmp_path))
  folder = storage.as_path(f"{ROOT}/copy")
  (folder / "sub").mkdir(parents=True, exist_ok=True)
  (folder / "sub" / "w.bin").write_bytes(b"1234")
  local = storage.local_copy(folder)
  assert (local / "sub" / "w.bin").read_bytes() == b"1234"
  (folder / "sub" / "w.bin").write_bytes(b"5678")  # same size, new object
  assert (storage.local_copy(folder) / "sub" / "w.bin").read_bytes() == b"5678"
  with pytest.raises(FileNotFoundError, match="does not exist or is empty"):
    storage.local_copy(f"{ROOT}/missing")


def test_missing_bucket_dataset_is_built_locally_then_uploaded(emulator, tmp_path):
  """array_record cannot write to a bucket: ensure_built builds on local disk and copies up."""
  from ml_collections import ConfigDict

  from stress_jax import input_pipeline
  from stress_jax.data import build

  data_dir = f"{ROOT}/built"
  config = ConfigDict(
    dict(
      name="stress_faces/synthetic_tiny",
      data_dir=data_dir,
      manual_dir="",
      build_if_missing=True,
      task="",
      num_frames=0,
    )
  )
  with pytest.raises(input_pipeline.DatasetError, match="not built"):
    input_pipeline.open_dataset(config)  # reading data never makes it
  build.ensure_built(config)
  handle = input_pipeline.open_dataset(config)
  assert str(handle.builder.data_dir).startswith(data_dir)
  shards = list((storage.as_path(data_dir) / "stress_faces" / "synthetic_tiny").iterdir())
  assert shards, "nothing was uploaded"
  source = handle.source(handle.subjects[:1])
  assert len(source) > 0 and int(source[0]["label"]) in range(len(handle.label_names))


def test_bucket_workdir_lock_refuses_a_second_run_and_takes_over_a_stale_one(
  emulator, monkeypatch, capsys
):
  from stress_jax import workdir_lock

  workdir = f"{ROOT}/runs/locked"
  lock = storage.as_path(workdir) / workdir_lock.LOCK_NAME
  with workdir_lock.held(workdir):
    with pytest.raises(workdir_lock.WorkdirBusy) as refused:
      workdir_lock.acquire(workdir)
    assert f"pid {os.getpid()}" in str(refused.value) and "started" in str(refused.value)
  assert not lock.exists()
  # What a run killed on another host leaves: a lock nobody renews.
  lock.write_text(json.dumps({"host": "gone-host", "pid": 1, "started": "2026-01-01T00:00:00"}))
  with pytest.raises(workdir_lock.WorkdirBusy):
    workdir_lock.acquire(workdir)  # renewed a moment ago, as far as anyone can tell
  monkeypatch.setattr(workdir_lock, "STALE_AFTER_S", -60.0)
  capsys.readouterr()
  with workdir_lock.held(workdir):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "taking over" in err[0] and "gone-host" in err[0], err
    assert json.loads(lock.read_text())["pid"] == os.getpid()
  assert not lock.exists()
