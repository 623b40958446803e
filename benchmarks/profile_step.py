"""XLA:CPU flag sweep on the paper config's hot paths, one subprocess per flag set.

  python -m benchmarks.profile_step [--batch 1] [--repeats 3] [--flags "A" "B" ...]

For each XLA_FLAGS setting it times (median after warm-up) the paper training step,
whole-window inference, the one-frame streaming encode and a 2048^2 float32 matmul,
and checks the training loss against the default flags' (a flag that changes the
numbers beyond float32 noise is not a speed-up). Prints one JSON line per setting
and writes them to benchmarks/flag_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

DEFAULT_SWEEP = (
  "",
  "--xla_cpu_experimental_onednn_custom_call=true",
  "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
  "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution",
  "--xla_cpu_use_xnnpack=false",
  "--xla_cpu_prefer_vector_width=512",
  "--xla_cpu_enable_fast_math=true",
)


def measure(batch: int, repeats: int, dtype: str) -> dict:
  import functools

  import jax
  import numpy as np

  from benchmarks import run

  settings = dict(
    run.SETTINGS[True], quick=True, paper_batch=batch, infer_batch=batch, dtype=dtype or None
  )
  setup = run._train_setup("paper", batch, settings["dtype"])
  state, step, batch_arrays = setup["state"], setup["step"], setup["batch"]
  rng = jax.random.key(1)
  losses = []
  for _ in range(2):
    state, metrics = step(state, batch_arrays, rng)
    losses.append(float(metrics["loss"]))

  def train_once():
    nonlocal state
    state, metrics = step(state, batch_arrays, rng)
    jax.block_until_ready(metrics["loss"])

  train_s, _ = run._median_time(train_once, repeats, 0)
  from stress_jax import train

  eval_step = jax.jit(
    functools.partial(train.eval_step, model=setup["model"], dtype=setup["compute"])
  )
  host = {k: np.asarray(v) for k, v in setup["host_batch"].items()}
  infer_s, _ = run._median_time(
    lambda: jax.block_until_ready(eval_step(state, host)[0]), repeats, 2
  )
  model, variables, _, _ = run._stream_model()
  encode, _, _ = run._stream_functions(model)
  crop = np.zeros((112, 112, 3), np.uint8)
  encode_s, _ = run._median_time(
    lambda: jax.block_until_ready(encode(variables, crop, True)), 30, 5
  )
  peak = run.matmul_peak(5, (2048,))
  return {
    "train_step_s": round(train_s, 3),
    "infer_s": round(infer_s, 3),
    "encode_one_frame_ms": round(1000 * encode_s, 2),
    "matmul_gflops": round(peak["gflops"], 1),
    "first_losses": losses,
    "load_average_1m": round(os.getloadavg()[0], 2),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dtype", default="")
  parser.add_argument(
    "--flags", action="append", default=None, help="one XLA_FLAGS setting; repeat"
  )
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print("RESULT " + json.dumps(measure(args.batch, args.repeats, args.dtype)), flush=True)
    return 0
  rows = []
  for flags in DEFAULT_SWEEP if args.flags is None else args.flags:
    env = dict(os.environ, XLA_FLAGS=flags)
    command = [sys.executable, "-m", "benchmarks.profile_step", "--child"]
    command += ["--batch", str(args.batch), "--repeats", str(args.repeats), "--dtype", args.dtype]
    process = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    row = {"xla_flags": flags, "dtype": args.dtype or "float32"}
    if lines:
      row.update(json.loads(lines[-1][len("RESULT ") :]))
    else:
      row["error"] = (process.stderr or "").strip().splitlines()[-3:]
    rows.append(row)
    print(json.dumps(row), flush=True)
  out = pathlib.Path(__file__).with_name("flag_sweep.json")
  out.write_text(json.dumps(rows, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
