"""The GPU check: every part of issue 28 in one call, one JSON and one log under --out.

  python -m benchmarks.device.check --out=$OUT          # on the device (check.sh runs it)
  python -m benchmarks.device.check --out=/tmp/dry --dry  # the CPU dry run (tiny sizes)
  python -m benchmarks.device.check --out=$OUT --parts=speed_torch,pytest   # a rerun

Each part runs in its own worker process (benchmarks/device/worker.py) with its own time
budget (settings.BUDGET_S) inside the run's deadline; check.json is rewritten after each
part, so a run cut short still reports every part it finished. The dry run puts all parts
in one worker, to keep it within seconds.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import time

from benchmarks.device import report, settings

RESULT_FILE = "check.json"


def machine() -> dict:
  """What ran the check, read without starting a JAX backend in this process."""
  versions = {}
  for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "torch", "numpy", "grain"):
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  gpu = None
  try:
    query = "--query-gpu=name,driver_version,memory.total"
    out = subprocess.run(
      ["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20
    )
    gpu = out.stdout.strip() or None
  except (OSError, subprocess.TimeoutExpired):
    pass
  return {
    "gpu": gpu,
    "cpu_count": os.cpu_count(),
    "processor": platform.processor() or platform.machine(),
    "python": platform.python_version(),
    "versions": versions,
  }


def run_group(parts, s, out_dir, timeout) -> tuple[dict, str]:
  """Runs a worker over `parts`; returns (its results, 'ok' | 'timeout' | 'exit N')."""
  settings_path = os.path.join(out_dir, ".settings.json")
  results_path = os.path.join(out_dir, ".results.json")
  with open(settings_path, "w") as f:
    json.dump({**s, "out_dir": out_dir}, f)
  if os.path.exists(results_path):
    os.remove(results_path)
  command = [
    sys.executable,
    "-m",
    "benchmarks.device.worker",
    f"--parts={','.join(parts)}",
    f"--settings={settings_path}",
    f"--results={results_path}",
  ]
  # Its own process group, so a timeout also ends what the part started (pytest, grain
  # workers, torch.compile's compilers).
  process = subprocess.Popen(command, start_new_session=True)
  try:
    code = process.wait(timeout=timeout)
    status = "ok" if code == 0 else f"exit {code}"
  except subprocess.TimeoutExpired:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    status = "timeout"
  results = {}
  if os.path.exists(results_path):
    with open(results_path) as f:
      results = json.load(f)
  for path in (settings_path, results_path):
    if os.path.exists(path):
      os.remove(path)
  return results, status


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="folder for check.json (and the tarball)")
  parser.add_argument("--dry", action="store_true", help="tiny sizes on the CPU")
  parser.add_argument("--parts", default=",".join(settings.PARTS))
  parser.add_argument("--deadline", type=float, default=0, help="seconds for all parts")
  args = parser.parse_args(argv)
  parts = [p for p in args.parts.split(",") if p]
  unknown = sorted(set(parts) - set(settings.PARTS))
  if unknown:
    parser.error(f"unknown parts {unknown}; the parts are {', '.join(settings.PARTS)}")
  s = settings.settings(args.dry)
  os.makedirs(args.out, exist_ok=True)
  started = time.monotonic()
  deadline = started + (args.deadline or s["deadline_s"])
  result = {
    "format": "stress-jax gpu check 1",
    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    "command": ("STRESS_JAX_DEVICE_DRY=1 " if args.dry else "") + "bash benchmarks/device/check.sh",
    "dry_run": bool(args.dry),
    "machine": machine(),
    "settings": {k: v for k, v in s.items() if k != "pytest_args"},
    "parts": {},
  }
  path = os.path.join(args.out, RESULT_FILE)

  def write():
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    try:
      result["goals"] = report.evaluate(result)
    except Exception as error:  # figures of an unforeseen shape must not lose the run
      result["goals"] = []
      result["goals_error"] = f"{type(error).__name__}: {error}"

    with open(path + ".tmp", "w") as f:
      json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)

  write()
  groups = [parts] if args.dry else [[p] for p in parts]
  for group in groups:
    remaining = deadline - time.monotonic()
    if remaining < 10:
      for name in group:
        result["parts"][name] = {"status": "skipped", "error": "no time left in the deadline"}
      write()
      continue
    budget = sum(settings.BUDGET_S[p] for p in group)
    timeout = remaining if args.dry else min(budget, remaining)
    print(f"[gpu check] {','.join(group)} (up to {timeout:.0f} s)", flush=True)
    part_started = time.monotonic()
    results, status = run_group(group, {**s, "part_timeout_s": timeout}, args.out, timeout)
    for name in group:
      entry = results.get(name, {})
      if status == "timeout" and entry.get("status") is None:
        entry["status"] = "timeout"
        entry["error"] = f"stopped after its {timeout:.0f} s budget; figures above are partial"
      elif entry.get("status") is None:
        entry["status"] = "error"
        entry.setdefault("error", f"worker {status} before the part finished")
      entry.setdefault("seconds", round(time.monotonic() - part_started, 1))
      result["parts"][name] = entry
    write()
  print(report.summary_lines(result), flush=True)
  failed = [n for n, p in result["parts"].items() if p.get("status") != "ok"]
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
