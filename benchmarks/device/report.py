"""The GPU check's goals, its short summary, and its table in BENCHMARKS.md.

  python -m benchmarks.device.report /path/to/check.json      # rewrites BENCHMARKS.md's
                                                              # GPU section from the run
  python -m benchmarks.device.report --not-run                # the section before any run

The goals are issue 28's: MFU >= 35% against the run's own bf16 matmul peak; the JAX
step >= 1.1x torch eager and >= 1.0x torch.compile; the input feed >= 1.2x what the step
consumes on each path; streaming >= 500 frames/s with p95 <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re

BENCHMARKS_MD = pathlib.Path(__file__).resolve().parents[2] / "BENCHMARKS.md"
START, END = "<!-- gpu-table:start -->", "<!-- gpu-table:end -->"
DEVICE_RUN = 'run(command="bash benchmarks/device/check.sh", carry=[".whl"], timeout_s=480)'
GOALS = dict(mfu=0.35, vs_eager=1.1, vs_compiled=1.0, feed=1.2, stream_fps=500.0, stream_p95=5.0)
# Feed paths: (pipeline result, speed_jax result that consumes it).
FEED_PATHS = {
  "demo": ("demo", "demo"),
  "paper": ("paper", None),  # None: the best paper batch
  "frozen_trunk": ("paper", "frozen_trunk"),
  "cached_features": ("cached_features", "cached_features"),
}


def _goal(name, value, goal, met, reason=""):
  return {"name": name, "value": value, "goal": goal, "met": met, "reason": reason}


def _part(result, name) -> dict:
  return result.get("parts", {}).get(name) or {}


def best_paper(speed: dict) -> dict | None:
  runs = [v for k, v in speed.items() if k.startswith("paper_b") and "clips_per_s" in v]
  return max(runs, key=lambda r: r["clips_per_s"]) if runs else None


def _missing(part: dict) -> str:
  return part.get("error") or f"part {part.get('status', 'not run')}"


def evaluate(result: dict) -> list[dict]:
  """Every goal of the check, met (True/False) or not measured (None) with the reason."""
  goals = []
  parity = _part(result, "parity")
  if "agrees" in parity:
    tol = parity["tolerance"]
    goals.append(
      _goal(
        "bf16 forward on the device vs float32 on the CPU (logits rel. L2; max prob. diff.)",
        f"{parity['logits_rel_l2_bf16']:.2e}; {parity['prob_max_abs_bf16']:.2e}",
        f"<= {tol['logits_rel_l2']:g}; <= {tol['prob_max_abs']:g}",
        parity["agrees"],
      )
    )
  else:
    goals.append(_goal("bf16 forward parity", None, "agree", None, _missing(parity)))
  train = _part(result, "train")
  if "loss_falls" in train:
    goals.append(
      _goal(
        f"{train['steps']} training steps ({train['data']}, {train['model_dtype']}): loss",
        f"{train['loss_first']:.3f} -> {train['loss_last']:.3f}",
        "finite, falling",
        train["loss_falls"],
        f"means of the first and last {train['loss_window']} steps",
      )
    )
  else:
    goals.append(_goal("training steps: loss", None, "finite, falling", None, _missing(train)))
  if "export_agrees" in train:
    goals.append(
      _goal(
        "export on the device, loaded on the CPU (max prob. diff. vs the device model)",
        f"{train['export_cpu_vs_device']:.2e}",
        f"<= {train['export_tolerance']:g}",
        train["export_agrees"],
      )
    )
  restore = result.get("restore_here")
  if restore:
    goals.append(
      _goal(
        "checkpoint written there, restored on the CPU here (max prob. diff.)",
        f"{restore['checkpoint_vs_device']:.2e}",
        f"<= {restore['tolerance']:g}",
        restore["agrees"],
        restore.get("command", ""),
      )
    )
  elif "tarball" in train:
    goals.append(
      _goal(
        "checkpoint restored on the CPU here",
        None,
        "restores, agrees",
        None,
        "python -m benchmarks.device.restore FILES_AT --save=benchmarks/device/results.json",
      )
    )

  speed, torch_part = _part(result, "speed_jax"), _part(result, "speed_torch")
  best = best_paper(speed)
  if best and "mfu" in best:
    goals.append(
      _goal(
        f"MFU, paper config {best['dtype']} (best batch, {best['batch_clips']} clips)",
        f"{100 * best['mfu']:.1f}%",
        f">= {100 * GOALS['mfu']:.0f}%",
        best["mfu"] >= GOALS["mfu"],
        f"{best['achieved_tflops']:.3g} TFLOP/s of a {speed['matmul_peak_tflops']:.3g} "
        f"TFLOP/s {speed['matmul_dtype']} matmul peak",
      )
    )
  else:
    goals.append(_goal("MFU, paper config", None, ">= 35%", None, _missing(speed)))
  same = speed.get(f"paper_b{torch_part.get('batch_clips')}", {})
  for key, label, goal in (
    ("eager", "torch eager", GOALS["vs_eager"]),
    ("compiled", "torch.compile", GOALS["vs_compiled"]),
  ):
    theirs = torch_part.get(key, {})
    if "clips_per_s" in same and "clips_per_s" in theirs:
      ratio = same["clips_per_s"] / theirs["clips_per_s"]
      goals.append(
        _goal(
          f"JAX / {label}, paper training at {same['batch_clips']} clips",
          f"{ratio:.2f}x ({same['clips_per_s']:.3g} vs {theirs['clips_per_s']:.3g} clips/s)",
          f">= {goal:g}x",
          ratio >= goal,
        )
      )
    else:
      why = theirs.get("skipped") or theirs.get("error") or _missing(torch_part)
      goals.append(_goal(f"JAX / {label}", None, f">= {goal:g}x", None, why))

  feed = _part(result, "pipeline")
  for path, (supply_key, demand_key) in FEED_PATHS.items():
    supply = feed.get(supply_key, {}).get("clips_per_s")
    demand_run = best if demand_key is None else speed.get(demand_key, {})
    demand = (demand_run or {}).get("clips_per_s")
    name = f"input feed / step demand, {path.replace('_', ' ')}"
    if supply is None or demand is None:
      goals.append(_goal(name, None, f">= {GOALS['feed']:g}x", None, "feed or step not measured"))
      continue
    ratio = supply / demand
    reason = f"{supply:.0f} clips/s fed, {demand:.0f} consumed"
    if ratio < GOALS["feed"]:
      reason += "; " + _feed_advice(path, feed, speed)
    goals.append(
      _goal(name, f"{ratio:.2f}x", f">= {GOALS['feed']:g}x", ratio >= GOALS["feed"], reason)
    )

  stream = _part(result, "streaming")
  if "frames_per_s" in stream:
    fps, p95 = stream["frames_per_s"], stream["latency_ms_p95"]
    goals.append(
      _goal(
        "streaming, paper model: frames/s; p95 latency",
        f"{fps:.0f}; {p95:.2f} ms",
        f">= {GOALS['stream_fps']:.0f}; <= {GOALS['stream_p95']:g} ms",
        fps >= GOALS["stream_fps"] and p95 <= GOALS["stream_p95"],
      )
    )
  else:
    goals.append(_goal("streaming", None, ">= 500 frames/s, p95 <= 5 ms", None, _missing(stream)))
  tests = _part(result, "pytest")
  if "tests" in tests:
    bad = tests["failures"] + tests["errors"]
    goals.append(
      _goal(
        "tests marked gpu_ok, JAX on the device",
        f"{tests['tests'] - bad - tests['skipped']} passed, {bad} failed, "
        f"{tests['skipped']} skipped",
        "all pass",
        bad == 0 and "cut_after_s" not in tests,
        (f"cut after {tests['cut_after_s']} s; " if "cut_after_s" in tests else "")
        + ", ".join(tests.get("failed", [])[:5]),
      )
    )
  elif "collected" in tests:
    goals.append(
      _goal(
        "tests marked gpu_ok",
        f"{tests['collected']} collected",
        "all pass",
        None,
        "dry run: collected only",
      )
    )
  else:
    goals.append(_goal("tests marked gpu_ok", None, "all pass", None, _missing(tests)))
  return goals


def _feed_advice(path: str, feed: dict, speed: dict) -> str:
  """Which path a user short of input should take, with its figure."""
  if path == "cached_features":
    return (
      "hold the feature clips in device memory (25 KB a frame in float16) and gather "
      "batches on the device instead of reading records on the host"
    )
  features = feed.get("cached_features", {}).get("clips_per_s")
  features_step = speed.get("cached_features", {}).get("clips_per_s")
  if path != "cached_features" and features and features_step and features >= features_step:
    return (
      f"train on cached features (model.input_mode=features): fed {features:.0f} clips/s "
      f"for a step that takes {features_step:.0f}"
    )
  return "decode and augment on the device (uint8 clips in, augmentation inside the step)"


def _verdict(goal: dict) -> str:
  return {True: "met", False: "**missed**", None: "not measured"}[goal["met"]]


def render(result: dict | None) -> str:
  """The GPU section's body (between the markers)."""
  if result is None:
    return (
      "**Not run yet**: no session has been lent a device. Every part runs on this CPU "
      "with a tiny model in the test suite (tests/test_device_check.py), which is no "
      "measurement. To run it: `bash benchmarks/device/prepare.sh` here, then the device "
      f"tool's `{DEVICE_RUN}`, then `python -m benchmarks.device.restore FILES_AT "
      "--save=benchmarks/device/results.json && python -m benchmarks.device.report "
      "benchmarks/device/results.json` (benchmarks/device/README.md)."
    )
  m = result["machine"]
  versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
  lines = [
    f"Machine: {m.get('gpu') or 'no GPU seen'}; {m['cpu_count']} cores; Python {m['python']}, "
    f"{versions}. Run {result['date']}"
    + (" (DRY RUN on the CPU, tiny sizes: not a measurement)" if result.get("dry_run") else "")
    + f", {result.get('elapsed_s', 0):.0f} s, `{result.get('command', DEVICE_RUN)}`.",
    "",
    "| figure | value | goal | met | note |",
    "|---|---|---|---|---|",
  ]
  for goal in evaluate(result):
    value = "-" if goal["value"] is None else goal["value"]
    lines.append(
      f"| {goal['name']} | {value} | {goal['goal']} | {_verdict(goal)} | {goal['reason']} |"
    )
  speed = _part(result, "speed_jax")
  rows = [(k, v) for k, v in speed.items() if isinstance(v, dict) and "clips_per_s" in v]
  if rows:
    lines += [
      "",
      "| JAX step | clips/s | step (ms) | GFLOP/step | MFU | peak memory (GiB) | compile (s) |",
      "|---|---|---|---|---|---|---|",
    ]
    for key, v in rows:
      lines.append(
        f"| {key} ({v['batch_clips']} x {v['frames_per_clip']} frames, {v['dtype']}) | "
        f"{v['clips_per_s']:.1f} | {1000 * v['step_s']:.2f} | {v['step_gflop']:.1f} | "
        f"{100 * v['mfu']:.1f}% | {v.get('peak_memory_gib')} | {v['compile_s']} |"
      )
  torch_part = _part(result, "speed_torch")
  same = speed.get(f"paper_b{torch_part.get('batch_clips')}", {})
  for key in ("eager", "compiled"):
    v = torch_part.get(key, {})
    if "clips_per_s" in v:
      # The same model and step: XLA's FLOP count of the JAX step at the same batch.
      gflop = same.get("step_gflop")
      mfu = "-"
      if gflop and speed.get("matmul_peak_tflops"):
        mfu = f"{100 * gflop / v['step_s'] / 1e3 / speed['matmul_peak_tflops']:.1f}%"
      lines.append(
        f"| torch {key} ({torch_part['batch_clips']} clips, {torch_part['autocast']}, "
        f"channels_last) | {v['clips_per_s']:.1f} | {1000 * v['step_s']:.2f} | "
        f"{gflop or '-'} | {mfu} | {v.get('peak_memory_gib')} | {v['first_step_s']} |"
      )
  return "\n".join(lines)


