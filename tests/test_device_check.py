"""The GPU check (benchmarks/device): its CPU dry run, its report, and training without
the video packages the GPU machine cannot install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from benchmarks.device import report, restore
from tests.conftest import REPO, TINY_CONFIG, subprocess_env

# Makes dlib, PyAV and face-recognition-models unimportable, as on the GPU machine.
BLOCKER = textwrap.dedent(
  """
  import importlib.abc, sys

  class NoVideoPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
      if name.split(".")[0] in ("dlib", "av", "face_recognition_models"):
        raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
      return None

  sys.meta_path.insert(0, NoVideoPackages())
  """
)


def test_training_and_export_import_without_video_packages(fake_data_dir, tmp_path):
  code = BLOCKER + textwrap.dedent(
    f"""
    import importlib.util
    import stress_jax, stress_jax.train, stress_jax.export, stress_jax.preprocess
    import tfds_builders  # every builder, the video ones too
    from tests import fake_clips  # noqa: F401  (registers fake_clips)
    from stress_jax.configs import video  # noqa: F401
    from stress_jax.trainer import Trainer

    spec = importlib.util.spec_from_file_location("tiny", {str(TINY_CONFIG)!r})
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    config = tiny.get_config()
    config.data.data_dir = {str(fake_data_dir)!r}
    trainer = Trainer(config, {str(tmp_path / "run")!r})  # data, model, traced steps
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dlib", "av"))
    print("trainer", trainer.total_steps, loaded)
    """
  )
  result = subprocess.run(
    [sys.executable, "-c", code], env=subprocess_env(), cwd=REPO, capture_output=True, text=True
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "trainer" in result.stdout and result.stdout.strip().endswith(" []")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("gpu_check")
  env = {**subprocess_env(), "OUT": str(out), "STRESS_JAX_DEVICE_DRY": "1"}
  result = subprocess.run(
    ["bash", str(REPO / "benchmarks" / "device" / "check.sh")],
    env=env,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  return out, result


@pytest.mark.slow  # the CPU dry run of the whole check
def test_dry_run_runs_every_part(dry_run):
  out, result = dry_run
  check = json.loads((out / "check.json").read_text())
  statuses = {name: part["status"] for name, part in check["parts"].items()}
  errors = {n: p.get("error") for n, p in check["parts"].items() if p["status"] != "ok"}
  assert statuses == dict.fromkeys(report_parts(), "ok"), (errors, result.stdout[-2000:])
  assert result.returncode == 0
  assert sorted(os.listdir(out)) == ["check.json", "check.log", "checkpoint.tar.gz"]
  parts = check["parts"]
  assert parts["parity"]["agrees"] and parts["parity"]["logits_rel_l2_bf16"] > 0
  assert parts["train"]["loss_finite"] and parts["train"]["steps"] == 6
  assert parts["train"]["export_agrees"]
  assert parts["speed_jax"]["paper_b1"]["clips_per_s"] > 0
  assert parts["speed_torch"]["eager"]["clips_per_s"] > 0
  assert parts["streaming"]["frames"] == 6 and parts["streaming"]["latency_ms_p95"] > 0
  for feed in ("demo", "paper", "cached_features"):
    assert parts["pipeline"][feed]["clips_per_s"] > 0
  assert parts["pipeline"]["demo"]["workers"] == 1  # grain's worker processes, as on the GPU
  # The marked tests run and are counted (the dry run runs one file of them).
  assert parts["pytest"]["tests"] >= 5 and parts["pytest"]["failures"] == 0
  # Every goal is evaluated from the figures, none missing for want of a part.
  names = [g["name"] for g in check["goals"]]
  assert any(n.startswith("MFU") for n in names) and len(names) >= 12


def report_parts():
  from benchmarks.device import settings

  return settings.PARTS


@pytest.mark.slow  # the CPU dry run of the whole check
def test_checkpoint_from_the_check_restores_on_cpu(dry_run):
  out, _ = dry_run
  result = restore.restore(out / "checkpoint.tar.gz")
  assert result["agrees"], result
  assert result["step"] == 6 and result["backend_here"] == "cpu"


@pytest.mark.slow  # the CPU dry run of the whole check
def test_report_rewrites_only_the_gpu_section(dry_run, tmp_path):
  out, _ = dry_run
  doc = tmp_path / "BENCHMARKS.md"
  original = (REPO / "BENCHMARKS.md").read_text()
  doc.write_text(original)
  report.main([str(out / "check.json"), f"--benchmarks={doc}"])
  text = doc.read_text()
  head, rest = text.split(report.START)
  section, tail = rest.split(report.END)
  assert head == original.split(report.START)[0] and tail == original.split(report.END)[1]
  assert "DRY RUN" in section and "| MFU, paper config float32" in section
  assert "| paper_b1 (1 x 4 frames, float32) |" in section


def test_benchmarks_md_gpu_section_is_generated():
  text = (REPO / "BENCHMARKS.md").read_text()
  section = text.split(report.START)[1].split(report.END)[0].strip()
  assert section == report.render(None) or section.startswith("Machine:")


def _result(jax_clips, torch_eager, torch_compiled, feeds, demands, mfu=0.4):
  speed = {"matmul_peak_tflops": 790.0, "matmul_dtype": "bfloat16"}
  speed["paper_b64"] = dict(
    batch_clips=64, clips_per_s=jax_clips, mfu=mfu, achieved_tflops=790 * mfu, dtype="bfloat16"
  )
  for key, value in demands.items():
    speed[key] = {"clips_per_s": value}
  return {
    "parts": {
      "speed_jax": speed,
      "speed_torch": {
        "batch_clips": 64,
        "eager": {"clips_per_s": torch_eager},
        "compiled": {"clips_per_s": torch_compiled},
      },
      "pipeline": {k: {"clips_per_s": v} for k, v in feeds.items()},
      "streaming": {"frames_per_s": 800.0, "latency_ms_p95": 6.0},
    }
  }


def test_goals_compare_the_right_figures():
  result = _result(
    jax_clips=100.0,
    torch_eager=80.0,  # 1.25x: met
    torch_compiled=110.0,  # 0.91x: missed
    feeds={"demo": 500.0, "paper": 110.0, "cached_features": 5000.0},
    demands={"demo": 400.0, "frozen_trunk": 300.0, "cached_features": 1000.0},
    mfu=0.3,
  )
  goals = {g["name"].split(",")[0].split(" (")[0]: g for g in report.evaluate(result)}
  assert goals["MFU"]["met"] is False and goals["MFU"]["value"] == "30.0%"
  assert goals["JAX / torch eager"]["met"] and goals["JAX / torch eager"]["value"].startswith(
    "1.25x"
  )
  assert goals["JAX / torch.compile"]["met"] is False
  feed = {g["name"]: g for g in report.evaluate(result) if g["name"].startswith("input feed")}
  assert feed["input feed / step demand, demo"]["value"] == "1.25x"
  assert feed["input feed / step demand, demo"]["met"]
  # The paper feed is held against the best paper step (100 clips/s): 1.10x, missed, and
  # the way out named is the cached-feature path, which keeps up (5000 vs 1000).
  paper = feed["input feed / step demand, paper"]
  assert paper["value"] == "1.10x" and paper["met"] is False
  assert "cached features" in paper["reason"] and "5000" in paper["reason"]
  frozen = feed["input feed / step demand, frozen trunk"]
  assert frozen["value"] == "0.37x" and frozen["met"] is False
  assert feed["input feed / step demand, cached features"]["value"] == "5.00x"
  stream = next(g for g in report.evaluate(result) if g["name"].startswith("streaming"))
  assert stream["met"] is False  # 800 frames/s but p95 6 ms > 5 ms
