"""Build throughput of yonsei_stress on a generated database with the released layout.

  python benchmarks/yonsei_bench.py [--full] [--beam]

Writes random post-ReLU-like float32 maps (7x7x256, about half zeros, the rest mostly
0..8) as timestamp-named .npy files, builds `yonsei_stress/clips48` a few times and
reports frames per second (median over runs) and the projected time for the full
database (2,020,556 frames). The stages are also timed on their own, in this process:
header checks (planning), reading + float16 conversion, and TFDS's zlib encoding of the
`features` tensor, which the local build runs in the main process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import zlib

import numpy as np


def _timed_build(root: str, data_dir: str, **kwargs) -> tuple[float, dict]:
  import tensorflow_datasets as tfds

  from tfds_builders.yonsei_stress import YonseiStress, load_build_report

  beam_options = kwargs.pop("beam_options", None)
  builder = YonseiStress(data_dir=data_dir, config="clips48", **kwargs)
  started = time.perf_counter()
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=root, beam_options=beam_options)
  )
  return time.perf_counter() - started, load_build_report(builder.data_dir)


def _stage_rates(root: str) -> dict:
  from stress_jax.featuredb import clips, layout, yonsei

  spec = clips.ClipSpec(num_frames=48)
  recordings, _ = layout.scan_database(root, yonsei.LAYOUT)
  started = time.perf_counter()
  plans = []
  for recording in recordings:
    plans.extend(clips.plan_recording(recording, spec)[0])
  plan_s = time.perf_counter() - started
  frames = sum(len(plan.paths) for plan in plans)

  sample = plans[: max(1, len(plans) // 4)]
  started = time.perf_counter()
  examples, _, _ = clips.make_clips(sample, spec)
  read_s = time.perf_counter() - started
  sample_frames = sum(len(plan.paths) for plan in sample)

  started = time.perf_counter()
  for _, record in examples:
    zlib.compress(record["features"].tobytes())
  zlib_s = time.perf_counter() - started
  return dict(
    plan_frames_per_s=frames / plan_s,
    read_convert_frames_per_s=sample_frames / read_s,
    zlib_frames_per_s=len(examples) * spec.num_frames / zlib_s,
  )


def run(quick: bool = True, beam: bool = False, workers: int | None = None) -> dict:
  from stress_jax.featuredb import yonsei
  from tests.featuredb_fixtures import FRAME_BYTES, write_database

  num_subjects, frames_per_stage, runs = (2, 240, 3) if quick else (4, 1200, 3)
  workers = workers if workers is not None else len(os.sched_getaffinity(0))
  with tempfile.TemporaryDirectory(prefix="yonsei_bench_") as tmp:
    root = os.path.join(tmp, "db")
    started = time.perf_counter()
    total = write_database(root, num_subjects, frames_per_stage, seed=0)
    write_s = time.perf_counter() - started

    result: dict = dict(
      quick=quick,
      frames=total,
      subjects=num_subjects,
      database_mb=round(total * (FRAME_BYTES + 128) / 2**20, 1),
      write_s=round(write_s, 2),
      workers=workers,
      cpus=os.cpu_count(),
    )
    result.update({k: round(v, 1) for k, v in _stage_rates(root).items()})

    times = []
    for index in range(runs):
      seconds, report = _timed_build(root, os.path.join(tmp, f"local{index}"), num_workers=workers)
      times.append(seconds)
    local_fps = total / statistics.median(times)
    result.update(
      local_build_s=[round(t, 2) for t in times],
      local_frames_per_s=round(local_fps, 1),
      local_projected_full_h=round(yonsei.NUM_FRAMES_TOTAL / local_fps / 3600, 2),
      clips=report["totals"]["clips"],
      float16_max_rel_error=report["float16"]["max_rel_error"],
      problems=report["counts"],
    )

    if beam:
      from apache_beam.options.pipeline_options import PipelineOptions

      options = PipelineOptions.from_dictionary(
        dict(
          runner="DirectRunner",
          direct_num_workers=workers,
          direct_running_mode="multi_processing",
        )
      )
      seconds, _ = _timed_build(root, os.path.join(tmp, "beam"), beam_options=options)
      result.update(
        beam_build_s=round(seconds, 2),
        beam_frames_per_s=round(total / seconds, 1),
        beam_projected_full_h=round(yonsei.NUM_FRAMES_TOTAL / (total / seconds) / 3600, 2),
      )
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--full", action="store_true", help="a larger database (~1 GB)")
  parser.add_argument("--beam", action="store_true", help="also time Beam's DirectRunner")
  parser.add_argument("--workers", type=int, default=None)
  args = parser.parse_args()
  result = run(quick=not args.full, beam=args.beam, workers=args.workers)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  np.seterr(all="ignore")
  main()
