"""Sections `pipeline_demo` and `pipeline_paper`: the grain input pipeline's clips/s.

The demo figure reads the built stress_faces/synthetic dataset; the paper figure a
small 48-frame synthetic dataset built in a temporary directory. Either is compared
with the training step's consumption (report.summarise).
"""

from __future__ import annotations

import statistics
import tempfile
import time

from benchmarks import common


def worker_pipeline(s: dict, config_name: str) -> dict:
  import jax

  from stress_jax import input_pipeline

  config = common.config(config_name)
  with tempfile.TemporaryDirectory(prefix="bench48_") as tmp:
    if config_name == "demo":
      from stress_jax.data import build

      build.ensure_built(config.data)
      handle = input_pipeline.open_dataset(config.data)
      source = f"{config.data.name} (built, {handle.num_examples(handle.subjects)} clips)"
      batch_size = int(config.input.batch_size)
    else:
      handle, build_s = _small_video48_like(tmp)
      source = (
        f"synthetic 48-frame stress_faces built in a temp dir "
        f"({handle.num_examples(handle.subjects)} clips, {build_s:.0f} s to build)"
      )
      batch_size = s["paper_batch"]
    with config.unlocked():
      config.input.batch_size = batch_size
    iterator = common.train_batches(handle, config.input, num_epochs=1000)
    for _ in range(3):
      next(iterator)
    batches = s["pipeline_batches"]
    times = []
    for _ in range(batches):
      started = time.perf_counter()
      batch = next(iterator)
      # What the step needs on the device, as the training loop hands it over.
      jax.block_until_ready(
        input_pipeline.to_global(batch, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
      )
      times.append(time.perf_counter() - started)
  # Median per-batch time over a steady stream; the total gives the same to within noise.
  per_batch = statistics.median(times)
  return {
    "config": config_name,
    "source": source,
    "batch_clips": batch_size,
    "frames_per_clip": handle.num_frames,
    "num_workers": int(config.input.num_workers),
    "read_threads": int(config.input.get("read_threads", 2)),
    "augment": True,
    "clips_per_s": round(batch_size / per_batch, 2),
    "clips_per_s_mean": round(batch_size * batches / sum(times), 2),
    "frames_per_s": round(batch_size * handle.num_frames / per_batch, 1),
  }


def _small_video48_like(tmp: str):
  """A small synthetic dataset with the paper's 48-frame JPEG clips: (handle, build s)."""
  return common.synthetic_handle(
    tmp, "bench48", num_subjects=2, clips_per_class_per_subject=4, num_frames=48, clip_stride=24
  )
