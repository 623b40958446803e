"""The GPU check's speed parts: the JAX step, the torch step, the host input feed, and
the marked tests.

Each part is `fn(s, out, tmp)` as in parts_model. Ratios between parts (JAX over torch,
feed over demand, MFU of the torch step) are taken in benchmarks/device/report.py, since
each part runs in its own process.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np

from benchmarks.device import settings
from benchmarks.device.parts_model import accelerator, config


def _peak_memory_gib(device) -> float | None:
  stats = device.memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else round(peak / 2**30, 2)


def _time_loop(step_fn, repeats: int, rounds: int = 3) -> float:
  """Median over `rounds` of (time of `repeats` queued steps, waited for at the end) / repeats."""
  per_step = []
  for _ in range(rounds):
    started = time.perf_counter()
    step_fn(repeats)
    per_step.append((time.perf_counter() - started) / repeats)
  return statistics.median(per_step)


def jax_step(s: dict, cfg, batch_size: int) -> dict:
  """One config's jitted train step (the Trainer's) timed on a synthetic batch."""
  import jax

  from benchmarks import common
  from benchmarks.frozen_trunk import host_batch
  from stress_jax import input_pipeline, steps, trainer
  from stress_jax.models import build_model

  model = build_model(cfg.model)
  total = 1000
  tx = steps.make_optimizer(cfg.optim, total, bool(cfg.model.freeze_trunk))
  schedule = steps.learning_rate_schedule(cfg.optim, total)
  dtype = steps.compute_dtype(cfg.model)
  host = host_batch(cfg.model, batch_size, int(cfg.data.num_frames))
  jitted = trainer.jit_steps(model, tx, schedule, dtype, trainer.make_mesh(), host)
  batch = input_pipeline.to_global(host, jitted.data_sharding)
  state = jitted.init(jax.random.key(0))
  rng = jax.random.key(1)
  started = time.perf_counter()
  compiled = jitted.train_step.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - started
  flops = common.flops(compiled)
  holder = {"state": state}

  def run(n):
    metrics = None
    for _ in range(n):
      # The compiled executable itself: calling the jitted function would compile again.
      holder["state"], metrics = compiled(holder["state"], batch, rng)
    jax.block_until_ready(metrics["loss"])
    return metrics

  loss = float(run(int(s["warmup"]))["loss"])
  step_s = _time_loop(run, int(s["repeats"]))
  return {
    "batch_clips": batch_size,
    "frames_per_clip": int(cfg.data.num_frames),
    "dtype": str(cfg.model.dtype),
    "step_s": step_s,
    "clips_per_s": round(batch_size / step_s, 2),
    "step_gflop": round(flops / 1e9, 2),
    "achieved_tflops": round(flops / step_s / 1e12, 3),
    "compile_s": round(compile_s, 1),
    "loss_finite": bool(np.isfinite(loss)),
  }


def speed_jax(s: dict, out, tmp: str) -> None:
  """(f) paper config in bf16 at batches that fill the chip; MFU against this run's peak."""
  del tmp
  from benchmarks import common

  accel, _ = accelerator()
  dtype = "float32" if s["dry"] else "bfloat16"
  peak = common.matmul_peak(int(s["peak_repeats"]), tuple(s["peak_sizes"]), dtype)
  peak_tflops = peak["gflops"] / 1e3
  out.update(
    backend=accel.platform,
    device_kind=accel.device_kind,
    matmul_dtype=dtype,
    matmul_peak_tflops=round(peak_tflops, 2),
    matmul_peak_by_size=peak["by_size"],
  )

  def record(key, name, batch, **overrides):
    try:
      result = jax_step(s, config(name, s, dtype, **overrides), batch)
    except Exception as error:  # out of memory at the largest batch, say
      out[key] = {"batch_clips": batch, "error": f"{type(error).__name__}: {error}"[:500]}
      return
    result["mfu"] = round(result["achieved_tflops"] / peak_tflops, 4)
    result["peak_memory_gib"] = _peak_memory_gib(accel)
    out[key] = result

  # Most wanted first, should the budget run out: the batch torch is compared at, the
  # steps the input feed is compared with, then the larger batches. The device's peak
  # memory only grows, so each figure is the peak up to and including that step.
  first, *larger = sorted(s["paper_batches"])
  record(f"paper_b{first}", "paper", first)
  if s["other_steps"]:
    record("cached_features", "paper", int(s["path_batch"]), input_mode="features")
    record("frozen_trunk", "paper", int(s["path_batch"]), freeze_trunk=True)
    record("demo", "demo", int(s["demo_batch"]))
  for batch in larger:
    record(f"paper_b{batch}", "paper", batch)


