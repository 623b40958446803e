"""The paper-config training step end to end, with a frozen trunk, and on cached features.

  python -m benchmarks.frozen_trunk [--quick]

All three are steps.train_step jitted as trainer.Trainer jits it (one `data` mesh, replicated
state, donated), in one process, timed as medians after a warm-up step:

  end_to_end       pixels in, the whole model trained
  frozen_trunk     model.freeze_trunk=True: the trunk's inference forward, the rest trained
  cached_features  model.input_mode="features": stage-3 maps in (float16, as a feature
                   database stores them), the same head, attention and classifier trained

The batch is small (2 clips) so that the end-to-end step fits a few repeats on a laptop CPU;
the ratios are what the comparison is about.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time

import numpy as np

from benchmarks.report import load_goals

VARIANTS = {
  "end_to_end": {},
  "frozen_trunk": {"freeze_trunk": True},
  "cached_features": {"input_mode": "features"},
}
GOALS = {name: load_goals()[f"{name}_speedup"][0] for name in ("frozen_trunk", "cached_features")}


def host_batch(model_config, clips: int, frames: int, seed: int = 0) -> dict:
  """Arrays shaped and typed as the input pipeline delivers them (input_pipeline.DEVICE_KEYS)."""
  rng = np.random.default_rng(seed)
  if model_config.input_mode == "pixels":
    inputs = rng.integers(0, 256, (clips, frames, 112, 112, 3), dtype=np.uint8)
  else:
    shape = (clips, frames, 7, 7, int(model_config.stage_widths[-1]))
    inputs = rng.normal(0, 1, shape).astype(np.float16)
  base = rng.uniform(0.25, 0.75, (1, 1, 68, 2)).astype(np.float32)
  return {
    "inputs": inputs,
    "landmarks": base + rng.normal(0, 0.01, (clips, frames, 68, 2)).astype(np.float32),
    "frame_mask": np.ones((clips, frames), bool),
    "label": rng.integers(0, 3, (clips,), dtype=np.int32),
    "photometric": np.tile(np.array([0.05, 1.1], np.float32), (clips, 1)),
    "valid": np.ones((clips,), bool),
  }


def time_step(config, clips: int, frames: int, repeats: int) -> dict:
  """Median wall time of one jitted train step, after one warm-up step past compilation."""
  import jax
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from stress_jax import input_pipeline, steps, trainer
  from stress_jax.models import build_model

  model = build_model(config.model)
  total = 1000
  tx = steps.make_optimizer(config.optim, total, bool(config.model.freeze_trunk))
  schedule = steps.learning_rate_schedule(config.optim, total)
  dtype = steps.compute_dtype(config.model)
  mesh = trainer.make_mesh()
  data, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
  batch = host_batch(config.model, clips, frames)
  init = functools.partial(steps.init_state, model, tx, dtype=dtype)
  shardings = jax.tree.map(lambda _: replicated, jax.eval_shape(init, jax.random.key(0), batch))
  state = jax.jit(init, out_shardings=shardings)(jax.random.key(0), batch)
  step = jax.jit(
    functools.partial(steps.train_step, model=model, tx=tx, schedule=schedule, dtype=dtype),
    in_shardings=(shardings, data, replicated),
    out_shardings=(shardings, replicated),
    donate_argnums=0,
  )
  device_batch = input_pipeline.to_global(batch, data)
  rng = jax.random.key(1)
  started = time.perf_counter()
  compiled = step.lower(state, device_batch, rng).compile()
  compile_s = time.perf_counter() - started
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  times = []
  for index in range(repeats + 1):
    started = time.perf_counter()
    state, metrics = compiled(state, device_batch, rng)
    jax.block_until_ready(metrics["loss"])
    if index:  # the first call is the warm-up
      times.append(time.perf_counter() - started)
  trained = steps.split_frozen(state.params, bool(config.model.freeze_trunk))[0]
  return {
    "median_s": statistics.median(times),
    "times_s": [round(t, 3) for t in times],
    "compile_s": round(compile_s, 1),
    # XLA's count for the compiled step: what a variant leaves out, independent of load.
    "gflop": round(float(analysis.get("flops", float("nan"))) / 1e9, 1),
    "trained_params": int(sum(np.size(x) for x in jax.tree.leaves(trained))),
  }


def worker_frozen_trunk(s: dict) -> dict:
  """The benchmark section (benchmarks/registry.py)."""
  return run(quick=s["quick"])


def run(quick: bool = False, config_name: str = "paper") -> dict:
  """Times the three variants; speed-ups are end_to_end / variant (higher is better)."""
  import jax

  # Imports stress_jax, whose XLA CPU flags apply as long as no JAX backend has started.
  from benchmarks import common

  clips, frames = (2, 16) if quick else (2, 48)
  repeats = 3 if quick else 5
  results = {}
  for name, overrides in VARIANTS.items():
    config = common.config(config_name, **overrides)
    results[name] = time_step(config, clips, frames, repeats)
  base = results["end_to_end"]["median_s"]
  speedups = {name: round(base / results[name]["median_s"], 2) for name in GOALS}
  flop = results["end_to_end"]["gflop"]
  flop_ratios = {name: round(flop / results[name]["gflop"], 2) for name in GOALS}
  return {
    "config": config_name,
    "clips": clips,
    "frames_per_clip": frames,
    "repeats": repeats,
    "backend": jax.default_backend(),
    "device_kind": jax.devices()[0].device_kind,
    "load_average_1min": round(os.getloadavg()[0], 2),
    "seconds": {name: round(r["median_s"], 4) for name, r in results.items()},
    "speedup": speedups,
    "flop_ratio": flop_ratios,
    "goal": GOALS,
    "meets_goal": {name: speedups[name] >= goal for name, goal in GOALS.items()},
    "details": results,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="16-frame clips, 3 repeats")
  parser.add_argument("--config", default="paper", choices=("paper", "demo"))
  args = parser.parse_args()
  print(json.dumps(run(args.quick, args.config), indent=2))


if __name__ == "__main__":
  main()
