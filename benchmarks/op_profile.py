"""Where a jitted step's time goes, from an XLA profile of the step itself.

  python -m benchmarks.op_profile [--config paper] [--batch 4] [--steps 2]

Traces a few steps with `jax.profiler`, turns the trace into events with xprof (the
`bench` extra installs it) and charges each XLA operation's time to
  - a kind: convolution forward / input gradient / kernel gradient, layout transpose,
    loop bookkeeping (slicing in and out of loops), matmul,
    elementwise and reductions (BatchNorm, ReLU, pooling, attention, optimizer);
  - a part of the model, from the operation's source path (trunk, head, spatial
    attention, temporal + landmark streams + classifier, the rest: loss, optimizer).
Times are summed over XLA:CPU's worker threads, so fractions are of busy thread time,
not of the wall clock (independent operations can overlap). Only named operations are
counted: XLA:CPU hands most convolution work to Eigen's thread pool, whose trace events
carry no operation name (and include its spinning), so that work is not in these
figures; a convolution's own event covers little more than the hand-off.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import re
import tempfile

CONTAINERS = ("while", "conditional", "call")
PARTS = (
  ("trunk", "/trunk/"),
  ("head", "/head/"),
  ("spatial_attention", "/spatial_attention/"),
  ("temporal_landmark_classifier", "temporal_attention|landmark|/classifier|/dropout"),
)
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([\w\-]+)\(")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$")


def _parse_hlo(text: str):
  """{instruction: (line, opcode)} and {computation: [its lines]} of an HLO module."""
  instructions, computations, current = {}, {}, None
  for line in text.splitlines():
    match = _COMPUTATION.match(line)
    if match and not line.startswith(" "):
      current = match.group(1)
      computations[current] = []
      continue
    if current is None:
      continue
    computations[current].append(line)
    match = _INSTRUCTION.match(line)
    if match:
      instructions[match.group(1)] = (line, match.group(3))
  return instructions, computations


def _body(line: str, computations) -> str:
  called = re.search(r"calls=%?([\w.\-]+)", line)
  return "\n".join(computations.get(called.group(1), [])) + "\n" + line if called else line


def classify(line: str, opcode: str, body: str, batch_images: set[int]) -> str:
  """The kind of one XLA operation (see the module doc)."""
  if " convolution(" in body:
    # XLA's kernel-gradient fusions carry no source path, and their leading dimension is
    # channels, not images.
    dims = re.search(r"= \w+\[([\d,]*)\]", line).group(1)
    leading = int(dims.split(",")[0]) if dims else 0
    if leading not in batch_images and "op_name=" not in body:
      return "conv_kernel_grad"
    return "conv_input_grad" if "transpose(jvp" in body else "conv_forward"
  if " dot(" in body:
    return "matmul"
  if "transpose" in line.split("(")[0] or opcode == "transpose":
    return "layout_transpose"
  if "dynamic_update_slice" in body or "dynamic_slice" in body or "/while/" in body:
    return "loop_bookkeeping"
  return "elementwise_reduce"


def part_of(body: str) -> str:
  path = re.search(r'op_name="([^"]+)"', body)
  path = path.group(1) if path else ""
  if "StressNet" not in path:
    return "loss_optimizer_other" if path else "unattributed"
  for name, pattern in PARTS:
    if re.search(pattern, path):
      return name
  return "loss_optimizer_other"


def _trace_events(trace_dir: str) -> list[dict]:
  try:
    from xprof.convert import raw_to_tool_data
  except ImportError as error:
    raise SystemExit(
      "op_profile needs xprof to read the trace: pip install -e '.[bench]'"
    ) from error

  paths = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
  data, _ = raw_to_tool_data.xspace_to_tool_data(paths, "trace_viewer@", {})
  return json.loads(data if isinstance(data, str) else data.decode())["traceEvents"]


def summarise(hlo_text: str, events: list[dict], steps: int, batch_images: set[int]) -> dict:
  instructions, computations = _parse_hlo(hlo_text)
  by_kind, by_part = collections.defaultdict(float), collections.defaultdict(float)
  by_op = collections.defaultdict(float)
  for event in events:
    name = event.get("name", "")
    if event.get("ph") != "X" or name not in instructions:
      continue
    line, opcode = instructions[name]
    if opcode in CONTAINERS:
      continue  # its body's operations have their own events
    body = _body(line, computations)
    ms = event.get("dur", 0) / 1e3 / steps
    by_kind[classify(line, opcode, body, batch_images)] += ms
    by_part[part_of(body)] += ms
    by_op[name] += ms
  total = sum(by_kind.values())

  def table(values):
    ordered = sorted(values.items(), key=lambda item: -item[1])
    return {key: {"ms": round(ms, 1), "fraction": round(ms / total, 3)} for key, ms in ordered}

  top = sorted(by_op.items(), key=lambda item: -item[1])[:8]
  return {
    "busy_thread_ms_per_step": round(total, 1),
    "by_kind": table(by_kind),
    "by_part": table(by_part),
    "top_ops": [
      {"op": name, "ms": round(ms, 1), "hlo": instructions[name][0].strip()[:160]}
      for name, ms in top
    ],
  }


def profile_step(step, state, batch, rng, steps: int, batch_images: set[int]) -> dict:
  """Trace `steps` calls of the jitted `step` (already warm) and summarise them."""
  import jax

  hlo = step.lower(state, batch, rng).compile().as_text()
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    for _ in range(steps):
      state, metrics = step(state, batch, rng)
      jax.block_until_ready(metrics["loss"])
    jax.profiler.stop_trace()
    events = _trace_events(trace_dir)
  result = summarise(hlo, events, steps, batch_images)
  result["method"] = (
    f"jax.profiler trace of {steps} warm steps, xprof trace events matched to the "
    "compiled HLO's operations; ms per step summed over XLA:CPU worker threads"
  )
  return result, state


def main(argv=None) -> int:
  import jax

  from benchmarks import common

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="paper", choices=("paper", "demo"))
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--steps", type=int, default=2)
  args = parser.parse_args(argv)
  setup = common.train_setup(args.config, args.batch)
  state, step, batch = setup["state"], setup["step"], setup["batch"]
  rng = jax.random.key(1)
  for _ in range(2):
    state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics["loss"])
  images = {args.batch * setup["num_frames"]}
  result, _ = profile_step(step, state, batch, rng, args.steps, images)
  print(json.dumps(result, indent=1))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