def write_section(text: str, path=BENCHMARKS_MD) -> None:
  path = pathlib.Path(path)
  doc = path.read_text()
  block = f"{START}\n{text}\n{END}"
  pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
  if not pattern.search(doc):
    raise SystemExit(f"{path} has no {START} ... {END} section")
  path.write_text(pattern.sub(lambda _: block, doc, count=1))


def summary_lines(result: dict) -> str:
  """The short table check.py prints last (the device reply shows the end of the output)."""
  lines = [f"{'part':12} status   seconds"]
  for name, part in result["parts"].items():
    lines.append(f"{name:12} {part.get('status', '?'):8} {part.get('seconds', '-')}")
  for goal in result.get("goals") or []:
    lines.append(f"[{_verdict(goal):>12}] {goal['name']}: {goal['value']} (goal {goal['goal']})")
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("json", nargs="?", help="the run's check.json")
  parser.add_argument("--not-run", action="store_true", help="write the not-yet-run text")
  parser.add_argument("--benchmarks", default=str(BENCHMARKS_MD))
  args = parser.parse_args(argv)
  if not args.not_run and not args.json:
    parser.error("give the run's check.json, or --not-run")
  result = None if args.not_run else json.loads(pathlib.Path(args.json).read_text())
  write_section(render(result), args.benchmarks)
  print(f"rewrote the GPU section of {args.benchmarks}")


if __name__ == "__main__":
  main()
