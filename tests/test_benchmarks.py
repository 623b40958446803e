"""The benchmark report's arithmetic: goals, references and which sections run where.

Section results are made up here (no timing): what is checked is that the figures the
table and results.json report follow from them, including the cases that must not
produce a ratio at all. Table cells are read back as numbers, so a test fails when a
figure is wrong, not when its wording changes.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import re

import pytest

from benchmarks import harness, registry, report
from benchmarks import rows as row_specs


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


def rendered(sections):
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
  results.update(report.summarise(sections))
  return results, report.render_table(results)


def cells(table: str) -> dict[str, list[str]]:
  """{figure: [value, reference, goal, pass/miss]} of a rendered markdown table."""
  out = {}
  for line in table.splitlines():
    if line.startswith("| ") and not line.startswith(("| figure |", "|---")):
      figure, *rest = [cell.strip() for cell in line.strip("|").split(" | ")]
      out[figure] = rest
  return out


def numbers(text: str) -> list[float]:
  return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))]


def test_mfu_divides_by_the_highest_peak_of_the_run_and_checks_the_goal():
  sections = {
    "peak": {"backend": "cpu", "float32_gflops": 125.0, "bfloat16_gflops": 120.0},
    # 500 GFLOP in 5 s = 100 GFLOP/s; the worker's own peak (110) is below the section's.
    "train_paper": train_section(5.0, peak=110.0),
  }
  results, table = rendered(sections)
  assert results["mfu"] == pytest.approx(0.8)
  assert results["mfu_peak_gflops"] == 125.0
  assert results["goals"]["mfu"]["pass"] is True
  value, reference, goal, verdict = cells(table)["training MFU, paper config"]
  assert numbers(value) == pytest.approx([80.0, 100.0])
  assert 125.0 in numbers(reference)
  assert (numbers(goal), verdict) == ([0.75], "pass")

  # jaxlib's own flags ran plain matmuls faster: that is the machine's peak.
  sections["peak_default"] = {"float32_gflops": 250.0}
  results, table = rendered(sections)
  assert results["mfu"] == pytest.approx(0.4)
  assert results["matmul_peak_gflops"] == 250.0
  assert numbers(cells(table)["float32 matmul peak (GFLOP/s)"][0]) == [250.0]
  assert numbers(cells(table)["training MFU, paper config"][0]) == pytest.approx([40.0, 100.0])
  del sections["peak_default"]

  sections["train_paper"] = train_section(10.0, peak=200.0)  # 50 GFLOP/s of 200
  results, table = rendered(sections)
  assert results["mfu"] == pytest.approx(0.25)
  assert results["goals"]["mfu"]["pass"] is False
  value, _, _, verdict = cells(table)["training MFU, paper config"]
  assert numbers(value) == pytest.approx([25.0, 50.0]) and verdict == "**miss**"


def test_latency_goal_is_lower_is_better():
  sections = {"infer": {"frames_per_s": 120.0, "latency_ms_p50": 8.0, "latency_ms_p95": 9.5}}
  assert report.summarise(sections)["goals"]["stream_p95_ms"]["pass"] is True
  assert report.summarise(sections)["goals"]["stream_fps"]["pass"] is True
  sections["infer"]["latency_ms_p95"] = 10.5
  assert report.summarise(sections)["goals"]["stream_p95_ms"]["pass"] is False


def test_torch_ratio_prefers_the_paired_batch_sweep_row():
  sections = {
    "peak": {"backend": "cpu", "float32_gflops": 100.0},
    "train_paper": train_section(4.0),  # 1.0 clips/s
    "torch_paper": torch_section(8.0),  # 0.5 clips/s: 2.0 across sections
    "batch_sweep": {"rows": [sweep_row(4, 1.25)]},
  }
  results, table = rendered(sections)
  assert results["torch_ratios"]["train_paper"] == pytest.approx(2.0)
  assert results["torch_train_ratio"] == pytest.approx(1.25)
  assert results["torch_infer_ratio"] == pytest.approx(4.0)
  value, _, _, verdict = cells(table)["JAX / PyTorch training, paper"]
  # paired ratio, ratio across sections, then both sections' clips/s
  assert numbers(value) == pytest.approx([1.25, 2.0, 1.0, 0.5])
  assert verdict == "pass"
  infer = cells(table)["JAX / PyTorch inference (whole window), paper"][0]
  assert numbers(infer) == pytest.approx([4.0, 2.0, 0.5])

  # A sweep at another batch is no pair for the headline figure.
  sections["batch_sweep"]["rows"][0]["batch_clips"] = 2
  results, _ = rendered(sections)
  assert results["torch_train_ratio"] == pytest.approx(2.0)


def test_no_torch_ratio_between_a_gpu_and_a_cpu():
  sections = {
    "peak": {"backend": "gpu", "float32_gflops": 5e5, "device_kind": "H200", "device_count": 1},
    "train_paper": train_section(0.1, backend="gpu"),
    "torch_paper": torch_section(8.0, device="cpu"),
    "batch_sweep": {"rows": [sweep_row(4, 80.0)]},
  }
  results, table = rendered(sections)
  assert results["torch_train_ratio"] is None
  assert results["torch_infer_ratio"] is None
  assert "torch_train_ratio" not in results["goals"]
  assert "not compared: torch ran on cpu, JAX on gpu" in table
  assert "JAX ran on 1 x H200 (gpu)" in table

  sections["torch_paper"] = torch_section(0.2, device="cuda")
  sections["batch_sweep"]["rows"] = [sweep_row(4, 2.1, torch_device="cuda")]
  results, table = rendered(sections)
  assert results["torch_train_ratio"] == pytest.approx(2.1)
  assert "not compared" not in table


def test_bfloat16_mfu_uses_the_bfloat16_peak():
  sections = {
    "peak": {"backend": "gpu", "float32_gflops": 400.0, "bfloat16_gflops": 800.0},
    "train_paper": train_section(2.0, backend="gpu", peak=400.0),
    "train_paper_bf16": train_section(1.0, backend="gpu", peak=700.0),
  }
  sections["peak"].update(device_kind="H200", device_count=1)
  results, table = rendered(sections)
  assert results["paper_bf16_mfu"] == pytest.approx(500.0 / 800.0)
  assert results["paper_bf16_speedup"] == pytest.approx(2.0)
  value = cells(table)["training, paper config, bfloat16 compute: clips/s; MFU; x the float32 step"]
  assert numbers(value[0]) == pytest.approx([4.0, 62.5, 2.0])
  assert results["mfu"] == pytest.approx(250.0 / 400.0)


def test_which_sections_a_full_run_includes():
  cpu = [name for name in registry.SECTIONS if registry.runs_here(name, "cpu")]
  gpu = [name for name in registry.SECTIONS if registry.runs_here(name, "gpu")]
  assert "train_paper_bf16" not in cpu and "xla_default" in cpu and "convs" in cpu
  assert "train_paper_bf16" in gpu and "xla_default" not in gpu and "convs" not in gpu
  assert {"peak", "train_paper", "torch_paper", "infer", "layers"} <= set(cpu) & set(gpu)
  quick = [name for name in registry.SECTIONS if registry.runs_here(name, "cpu", quick=True)]
  assert "batch_sweep" not in quick and "profile" not in quick
  assert {"peak", "train_demo", "train_paper", "torch_paper", "pipeline_paper", "infer"} <= set(
    quick
  )


def test_every_registered_worker_exists():
  for name, section in registry.SECTIONS.items():
    module, function = section.worker.split(":")
    assert callable(getattr(importlib.import_module(module), function)), name


def test_committed_results_render_every_row_they_have_figures_for():
  """The table from benchmarks/results.json: no template names a figure that is missing."""
  results = json.loads(harness.RESULTS.read_text())
  results.update(report.summarise(results["sections"]))
  table = report.render_table(results)
  shown = cells(table)
  assert len(shown) == len(report.table_rows(results)) >= len(results["sections"])
  empty = {figure: row for figure, row in shown.items() if "n/a" in " ".join(row)}
  assert not empty
  # Figures read back from the table equal those in results.json.
  paper = results["sections"]["train_paper"]
  value = shown["training, paper config: clips/s (frames/s)"][0]
  assert numbers(value) == pytest.approx([paper["clips_per_s"], paper["frames_per_s"]], abs=0.06)


def test_a_row_needs_its_figures():
  row = row_specs.Row("x", "{s[a][b]:.1f}", "ref", ("s.a.b",))
  assert report._lookup({"s": {"a": {"b": 1.0}}}, "s.a.b") == 1.0
  assert report._lookup({"s": {"a": {}}}, "s.a.b") is None
  assert report._text(row.value, {"s": {"a": {"b": 2.25}}}) == "2.2"
  assert report._text(row.value, {"s": {}}) == "n/a"


def test_update_markdown_replaces_only_the_table(tmp_path: pathlib.Path):
  path = tmp_path / "BENCHMARKS.md"
  results, table = rendered({"peak": {"backend": "cpu", "float32_gflops": 99.0}})
  path.write_text(f"intro\n{report.TABLE_START}\nold\n{report.TABLE_END}\nprose\n")
  report.update_markdown(results, path)
  text = path.read_text()
  assert text.startswith("intro\n") and text.endswith("prose\n") and "old" not in text
  assert numbers(cells(text)["float32 matmul peak (GFLOP/s)"][0]) == [99.0]


def test_stock_layer_swap_trains_the_same_model():
  """benchmarks.layers compares like with like: same variables, same train-mode outputs."""
  import jax
  import numpy as np

  from benchmarks import layers
  from stress_jax.models import build_model
  from tests.model_helpers import make_inputs, tiny, variables_for

  cfg = tiny()
  variables = variables_for(cfg)
  x, landmarks, mask = make_inputs(cfg)

  def forward():
    model = build_model(cfg)
    init = jax.eval_shape(model.init, jax.random.key(0), x, landmarks, mask)
    (logits, _), state = model.apply(
      variables,
      x,
      landmarks,
      mask,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": jax.random.key(1)},
    )
    return jax.tree.structure(init), logits, state

  want_tree, want_logits, want_state = forward()
  with layers.stock_layers("batchnorm", "max_pool"):
    got_tree, got_logits, got_state = forward()
  assert got_tree == want_tree
  np.testing.assert_allclose(got_logits, want_logits, rtol=1e-4, atol=1e-5)
  for got, want in zip(jax.tree.leaves(got_state), jax.tree.leaves(want_state), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  # The swap is undone on exit.
  from stress_jax.models import resnet

  assert resnet._batch_norm.__module__ == "stress_jax.models.resnet"