def speed_torch(s: dict, out, tmp: str) -> None:
  """(f) the same model and AdamW step in torch: channels_last, bf16 autocast; eager and
  torch.compile."""
  del tmp
  import torch
  import torch.nn.functional as F

  from benchmarks import common
  from benchmarks import torch_reference as ref
  from stress_jax.models import StressNetConfig

  device = ref.default_device()
  dry = s["dry"]
  if device.type == "cuda":
    torch.backends.cudnn.benchmark = True  # torch at its best: tuned convolutions
  if device.type == "cpu":
    # The dry run on a shared CPU: torch's spinning thread pool against other processes
    # turns a tiny step into seconds.
    torch.set_num_threads(1)
  cfg = config("paper", s, "float32")
  batch_size = int(s["torch_batch"])
  frames = int(cfg.data.num_frames)
  torch.manual_seed(0)
  out.update(
    torch_version=torch.__version__,
    device=device.type,
    batch_clips=batch_size,
    frames_per_clip=frames,
    autocast="off (dry run)" if dry else "bfloat16",
    layout="channels_last",
  )
  host = common.synthetic_batch(batch_size, frames)
  batch = ref.to_torch(host, device)
  clip_norm = float(cfg.optim.clip_norm)

  def make(compiled: bool):
    model = ref.StressNet(StressNetConfig.from_any(cfg.model)).to(device)
    model.channels_last = True
    model = model.to(memory_format=torch.channels_last)
    optimizer, schedule = ref.make_optimizer(model, cfg.optim, 1000)
    forward = torch.compile(model) if compiled else model

    def step():
      model.train()
      with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not dry):
        logits, _ = forward(ref.preprocess(batch), batch["landmarks"], batch["frame_mask"])
        loss = F.cross_entropy(logits.float(), batch["label"])
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
      optimizer.step()
      schedule.step()
      return loss

    return model, step

  def measure(key: str, compiled: bool) -> None:
    if device.type == "cuda":
      torch.cuda.empty_cache()
      torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    model, step = make(compiled)
    loss = step()
    ref.synchronize(device)
    first_s = time.perf_counter() - started
    for _ in range(int(s["warmup"])):
      loss = step()
    ref.synchronize(device)

    def run(n):
      for _ in range(n):
        step()
      ref.synchronize(device)

    step_s = _time_loop(run, int(s["repeats"]))
    result = {
      "step_s": step_s,
      "clips_per_s": round(batch_size / step_s, 2),
      "first_step_s": round(first_s, 1),
      "loss_finite": bool(torch.isfinite(loss).item()),
      "params": ref.count_parameters(model),
    }
    if device.type == "cuda":
      result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    out[key] = result

  measure("eager", compiled=False)
  if s["torch_compile"]:
    measure("compiled", compiled=True)
  else:
    out["compiled"] = {"skipped": "dry run (torch.compile takes minutes on a CPU)"}


def _synthetic_handle(tmp: str, frames: int, clips: int):
  """A small simulated stress_faces set of `frames`-frame JPEG clips, and its handle."""
  from benchmarks import common

  handle, _ = common.synthetic_handle(
    tmp,
    f"feed{frames}",
    num_subjects=4,
    clips_per_class_per_subject=clips,
    num_frames=frames,
    clip_stride=frames,
  )
  return handle


def _feature_handle(tmp: str, frames: int, frames_per_label: int):
  """A feature-map database of random float16 stage-3 maps, built as feature_maps/clipsT."""
  from stress_jax import input_pipeline
  from stress_jax.configs import features
  from stress_jax.data import build
  from stress_jax.featuredb.layout import FEATURE_SHAPE

  root = os.path.join(tmp, "featuredb")
  rng = np.random.default_rng(0)
  for subject in range(4):
    for label in ("low", "mid", "high"):
      folder = os.path.join(root, f"s{subject:02d}", label)
      os.makedirs(folder)
      maps = np.maximum(rng.standard_normal((frames_per_label, *FEATURE_SHAPE)), 0)
      for index, frame in enumerate(maps.astype(np.float16)):
        np.save(os.path.join(folder, f"{index:06d}.npy"), frame)
  data = features.get_config(str(frames)).data
  data.data_dir, data.manual_dir = os.path.join(tmp, "feature_tfds"), root
  build.ensure_built(data)
  return input_pipeline.open_dataset(data)


