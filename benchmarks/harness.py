"""Runs benchmark sections, one subprocess each, and merges their results into results.json.

Each section runs in its own process (`python -m benchmarks.run --worker NAME`), so its
peak RSS is its own, XLA flags apply per section and one failing section does not lose
the others. Before each section the harness can wait for other jobs to quiet down, and
it records the machine's load average around it. A run with --only merges its sections
into the previous results.json; report.summarise then recomputes the top-level figures.

Adding a section:
  1. a module in benchmarks/ with `def worker_NAME(settings: dict, **kwargs) -> dict`
     (settings: common.SETTINGS[quick] plus quick, dtype, torch_threads); it imports
     benchmarks.common for timing and set-ups, never the harness, report or registry;
  2. an entry in registry.SECTIONS: Section("benchmarks.MODULE:worker_NAME", kwargs,
     env=..., where=..., diagnostic=...);
  3. one or more Row(...) in benchmarks/rows.py whose `needs` name its figures
     (s.NAME.key); a figure that combines sections goes in report.summarise.
Then `python -m benchmarks.run --only NAME` runs it and regenerates the table.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

from benchmarks import registry, report
from benchmarks.common import load_average
from stress_jax import jsonio, xla_cpu

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"


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


def _section_env(name: str, xla_flags: str) -> dict:
  env = dict(os.environ, **registry.SECTIONS[name].env)
  if xla_cpu.OPT_OUT in env:
    # This process's XLA_FLAGS already hold stress_jax's additions; hand on the user's.
    env.pop("XLA_FLAGS", None)
    if xla_cpu.users_flags():
      env["XLA_FLAGS"] = xla_cpu.users_flags()
  if xla_flags:
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + xla_flags).strip()
  return env


def run_section(
  name: str, settings: dict, xla_flags: str, timeout: float, quiet_wait: float = 0.0
) -> dict:
  """One section in its own subprocess: its dict, or {"error": last lines of its output}."""
  quiet = wait_until_quiet(0.15, quiet_wait) if quiet_wait > 0 else {}
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
    out_path = pathlib.Path(handle.name)
  command = [sys.executable, "-m", "benchmarks.run", "--worker", name]
  command += ["--worker_out", str(out_path), "--settings", json.dumps(settings)]
  load_before = load_average()
  started = time.perf_counter()
  try:
    process = subprocess.run(
      command,
      cwd=ROOT,
      env=_section_env(name, xla_flags),
      timeout=timeout,
      capture_output=True,
      text=True,
    )
  except subprocess.TimeoutExpired:
    out_path.unlink(missing_ok=True)
    return {"error": f"timed out after {timeout:.0f} s", "load_average_1m_before": load_before}
  seconds = time.perf_counter() - started
  if process.returncode != 0:
    out_path.unlink(missing_ok=True)
    tail = (process.stderr or process.stdout).strip().splitlines()[-15:]
    return {"error": "\n".join(tail), "load_average_1m_before": load_before}
  result = json.loads(out_path.read_text())
  out_path.unlink()
  result["section_wall_s"] = round(seconds, 1)
  result.update(quiet)
  result["load_average_1m_before"] = load_before
  result["load_average_1m_after"] = load_average()
  if xla_flags:
    result["xla_flags"] = xla_flags
  return result


def machine_info() -> dict:
  import flax
  import jax
  import numpy as np

  model, flags = "unknown", []
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


def _brief(result: dict) -> str:
  if "error" in result:
    return result["error"].splitlines()[-1]
  keys = ("mfu", "clips_per_s", "frames_per_s", "float32_gflops", "local_frames_per_s", "keep")
  return "; ".join(f"{k}={result[k]}" for k in keys if k in result)


def run(
  names: list[str],
  settings: dict,
  *,
  only: bool,
  xla_flags: str = "",
  timeout: float = 3600,
  quiet_wait: float = 0.0,
  output: pathlib.Path = RESULTS,
  markdown: bool = True,
) -> dict:
  """Runs `names` (all of them if `only`, else those registry.runs_here includes).

  With `only`, the sections are merged into the previous results at `output`. Writes
  `output` and, unless markdown is False, the BENCHMARKS.md table.
  """
  previous = json.loads(output.read_text()) if only and output.exists() else {}
  sections = dict(previous.get("sections", {}))
  started = time.perf_counter()
  while quiet_wait and load_average() >= 1.2 and time.perf_counter() - started < quiet_wait:
    print(f"waiting for a quiet machine: 1-minute load {load_average()}", flush=True)
    time.sleep(30)
  waited = round(time.perf_counter() - started, 1)
  start_load = load_average()
  for name in names:
    backend = sections.get("peak", {}).get("backend", "cpu")
    if not only and not registry.runs_here(name, backend, settings["quick"]):
      continue
    print(f"[{name}] load {load_average()} ...", flush=True)
    sections[name] = run_section(name, settings, xla_flags, timeout, min(quiet_wait, 300))
    wall = sections[name].get("section_wall_s", "-")
    print(f"[{name}] {wall} s: {_brief(sections[name])}", flush=True)
  machine = machine_info()
  command = "python -m benchmarks.run" + (" --quick" if settings["quick"] else "")
  results = {
    "machine": machine,
    "quick": settings["quick"],
    "settings": settings,
    "command": command,
    "sections": sections,
    "load_average_1m_start": start_load,
    "waited_for_quiet_s": waited,
  }
  if only and "machine" in previous:
    # The table describes the run most sections come from; a merged --only run is
    # listed beside it, with its own machine, date and settings.
    merged = [m for m in previous.get("merged", []) if set(m["sections"]) - set(names)]
    merged.append(
      {"sections": names, "command": f"{command} --only {','.join(names)}", "machine": machine}
    )
    results.update(
      {k: previous[k] for k in ("machine", "quick", "settings", "command") if k in previous},
      merged=merged,
    )
  results.update(report.summarise(sections))
  results["load_average_1m_end"] = load_average()
  jsonio.write(output, results)
  if markdown:
    report.update_markdown(results)
  return results
