"""Performance figures of stress-jax: training, inference, input pipeline, ingest.

  python -m benchmarks.run            # full: the figures BENCHMARKS.md reports
  python -m benchmarks.run --quick    # minutes: smaller batches, fewer repeats, no diagnostics
  python -m benchmarks.run --only train_paper,torch_paper   # some sections only

Writes benchmarks/results.json and regenerates the table in BENCHMARKS.md (between
its results-table markers). Each figure is the median of several timed runs after
warm-up runs (the first of which compiles); the table names each figure's reference.
The sections and their workers are listed in benchmarks/registry.py; how a section
runs, and how to add one, is in benchmarks/harness.py.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from benchmarks import common, harness, registry
from stress_jax import jsonio


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--quick", action="store_true", help="smaller batches, fewer repeats, no diagnostic sections"
  )
  parser.add_argument(
    "--only", default="", help=f"comma-separated sections of: {', '.join(registry.SECTIONS)}"
  )
  parser.add_argument("--xla_flags", default="", help="extra XLA_FLAGS for the JAX sections")
  parser.add_argument("--dtype", default="", help="override model.dtype (float32/bfloat16)")
  parser.add_argument("--torch_threads", type=int, default=0, help="0 = every core")
  parser.add_argument("--output", default=str(harness.RESULTS))
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
  return parser


def main(argv=None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  if args.worker:
    result = registry.call_worker(args.worker, json.loads(args.settings))
    pathlib.Path(args.worker_out).write_text(jsonio.dumps(result))
    return 0

  settings = dict(common.SETTINGS[args.quick], quick=args.quick)
  settings["dtype"] = args.dtype or None
  settings["torch_threads"] = args.torch_threads or os.cpu_count()
  names = [n for n in args.only.split(",") if n] or list(registry.SECTIONS)
  unknown = sorted(set(names) - set(registry.SECTIONS))
  if unknown:
    parser.error(f"unknown sections {unknown}; known: {', '.join(registry.SECTIONS)}")
  results = harness.run(
    names,
    settings,
    only=bool(args.only),
    xla_flags=args.xla_flags,
    timeout=args.timeout,
    quiet_wait=args.quiet_wait if args.quiet_wait >= 0 else (0 if args.quick else 1200),
    output=pathlib.Path(args.output),
    markdown=not args.no_markdown,
  )
  print(
    json.dumps({k: v for k, v in results.items() if k not in ("sections", "machine")}, indent=1)
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