def _feed(s: dict, handle, cfg, key: str) -> dict:
  """clips/s of the training input pipeline (grain, s['pipeline_workers'] processes)."""
  import jax

  from benchmarks import common
  from stress_jax import input_pipeline

  batch_size = int(s["pipeline_batch"])
  with cfg.unlocked():
    cfg.input.batch_size = batch_size
    cfg.input.num_workers = int(s["pipeline_workers"]) if key in s["pipeline_worker_feeds"] else 0
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  iterator = common.train_batches(handle, cfg.input, num_epochs=100000)
  for _ in range(3):  # starts the workers
    jax.block_until_ready(input_pipeline.to_global(next(iterator), sharding))
  count = int(s["pipeline_batches"])
  started = time.perf_counter()
  for _ in range(count):
    # What the step needs on the device, as the training loop hands it over.
    jax.block_until_ready(input_pipeline.to_global(next(iterator), sharding))
  seconds = time.perf_counter() - started
  return {
    "batch_clips": batch_size,
    "frames_per_clip": int(handle.num_frames),
    "workers": int(cfg.input.num_workers),
    "clips_per_s": round(batch_size * count / seconds, 1),
  }


def pipeline(s: dict, out, tmp: str) -> None:
  """(g) the host input feed in clips/s for the demo, paper and cached-feature inputs.

  The frozen-trunk path reads the paper's pixel clips: its feed is the paper figure.
  """
  # The grain workers import JAX; none of them may take the GPU's memory for itself.
  os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  out["cores"] = os.cpu_count()
  for key, name in (("demo", "demo"), ("paper", "paper")):
    cfg = config(name, s)
    frames = int(cfg.data.num_frames)
    started = time.perf_counter()
    handle = _synthetic_handle(os.path.join(tmp, key), frames, int(s["pipeline_clips"]))
    result = {"build_s": round(time.perf_counter() - started, 1)}
    result.update(_feed(s, handle, cfg, key))
    out[key] = result
  cfg = config("paper", s, input_mode="features")
  started = time.perf_counter()
  handle = _feature_handle(tmp, int(cfg.data.num_frames), int(s["feature_frames_per_label"]))
  result = {"build_s": round(time.perf_counter() - started, 1)}
  with cfg.unlocked():  # maps of a flipped face are not flipped maps
    cfg.input.augment.flip = False
    cfg.input.augment.brightness = cfg.input.augment.contrast = 0.0
  result.update(_feed(s, handle, cfg, "cached_features"))
  out["cached_features"] = result


def pytest_part(s: dict, out, tmp: str) -> None:
  """(a) the tests marked gpu_ok, with the accelerator as JAX's default backend."""
  env = dict(os.environ)
  # tests/conftest.py defaults JAX to the CPU; here the accelerator comes first. Float32
  # matmuls at full precision, as on the CPU (GPUs default to TF32-like passes).
  env["JAX_PLATFORMS"] = "cpu" if s["dry"] else "cuda,cpu"
  env["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
  junit, log = os.path.join(tmp, "junit.xml"), os.path.join(tmp, "pytest.log")
  # -q lists node ids when collecting; -v prints each test's outcome as it finishes.
  verbosity = "-q" if "--collect-only" in s["pytest_args"] else "-v"
  args = ["-m", "pytest", verbosity, "-p", "no:cacheprovider", *s["pytest_args"]]
  out["command"] = "python " + " ".join(args)
  # Inside the part's own budget, so that a cut run still counts what finished.
  budget = max(5, int(s.get("part_timeout_s", settings.BUDGET_S["pytest"])) - 5)
  with open(log, "w") as stdout:
    try:
      code = subprocess.run(
        [sys.executable, *args, f"--junitxml={junit}"],
        env=env,
        timeout=budget,
        stdout=stdout,
        stderr=subprocess.STDOUT,
      ).returncode
    except subprocess.TimeoutExpired:
      code = None
  text = open(log).read()
  print(text[-3000:], flush=True)
  out["returncode"] = code
  if "--collect-only" in s["pytest_args"]:
    out["collected"] = sum(1 for line in text.splitlines() if "::" in line)
  elif code is not None and os.path.exists(junit):
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    out.update(**counts)
    out["failed"] = [
      f"{case.get('classname')}::{case.get('name')}"
      for case in suite.iter("testcase")
      if case.find("failure") is not None or case.find("error") is not None
    ][:30]
  else:  # cut short: what -v printed so far
    outcomes = {k: 0 for k in ("PASSED", "FAILED", "ERROR", "SKIPPED")}
    failed = []
    for line in text.splitlines():
      for outcome in outcomes:
        if "::" in line and f" {outcome}" in line:
          outcomes[outcome] += 1
          if outcome in ("FAILED", "ERROR"):
            failed.append(line.split(" ")[0])
    out.update(
      tests=sum(outcomes.values()),
      failures=outcomes["FAILED"],
      errors=outcomes["ERROR"],
      skipped=outcomes["SKIPPED"],
      failed=failed[:30],
      cut_after_s=budget,
    )
  if code is None:
    raise TimeoutError(f"pytest ran past {budget} s; counts are of the tests that finished")
  if code != 0:
    raise RuntimeError(f"pytest exited {code}: {text[-300:]}")
