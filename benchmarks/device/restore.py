"""Restores, on this CPU, the checkpoint and export a GPU check packed, and compares them
with what the device computed on the same inputs.

  python -m benchmarks.device.restore FILES_AT --save=benchmarks/device/results.json

FILES_AT is the folder the device call's files came back to (check.json and
checkpoint.tar.gz), or the tarball itself. With --save, check.json goes to that path
with this comparison added as `restore_here`, ready for `python -m
benchmarks.device.report`. Exits 1 when either disagrees past the tolerance.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tarfile
import tempfile

import numpy as np

from benchmarks.device.parts_model import RESTORE_PROB_ABS_TOL, TARBALL


def restore(tarball) -> dict:
  """{checkpoint_vs_device, export_vs_device, tolerance, agrees, step} for one tarball."""
  import jax

  from stress_jax import evaluate, export
  from stress_jax.models import build_model

  with tempfile.TemporaryDirectory(prefix="gpu_restore_") as tmp:
    with tarfile.open(tarball) as tar:
      tar.extractall(tmp, filter="data")
    root = pathlib.Path(tmp)
    with np.load(root / "reference.npz", allow_pickle=False) as npz:
      ref = {k: npz[k] for k in npz.files}
    inputs = (ref["inputs"], ref["landmarks"], ref["frame_mask"])
    workdir = root / "workdir"
    config = evaluate.read_config(workdir)
    trained_dtype = str(config.model.dtype)
    with config.unlocked():
      config.model.dtype = "float32"  # what a CPU evaluates in
    model = build_model(config.model)
    step = int(ref["checkpoint_step"])
    variables = evaluate.load_variables(workdir, step, model, int(config.data.num_frames))
    whole = export.model_functions(model, jax.tree.map(jax.numpy.asarray, variables))[0]
    here = np.asarray(jax.jit(whole)(*inputs)["probabilities"])
    exported = export.load_exported(root / "export")(*inputs)["probabilities"]
  result = {
    "step": step,
    "trained_dtype": trained_dtype,
    "backend_here": jax.default_backend(),
    "checkpoint_vs_device": float(np.abs(here - ref["probabilities"]).max()),
    "export_vs_device": float(np.abs(exported - ref["export_probabilities"]).max()),
    "tolerance": RESTORE_PROB_ABS_TOL,
    "command": "python -m benchmarks.device.restore FILES_AT",
  }
  result["agrees"] = bool(
    result["checkpoint_vs_device"] <= RESTORE_PROB_ABS_TOL
    and result["export_vs_device"] <= RESTORE_PROB_ABS_TOL
  )
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("path", help="the device call's files folder, or checkpoint.tar.gz")
  parser.add_argument("--save", help="write check.json with the comparison added here")
  args = parser.parse_args(argv)
  path = pathlib.Path(args.path)
  tarball = path / TARBALL if path.is_dir() else path
  if not tarball.is_file():
    print(f"error: no {TARBALL} at {path}", file=sys.stderr)
    return 2
  result = restore(tarball)
  print(json.dumps(result, indent=1))
  if args.save:
    check = json.loads((tarball.parent / "check.json").read_text())
    check["restore_here"] = result
    from benchmarks.device import report

    check["goals"] = report.evaluate(check)
    pathlib.Path(args.save).write_text(json.dumps(check, indent=1) + "\n")
  return 0 if result["agrees"] else 1


if __name__ == "__main__":
  sys.exit(main())
