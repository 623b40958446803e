"""Runs some of the GPU check's parts in this process, writing their results as it goes.

  python -m benchmarks.device.worker --parts=parity,train --settings=FILE --results=FILE

check.py starts one worker per part (one per dry run) and kills it when its budget is
spent; every figure a part has reached by then is already in the results file, which is
rewritten (atomically) after each one.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback


class Results:
  """{part: {key: value}}, written to `path` after every change."""

  def __init__(self, path: str):
    self.path = path
    self.data: dict = {}

  def part(self, name: str) -> PartResult:
    self.data[name] = {}
    return PartResult(self, name)

  def flush(self) -> None:
    tmp = f"{self.path}.tmp"
    with open(tmp, "w") as f:
      json.dump(self.data, f, indent=1, default=_plain)
    os.replace(tmp, self.path)


class PartResult:
  """One part's figures: `result[key] = value` is on disk when the assignment returns."""

  def __init__(self, results: Results, name: str):
    self._results, self._name = results, name

  def __setitem__(self, key, value) -> None:
    self._results.data[self._name][key] = value
    self._results.flush()

  def __getitem__(self, key):
    return self._results.data[self._name][key]

  def get(self, key, default=None):
    return self._results.data[self._name].get(key, default)

  def update(self, **values) -> None:
    self._results.data[self._name].update(values)
    self._results.flush()


def _plain(value):
  """numpy scalars and arrays, tuples of them: what json cannot write by itself."""
  if hasattr(value, "tolist"):
    return value.tolist()
  raise TypeError(f"not JSON: {type(value).__name__}")


def part_functions() -> dict:
  from benchmarks.device import parts_model, parts_speed

  return {
    "parity": parts_model.parity,
    "train": parts_model.train,
    "streaming": parts_model.streaming,
    "speed_jax": parts_speed.speed_jax,
    "speed_torch": parts_speed.speed_torch,
    "pipeline": parts_speed.pipeline,
    "pytest": parts_speed.pytest_part,
  }


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--parts", required=True)
  parser.add_argument("--settings", required=True)
  parser.add_argument("--results", required=True)
  args = parser.parse_args()
  from absl import flags

  # grain reads absl flags when it starts worker processes; train.py parses them through
  # absl.app, this script through argparse.
  flags.FLAGS.mark_as_parsed()
  with open(args.settings) as f:
    s = json.load(f)
  functions = part_functions()
  results = Results(args.results)
  for name in args.parts.split(","):
    out = results.part(name)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"gpu_check_{name}_") as tmp:
      try:
        functions[name](s, out, tmp)
        out["status"] = "ok"
      except Exception as error:  # a part that breaks must not stop the others
        traceback.print_exc()
        out.update(status="error", error=f"{type(error).__name__}: {error}"[:2000])
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(f"[gpu check] {name}: {out['status']} in {out['seconds']} s", flush=True)


if __name__ == "__main__":
  main()
