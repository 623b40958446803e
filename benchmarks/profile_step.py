"""XLA:CPU flag sweep on the paper config's hot paths, one subprocess per flag set.

  python -m benchmarks.profile_step [--batch 2] [--repeats 3] [--flags="A" --flags="B" ...]

For each XLA_FLAGS setting it times (median after warm-up) the paper training step,
whole-window inference, the one-frame streaming encode and a 2048^2 float32 matmul,
and records the first training losses (a flag that changes them beyond float32 noise
is not a speed-up). Before each setting it waits for other jobs to use under 15% of
the CPUs. Prints one JSON line per setting and writes them to
benchmarks/flag_sweep.json; `--convs` prints the XLA-vs-torch 3x3 conv table instead.
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
  # oneDNN: the rewriter that would turn convolutions into oneDNN calls does not fire
  # in this jaxlib (no onednn custom call appears in the compiled HLO).
  "--xla_cpu_experimental_onednn_custom_call=true --xla_cpu_use_onednn=true",
  # Convolutions already go to YNNPACK ("ynn_fusion") by default in jax 0.10.
  "--xla_cpu_experimental_ynn_fusion_type=",
  "--xla_cpu_use_xnnpack=false",
  "--xla_cpu_use_thunk_runtime=false",
  "--xla_cpu_prefer_vector_width=512",
  "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
  "--xla_cpu_enable_fast_math=true",
)


def measure(batch: int, repeats: int, dtype: str) -> dict:
  import jax
  import numpy as np

  from benchmarks import common

  setup = common.train_setup("paper", batch, dtype or None)
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

  train_s, _ = common.median_time(train_once, repeats, 0)
  infer_s, _ = common.median_time(
    lambda: jax.block_until_ready(setup["eval_step"](state, batch_arrays)[0]), repeats, 2
  )
  model, variables, _, _ = common.stream_model()
  encode, _, _ = common.stream_functions(model)
  crop = np.zeros((112, 112, 3), np.uint8)
  encode_s, _ = common.median_time(
    lambda: jax.block_until_ready(encode(variables, crop, True)), 30, 5
  )
  peak = common.matmul_peak(5, (2048,))
  return {
    "train_step_s": round(train_s, 3),
    "infer_s": round(infer_s, 3),
    "encode_one_frame_ms": round(1000 * encode_s, 2),
    "matmul_gflops": round(peak["gflops"], 1),
    "first_losses": losses,
    "load_average_1m": round(os.getloadavg()[0], 2),
  }


# The paper trunk's and head's 3x3 convolutions at 112x112 input: (H=W, C_in, C_out,
# stride, how many of them per frame).
PAPER_CONVS = (
  (28, 64, 64, 1, 4),
  (28, 64, 128, 2, 1),
  (14, 128, 128, 1, 3),
  (14, 128, 256, 2, 1),
  (7, 256, 256, 1, 3),
  (7, 256, 512, 1, 1),
  (7, 512, 512, 1, 1),
)


def conv_table(frames: int = 192, repeats: int = 5) -> dict:
  """One 3x3 convolution forward+backward (input and kernel gradients), XLA vs torch.

  The same layer shapes as the paper model's 3x3 convs, `frames` images at once (the
  paper step folds batch x 48 frames into the batch), float32, every core. torch runs
  channels_last (its faster layout here). GFLOP/s counts 3x the forward FLOPs. The
  forward alone (what inference runs) is timed too, torch under inference_mode.
  """

  import jax
  import jax.numpy as jnp
  import torch
  from jax import lax

  torch.set_num_threads(os.cpu_count())

  from benchmarks.common import median_time

  def median(fn):
    return median_time(fn, repeats, warmup=2)[0]

  rows = []
  totals = {"xla_s": 0.0, "torch_s": 0.0, "xla_forward_s": 0.0, "torch_forward_s": 0.0}
  for size, c_in, c_out, stride, count in PAPER_CONVS:
    x = jax.random.normal(jax.random.key(0), (frames, size, size, c_in))
    w = jax.random.normal(jax.random.key(1), (3, 3, c_in, c_out)) * 0.05

    def conv(x, w, stride=stride):
      return lax.conv_general_dilated(
        x, w, (stride, stride), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
      )

    y = conv(x, w)
    grads = jax.jit(lambda x, w, g, conv=conv: jax.vjp(conv, x, w)[1](g))
    cotangent = jnp.ones_like(y)
    xla_s = median(lambda grads=grads, x=x, w=w, g=cotangent: jax.block_until_ready(grads(x, w, g)))
    tx = torch.randn(frames, c_in, size, size).contiguous(memory_format=torch.channels_last)
    tw = (torch.randn(c_out, c_in, 3, 3) * 0.05).contiguous(memory_format=torch.channels_last)
    tx.requires_grad_(True)
    tw.requires_grad_(True)

    def torch_step(tx=tx, tw=tw, stride=stride):
      out = torch.nn.functional.conv2d(tx, tw, stride=stride, padding=1)
      out.backward(torch.ones_like(out))

    torch_s = median(torch_step)
    forward = jax.jit(conv)
    xla_forward_s = median(lambda f=forward, x=x, w=w: jax.block_until_ready(f(x, w)))
    fx, fw = tx.detach(), tw.detach()

    def torch_forward(fx=fx, fw=fw, stride=stride):
      with torch.inference_mode():
        torch.nn.functional.conv2d(fx, fw, stride=stride, padding=1)

    torch_forward_s = median(torch_forward)
    flops = 3 * 2 * frames * y.shape[1] * y.shape[2] * 9 * c_in * c_out
    rows.append(
      {
        "shape": f"{size}x{size}x{c_in}->{c_out}/s{stride}",
        "per_frame": count,
        "xla_gflops": round(flops / xla_s / 1e9, 1),
        "torch_gflops": round(flops / torch_s / 1e9, 1),
        "torch_speedup": round(xla_s / torch_s, 2),
        "xla_forward_gflops": round(flops / 3 / xla_forward_s / 1e9, 1),
        "torch_forward_gflops": round(flops / 3 / torch_forward_s / 1e9, 1),
        "torch_forward_speedup": round(xla_forward_s / torch_forward_s, 2),
      }
    )
    for key, seconds in (
      ("xla_s", xla_s),
      ("torch_s", torch_s),
      ("xla_forward_s", xla_forward_s),
      ("torch_forward_s", torch_forward_s),
    ):
      totals[key] += count * seconds
  return {
    "frames": frames,
    "layers": rows,
    "weighted_torch_speedup": round(totals["xla_s"] / totals["torch_s"], 2),
    "weighted_torch_forward_speedup": round(totals["xla_forward_s"] / totals["torch_forward_s"], 2),
    "method": (
      "lax.conv_general_dilated NHWC/HWIO under jax.jit (jax.vjp to input and kernel) vs "
      "torch.nn.functional.conv2d channels_last + backward; median of timed runs after 2 "
      "warm-ups; weighted = sum over the model's 3x3 convs of count x time"
    ),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dtype", default="")
  parser.add_argument(
    "--flags", action="append", default=None, help="one XLA_FLAGS setting; repeat"
  )
  parser.add_argument("--convs", action="store_true", help="the conv table only")
  parser.add_argument("--quiet_wait", type=float, default=300, help="seconds, per setting")
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.convs:
    print(json.dumps(conv_table(), indent=1))
    return 0
  if args.child:
    print("RESULT " + json.dumps(measure(args.batch, args.repeats, args.dtype)), flush=True)
    return 0
  from benchmarks.harness import wait_until_quiet

  rows = []
  for flags in DEFAULT_SWEEP if args.flags is None else args.flags:
    # Other jobs on a 2-core machine swing these timings by 2x: wait for a quiet spell.
    quiet = wait_until_quiet(0.15, args.quiet_wait)
    env = dict(os.environ, XLA_FLAGS=flags)
    command = [sys.executable, "-m", "benchmarks.profile_step", "--child"]
    command += ["--batch", str(args.batch), "--repeats", str(args.repeats), "--dtype", args.dtype]
    process = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    row = {"xla_flags": flags, "dtype": args.dtype or "float32", **quiet}
    if lines:
      row.update(json.loads(lines[-1][len("RESULT ") :]))
    else:
      row["error"] = (process.stderr or "").strip().splitlines()[-3:]
    rows.append(row)
    print(json.dumps(row), flush=True)
  out = pathlib.Path(__file__).with_name("flag_sweep.json")
  from stress_jax import jsonio  # imported late: stress_jax sets XLA flag defaults

  jsonio.write(out, rows, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
