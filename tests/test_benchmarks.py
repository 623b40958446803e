"""The benchmark report's arithmetic: goals, references and which sections run where.

Section results are made up here (no timing): what is checked is that the figures the
table and results.json report follow from them, including the cases that must not
produce a ratio at all.
"""

from __future__ import annotations

import pytest

from benchmarks import run


def train_section(step_s, batch=4, frames=48, gflop=500.0, peak=100.0, backend="cpu", **extra):
  achieved = gflop / step_s
  return {
    "config": "paper",
    "per_device_batch_clips": batch,
    "frames_per_clip": frames,
    "backend": backend,
    "step_s": step_s,
    "step_s_runs": [step_s] * 3,
    "clips_per_s": batch / step_s,
    "frames_per_s": batch * frames / step_s,
    "step_gflop": gflop,
    "conv_chunk_images": 0,
    "achieved_gflops": achieved,
    "matmul_peak_gflops": peak,
    "mfu": achieved / peak,
    "infer_batch_clips": batch,
    "infer_clips_per_s": 2 * batch / step_s,
    "peak_rss_mb": 2048.0,
    "compiles_during_timed_steps": 0,
    "jit_cache_entries": 1,
    **extra,
  }


def torch_section(step_s, batch=4, device="cpu"):
  return {
    "torch_version": "2.13.0+cpu",
    "threads": 2,
    "device": device,
    "params": 1000,
    "per_device_batch_clips": batch,
    "train_layout": "channels_last",
    "infer_layout": "channels_first",
    "clips_per_s": batch / step_s,
    "step_s": step_s,
    "infer_clips_per_s": batch / step_s,
  }


def sweep_row(batch, ratio, torch_device="cpu"):
  return {
    "batch_clips": batch,
    "ratio": ratio,
    "torch_device": torch_device,
    "jax_clips_per_s": ratio,
    "torch_clips_per_s": 1.0,
  }


def report(sections):
  results = {
    "sections": sections,
    "settings": {"train_warmup": 2},
    "quick": False,
    "machine": {
      "cpu_model": "test cpu",
      "cpu_cores": 2,
      "cpu_isa": ["avx2"],
      "memory_gb": 8,
      "python": "3.11",
      "jax": "0",
      "flax": "0",
      "torch": "0",
      "numpy": "0",
      "date": "today",
    },
  }
  results.update(run.summarise(sections))
  return results, run.render_table(results)


def test_mfu_divides_by_the_highest_peak_of_the_run_and_checks_the_goal():
  sections = {
    "peak": {"backend": "cpu", "float32_gflops": 125.0, "bfloat16_gflops": 120.0},
    # 500 GFLOP in 5 s = 100 GFLOP/s; the worker's own peak (110) is below the section's.
    "train_paper": train_section(5.0, peak=110.0),
  }
  results, table = report(sections)
  assert results["mfu"] == pytest.approx(0.8)
  assert results["mfu_peak_gflops"] == 125.0
  assert results["goals"]["mfu"]["pass"] is True
  assert "| training MFU, paper config | 80.0% (100.0 GFLOP/s) |" in table

  # jaxlib's own flags ran plain matmuls faster: that is the machine's peak.
  sections["peak_default"] = {"float32_gflops": 250.0}
  results, table = report(sections)
  assert results["mfu"] == pytest.approx(0.4)
  assert results["matmul_peak_gflops"] == 250.0
  assert "stress_jax's XLA flags 125.0, jaxlib's 250.0" in table
  del sections["peak_default"]

  sections["train_paper"] = train_section(10.0, peak=200.0)  # 50 GFLOP/s of 200
  results, table = report(sections)
  assert results["mfu"] == pytest.approx(0.25)
  assert results["goals"]["mfu"]["pass"] is False
  assert "25.0%" in table and "**miss**" in table


