"""Sections `train_demo`, `train_paper` and their `_bf16` twins: the jitted training step.

The step is `stress_jax.trainer.jit_steps`' (what `python train.py` runs), timed at the
config's per-device batch on a synthetic batch, with its MFU against a matmul peak
measured in the same process, its compile count, peak RSS and whole-window inference.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from benchmarks import common


def worker_train(s: dict, config_name: str, dtype: str | None = None) -> dict:
  """One config's training step (and whole-window inference) at its per-device batch.

  dtype overrides the compute dtype (the *_bf16 sections); the MFU then divides by the
  matmul peak of that dtype.
  """
  import jax

  from stress_jax import input_pipeline

  dtype = dtype or s.get("dtype")
  peak_dtype = "bfloat16" if dtype == "bfloat16" else "float32"
  peak_sizes = (1024, 2048) if jax.default_backend() == "cpu" else (8192,)
  peak_repeats = max(3, s["peak_repeats"] // 2)
  batch_size = s["paper_batch"] if config_name == "paper" else s["demo_batch"]
  peak_before = common.matmul_peak(peak_repeats, peak_sizes, peak_dtype)
  counter = common.CompileCounter()
  counter.active = True
  setup = common.train_setup(config_name, batch_size, dtype)
  step = setup["step"]
  rng = jax.random.key(1)

  started = time.perf_counter()
  flops = common.flops(step.lower(setup["state"], setup["batch"], rng).compile())
  compile_s = time.perf_counter() - started
  for _ in range(s["train_warmup"]):
    common.step_once(setup, rng)
  compiles_before = counter.count
  cache_before = step._cache_size()
  times = []
  for _ in range(s["train_repeats"]):
    started = time.perf_counter()
    # Waited for, as the trainer waits for each step (one step queued at most).
    metrics = common.step_once(setup, rng)
    times.append(time.perf_counter() - started)
  loss = float(metrics["loss"])
  compiles_in_loop = counter.count - compiles_before
  rss = common.rss_mb()
  # The peak the MFU divides by, measured in this process right after the steps
  # (same load), best of this and the one measured before them.
  peak_after = common.matmul_peak(peak_repeats, peak_sizes, peak_dtype)
  peak = max(peak_before["gflops"], peak_after["gflops"])
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
    "achieved_gflops": round(flops / step_s / 1e9, 1),
    "matmul_peak_gflops": round(peak, 1),
    "mfu": round(flops / step_s / 1e9 / peak, 4),
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
  infer_batch = s["infer_batch"] if config_name == "paper" else batch_size
  host = {k: np.asarray(v)[:infer_batch] for k, v in setup["host_batch"].items()}
  eval_batch = input_pipeline.to_global(host, setup["data_sharding"])
  seconds, _ = common.median_time(
    lambda: jax.block_until_ready(setup["eval_step"](setup["state"], eval_batch)[0]),
    s["train_repeats"],
    warmup=2,
  )
  result.update(
    infer_batch_clips=infer_batch,
    infer_s=round(seconds, 4),
    infer_clips_per_s=round(infer_batch / seconds, 3),
    infer_frames_per_s=round(infer_batch * setup["num_frames"] / seconds, 1),
  )
  return result
