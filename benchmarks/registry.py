"""Every benchmark section: which worker computes it, with what, and when a run includes it.

A worker is "module:function", called in its own subprocess as function(settings,
**kwargs) and returning a JSON-able dict (benchmarks/harness.py). The order here is
the order a full run takes. Imports nothing heavy: the harness reads it before any
worker starts.
"""

from __future__ import annotations

import dataclasses
import importlib

from stress_jax import xla_cpu

# Sections that run torch next to JAX must not let JAX take most of a GPU's memory.
_SHARE_GPU = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
_JAXLIB_FLAGS = {xla_cpu.OPT_OUT: "1"}


@dataclasses.dataclass(frozen=True)
class Section:
  worker: str  # "module:function"
  kwargs: dict = dataclasses.field(default_factory=dict)
  env: dict = dataclasses.field(default_factory=dict)  # beyond the parent's environment
  where: str = "any"  # where a run without --only includes it: any, cpu, accelerator
  diagnostic: bool = False  # explains figures rather than measures a goal: not in --quick


SECTIONS = {
  "peak": Section("benchmarks.peak:worker_peak"),
  # jaxlib's own XLA:CPU flags: the MFU divides by the best peak under either.
  "peak_default": Section("benchmarks.peak:worker_peak", env=_JAXLIB_FLAGS, where="cpu"),
  "train_demo": Section("benchmarks.training:worker_train", {"config_name": "demo"}),
  "train_paper": Section("benchmarks.training:worker_train", {"config_name": "paper"}),
  # bfloat16 compute pays on GPU/TPU; on a CPU name these in --only.
  "train_demo_bf16": Section(
    "benchmarks.training:worker_train",
    {"config_name": "demo", "dtype": "bfloat16"},
    where="accelerator",
  ),
  "train_paper_bf16": Section(
    "benchmarks.training:worker_train",
    {"config_name": "paper", "dtype": "bfloat16"},
    where="accelerator",
  ),
  "xla_default": Section(
    "benchmarks.diagnostics:worker_xla_default", env=_JAXLIB_FLAGS, where="cpu", diagnostic=True
  ),
  "plain": Section("benchmarks.diagnostics:worker_plain", diagnostic=True),
  "layers": Section("benchmarks.layers:worker_layers", diagnostic=True),
  "breakdown": Section("benchmarks.diagnostics:worker_breakdown", diagnostic=True),
  "profile": Section("benchmarks.diagnostics:worker_profile", diagnostic=True),
  "torch_demo": Section(
    "benchmarks.torch_sections:worker_torch", {"config_name": "demo"}, env=_SHARE_GPU
  ),
  "torch_paper": Section(
    "benchmarks.torch_sections:worker_torch", {"config_name": "paper"}, env=_SHARE_GPU
  ),
  "pipeline_demo": Section("benchmarks.pipeline:worker_pipeline", {"config_name": "demo"}),
  "pipeline_paper": Section("benchmarks.pipeline:worker_pipeline", {"config_name": "paper"}),
  "convs": Section("benchmarks.diagnostics:worker_convs", where="cpu", diagnostic=True),
  "batch_sweep": Section(
    "benchmarks.torch_sections:worker_batch_sweep", env=_SHARE_GPU, diagnostic=True
  ),
  "infer": Section("benchmarks.streaming:worker_infer"),
  "e2e": Section("benchmarks.streaming:worker_e2e"),
  "frozen_trunk": Section("benchmarks.frozen_trunk:worker_frozen_trunk"),
  "ingest": Section("benchmarks.datasets:worker_ingest"),
  "yonsei": Section("benchmarks.datasets:worker_yonsei"),
  "landmarks": Section("benchmarks.landmark_bench:worker_landmarks"),
}


def runs_here(name: str, backend: str, quick: bool = False) -> bool:
  """Whether a run without --only includes section `name` on a JAX `backend`."""
  section = SECTIONS[name]
  if quick and section.diagnostic:
    return False
  if section.where == "any":
    return True
  return (section.where == "cpu") == (backend == "cpu")


def call_worker(name: str, settings: dict) -> dict:
  """Imports and runs section `name`'s worker (in the worker subprocess)."""
  section = SECTIONS[name]
  module, function = section.worker.split(":")
  return getattr(importlib.import_module(module), function)(settings, **section.kwargs)