def test_latency_goal_is_lower_is_better():
  sections = {"infer": {"frames_per_s": 120.0, "latency_ms_p50": 8.0, "latency_ms_p95": 9.5}}
  assert run.summarise(sections)["goals"]["stream_p95_ms"]["pass"] is True
  assert run.summarise(sections)["goals"]["stream_fps"]["pass"] is True
  sections["infer"]["latency_ms_p95"] = 10.5
  assert run.summarise(sections)["goals"]["stream_p95_ms"]["pass"] is False


def test_torch_ratio_prefers_the_paired_batch_sweep_row():
  sections = {
    "peak": {"backend": "cpu", "float32_gflops": 100.0},
    "train_paper": train_section(4.0),  # 1.0 clips/s
    "torch_paper": torch_section(8.0),  # 0.5 clips/s: 2.0 across sections
    "batch_sweep": {"rows": [sweep_row(4, 1.25)]},
  }
  results, table = report(sections)
  assert results["torch_ratios"]["train_paper"] == pytest.approx(2.0)
  assert results["torch_train_ratio"] == pytest.approx(1.25)
  assert results["torch_infer_ratio"] == pytest.approx(4.0)
  assert "1.25 paired; 2.00 across sections" in table

  # A sweep at another batch is no pair for the headline figure.
  sections["batch_sweep"]["rows"][0]["batch_clips"] = 2
  results, _ = report(sections)
  assert results["torch_train_ratio"] == pytest.approx(2.0)


def test_no_torch_ratio_between_a_gpu_and_a_cpu():
  sections = {
    "peak": {"backend": "gpu", "float32_gflops": 5e5, "device_kind": "H200", "device_count": 1},
    "train_paper": train_section(0.1, backend="gpu"),
    "torch_paper": torch_section(8.0, device="cpu"),
    "batch_sweep": {"rows": [sweep_row(4, 80.0)]},
  }
  results, table = report(sections)
  assert results["torch_train_ratio"] is None
  assert results["torch_infer_ratio"] is None
  assert "torch_train_ratio" not in results["goals"]
  assert "not compared: torch ran on cpu, JAX on gpu" in table
  assert "JAX ran on 1 x H200 (gpu)" in table

  sections["torch_paper"] = torch_section(0.2, device="cuda")
  sections["batch_sweep"]["rows"] = [sweep_row(4, 2.1, torch_device="cuda")]
  results, table = report(sections)
  assert results["torch_train_ratio"] == pytest.approx(2.1)
  assert "not compared" not in table


def test_bfloat16_mfu_uses_the_bfloat16_peak():
  sections = {
    "peak": {"backend": "gpu", "float32_gflops": 400.0, "bfloat16_gflops": 800.0},
    "train_paper": train_section(2.0, backend="gpu", peak=400.0),
    "train_paper_bf16": train_section(1.0, backend="gpu", peak=700.0),
  }
  sections["peak"].update(device_kind="H200", device_count=1)
  results, table = report(sections)
  assert results["paper_bf16_mfu"] == pytest.approx(500.0 / 800.0)
  assert results["paper_bf16_speedup"] == pytest.approx(2.0)
  assert "62.5%; 2.00x the float32 step" in table
  assert results["mfu"] == pytest.approx(250.0 / 400.0)


def test_which_sections_a_full_run_includes():
  cpu = [name for name in run.SECTIONS if run.runs_here(name, "cpu")]
  gpu = [name for name in run.SECTIONS if run.runs_here(name, "gpu")]
  assert "train_paper_bf16" not in cpu and "xla_default" in cpu and "convs" in cpu
  assert "train_paper_bf16" in gpu and "xla_default" not in gpu and "convs" not in gpu
  assert {"peak", "train_paper", "torch_paper", "infer"} <= set(cpu) & set(gpu)
  assert set(run.SECTIONS) == set(run.WORKERS)
  quick = [name for name in run.SECTIONS if run.runs_here(name, "cpu", quick=True)]
  assert "batch_sweep" not in quick and "profile" not in quick
  assert {"peak", "train_demo", "train_paper", "torch_paper", "pipeline_paper", "infer"} <= set(
    quick
  )
