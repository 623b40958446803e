"""Sizes and time budgets of the GPU check's parts, for a device run and for the CPU dry run.

A device run (one H200, 16 cores) may take 8 minutes and should leave time for a second
call inside the session's 15 minutes of device time, so the parts together get
`deadline_s` (400 s; with the machine's start about 8.5 minutes) and each its own budget;
a part that runs out is stopped and reports what it had. The dry run
(STRESS_JAX_DEVICE_DRY=1, tests/test_device_check.py) walks every part with a tiny model
on the CPU, so the script cannot rot.
"""

from __future__ import annotations

# In order of what matters most when time runs short: correctness first, then speed.
PARTS = ("parity", "train", "speed_jax", "speed_torch", "streaming", "pipeline", "pytest")

# Seconds each part may take on the device (its subprocess is killed after that).
BUDGET_S = dict(
  parity=30,
  train=60,
  speed_jax=115,
  speed_torch=75,
  streaming=20,
  pipeline=50,
  pytest=50,
)

# A tiny StressNet for the dry run: the code paths of the paper model at a fraction of
# its work.
TINY_MODEL = dict(
  stem_width=8,
  stage_widths=(8, 8, 16),
  stage_blocks=(1, 1, 1),
  head_width=16,
  attention_hidden=8,
  landmark_hidden=8,
)

FULL = dict(
  dry=False,
  deadline_s=400,
  model_overrides={},
  paper_frames=48,
  demo_frames=16,
  parity_clips=2,
  # stress_faces/synthetic_small: 12 subjects x 18 clips of 8 frames, which a small
  # model learns within tens of steps.
  train_data="stress_faces/synthetic_small",
  train_frames=8,
  train_steps=50,
  train_batch=16,
  peak_sizes=(8192,),
  peak_repeats=10,
  # Clips of 48 frames per step: 64 is 3,072 images of 112x112, 128 is 6,144. Each batch
  # is a compilation of its own (tens of seconds on a GPU), so two sizes.
  paper_batches=(64, 128),
  # The other steps the feed is compared with (demo, frozen trunk, cached features).
  other_steps=True,
  demo_batch=256,
  path_batch=64,  # frozen trunk and cached features
  torch_batch=64,
  torch_compile=True,
  repeats=10,
  warmup=3,
  stream_frames=500,
  pipeline_workers=16,
  pipeline_worker_feeds=("demo", "paper", "cached_features"),  # the others read in-process
  pipeline_batches=10,
  pipeline_batch=64,
  # Clips per synthetic subject for the pipeline's datasets (4 subjects x 3 classes).
  pipeline_clips=4,
  feature_frames_per_label=96,
  pytest_args=("-m", "gpu_ok", "tests"),
)

DRY = dict(
  FULL,
  dry=True,
  # Not a timing: on a loaded 2-core CPU the dry run's 20-odd XLA compilations can take
  # minutes, and a cut dry run tests nothing.
  deadline_s=900,
  model_overrides=TINY_MODEL,
  paper_frames=4,
  demo_frames=4,
  parity_clips=1,
  train_data="stress_faces/synthetic_tiny",
  train_frames=8,
  train_steps=6,
  train_batch=4,
  peak_sizes=(128,),
  peak_repeats=2,
  paper_batches=(1,),
  other_steps=False,  # the dry run times the paper step only (each step is 3 compilations)
  demo_batch=2,
  path_batch=1,
  torch_batch=1,
  torch_compile=False,
  repeats=2,
  warmup=1,
  stream_frames=6,
  # One grain worker process on one feed: the multiprocessing path the device takes,
  # at the cost of one worker's start.
  pipeline_workers=1,
  pipeline_worker_feeds=("demo",),
  pipeline_batches=2,
  pipeline_batch=2,
  pipeline_clips=1,
  feature_frames_per_label=4,
  # One marked file whose tests compile nothing (the rest run in the suite themselves).
  pytest_args=("-m", "gpu_ok", "tests/test_metrics.py"),
)


def settings(dry: bool) -> dict:
  return dict(DRY if dry else FULL)
