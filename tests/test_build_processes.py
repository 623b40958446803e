"""A killed build leaves no worker alive, and the next build removes its incomplete folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from stress_jax.data import build
from tests.conftest import REPO, subprocess_env
from tfds_builders.stress_faces import StressFaces

# A parent that starts one spawned worker through the initializer the video build
# uses for its pool, prints the worker's pid, then waits to be killed.
PARENT = """
import concurrent.futures, multiprocessing, os, sys, time
from stress_jax.workers import die_with_parent

def pid():
  return os.getpid()

if __name__ == "__main__":
  executor = concurrent.futures.ProcessPoolExecutor(
    1, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
  )
  print(executor.submit(pid).result(), flush=True)
  time.sleep(120)
"""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  # A zombie still answers kill(0); it is dead for our purpose.
  try:
    with open(f"/proc/{pid}/stat") as stat:
      return stat.read().split(")")[-1].split()[0] != "Z"
  except FileNotFoundError:
    return False


def test_workers_die_with_a_killed_parent(tmp_path):
  script = tmp_path / "parent.py"
  script.write_text(PARENT)
  parent = subprocess.Popen(
    [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=subprocess_env(), cwd=REPO
  )
  try:
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 20
    while _alive(worker) and time.monotonic() < deadline:
      time.sleep(0.2)
    assert not _alive(worker), "the worker outlived its killed parent"
  finally:
    parent.kill()


def test_next_build_removes_stale_incomplete_folders(tmp_path, capsys):
  builder = StressFaces(config="synthetic_tiny", data_dir=str(tmp_path))
  stale = tmp_path / "stress_faces" / "synthetic_tiny" / "incomplete.XYZ123_1.0.0"
  stale.mkdir(parents=True)
  (stale / "stress_faces-s00.array_record-00000-of-00001").write_bytes(b"partial")
  other = tmp_path / "stress_faces" / "synthetic" / "incomplete.ABC_1.0.0"
  other.mkdir(parents=True)
  assert build.remove_stale_incomplete(builder) == [str(stale)]
  assert not stale.exists() and other.exists()  # another dataset's folder is left alone
  assert f"removed {stale}" in capsys.readouterr().err


BUILD_AFTER_READY = """
import sys
from stress_jax.data import build
print("ready", flush=True)
build.build_dataset("stress_faces/synthetic_tiny", data_dir=sys.argv[1])
"""


def test_a_second_build_of_one_dataset_waits_for_the_first(tmp_path):
  # The test holds the lock as a running build would, with its incomplete folder in
  # place: a second build must neither delete that folder nor start until it is free.
  builder = StressFaces(config="synthetic_tiny", data_dir=str(tmp_path))
  running = tmp_path / "stress_faces" / "synthetic_tiny" / "incomplete.RUN_1.0.0"
  running.mkdir(parents=True)
  with build.build_lock(builder.data_dir):
    second = subprocess.Popen(
      [sys.executable, "-c", BUILD_AFTER_READY, str(tmp_path)],
      stdout=subprocess.PIPE,
      text=True,
      env=subprocess_env(),
      cwd=REPO,
    )
    try:
      assert second.stdout.readline().strip() == "ready"
      time.sleep(3)
      assert second.poll() is None and running.exists()
    except BaseException:
      second.kill()
      raise
  assert second.wait(timeout=300) == 0
  assert StressFaces(config="synthetic_tiny", data_dir=str(tmp_path)).is_prepared()
