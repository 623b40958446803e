"""What the section workers share: timing, synthetic batches, the jitted training and
streaming set-ups, FLOP counts and the matmul peak.

Workers import this module, never each other or the harness, so the benchmark
package has no import circle. The training set-up comes from
`stress_jax.trainer.jit_steps`, the same shardings and jitted steps as
`python train.py`, on a 1-device (or all-devices) `data` mesh.
"""

from __future__ import annotations

import os
import resource
import statistics
import time

import numpy as np

# Before any JAX backend starts in a worker: stress_jax sets its XLA:CPU flags on
# import (stress_jax/xla_cpu.py), and every section, the plain-jit reference
# included, should run under the same ones.
import stress_jax  # noqa: F401

# Per-device training batch (clips) and timed repeats: (full run, --quick). The paper
# config's per-device batch is what fits a 2-core CPU in reasonable time; the demo
# config's is its own.
_SETTING_PAIRS = dict(
  paper_batch=(4, 2),
  demo_batch=(16, 16),
  train_repeats=(6, 3),
  train_warmup=(2, 2),
  infer_batch=(4, 2),
  stream_frames=(300, 100),
  pipeline_batches=(30, 8),
  peak_repeats=(9, 5),
  breakdown_repeats=(5, 3),
  profile_steps=(2, 1),
  e2e_seconds=(20.0, 5.0),
)
# quick (bool) -> the settings of that run.
SETTINGS = {
  quick: {name: pair[quick] for name, pair in _SETTING_PAIRS.items()} for quick in (False, True)
}


def median_time(fn, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
  """Median (and all) wall times of `repeats` calls of `fn` after `warmup` calls."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    fn()
    times.append(time.perf_counter() - started)
  return statistics.median(times), times


def rss_mb() -> float:
  # ru_maxrss is in KiB on Linux: the peak resident set of this (worker) process.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> float:
  return round(os.getloadavg()[0], 2)


def config(name: str, **model_overrides):
  """The demo or paper config, with `model_overrides` set on config.model.

  A "auto" compute dtype is resolved for this backend, as the Trainer does.
  """
  import jax

  from stress_jax.configs import demo, paper
  from stress_jax.trainer import resolve_dtype

  cfg = {"demo": demo, "paper": paper}[name].get_config()
  cfg.model.dtype = resolve_dtype(cfg.model.dtype, jax.default_backend())
  for key, value in model_overrides.items():
    setattr(cfg.model, key, value)
  return cfg


def synthetic_batch(batch: int, num_frames: int, seed: int = 0) -> dict:
  """A host batch shaped like the input pipeline's (DEVICE_KEYS), every frame valid."""
  rng = np.random.default_rng(seed)
  # Landmarks around a plausible face so the inter-ocular scaling sees real distances.
  base = rng.uniform(0.25, 0.75, (1, 1, 68, 2)).astype(np.float32)
  return {
    "inputs": rng.integers(0, 256, (batch, num_frames, 112, 112, 3), dtype=np.uint8),
    "landmarks": base + rng.normal(0, 0.01, (batch, num_frames, 68, 2)).astype(np.float32),
    "frame_mask": np.ones((batch, num_frames), bool),
    "label": rng.integers(0, 3, (batch,), dtype=np.int32),
    "photometric": np.tile(np.array([0.05, 1.1], np.float32), (batch, 1)),
    "valid": np.ones((batch,), bool),
  }


class CompileCounter:
  """Counts XLA backend compilations (jax's own monitoring event) while active."""

  def __init__(self):
    import jax

    self.count = 0
    self.active = False
    jax.monitoring.register_event_duration_secs_listener(self._listener)

  def _listener(self, event, duration, **kwargs):
    del duration, kwargs
    if self.active and event == "/jax/core/compile/backend_compile_duration":
      self.count += 1


def flops(compiled) -> float:
  """FLOPs of a compiled jax function by XLA's cost analysis."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis["flops"])


def matmul_peak(repeats: int, sizes=(2048, 4096), dtype="float32") -> dict:
  """Best over sizes of the median 2 n^3 / t of a jitted n x n matmul."""
  import jax
  import jax.numpy as jnp

  dot = jax.jit(jnp.dot)
  out = {}
  for n in sizes:
    key_a, key_b = jax.random.split(jax.random.key(n))
    a = jax.random.normal(key_a, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(key_b, (n, n), jnp.float32).astype(dtype)
    seconds, _ = median_time(lambda a=a, b=b: dot(a, b).block_until_ready(), repeats, warmup=2)
    out[str(n)] = 2 * n**3 / seconds / 1e9
  return {"gflops": max(out.values()), "by_size": {k: round(v, 1) for k, v in out.items()}}


def train_setup(config_name: str, batch_size: int, dtype: str | None = None, **model_overrides):
  """The paper/demo training step as `python train.py` compiles it, on a synthetic batch.

  Returns a dict: config, model, tx, state, step (jitted, donates state), eval_step,
  batch (on the mesh), host_batch, num_frames, params (count), compute (dtype),
  data_sharding.
  """
  import jax

  from stress_jax import input_pipeline, steps, trainer
  from stress_jax.models import build_model, count_params

  cfg = config(config_name, **model_overrides)
  if dtype:
    cfg.model.dtype = dtype
  num_frames = int(cfg.data.num_frames)
  model = build_model(cfg.model)
  total_steps = 1000
  schedule = steps.learning_rate_schedule(cfg.optim, total_steps)
  tx = steps.make_optimizer(cfg.optim, total_steps)
  compute = steps.compute_dtype(cfg.model)
  host_batch = synthetic_batch(batch_size, num_frames)
  jitted = trainer.jit_steps(model, tx, schedule, compute, trainer.make_mesh(), host_batch)
  batch = input_pipeline.to_global(host_batch, jitted.data_sharding)
  state = jitted.init(jax.random.key(0))
  return dict(
    config=cfg,
    model=model,
    tx=tx,
    state=state,
    step=jitted.train_step,
    eval_step=jitted.eval_step,
    batch=batch,
    host_batch=host_batch,
    num_frames=num_frames,
    params=count_params(state.params),
    compute=compute,
    data_sharding=jitted.data_sharding,
  )


def step_once(setup: dict, rng) -> dict:
  """One training step of a set-up (its state replaced, the old one donated), waited for."""
  import jax

  setup["state"], metrics = setup["step"](setup["state"], setup["batch"], rng)
  jax.block_until_ready(metrics["loss"])
  return metrics


def time_steps(setup: dict, repeats: int, warmup: int) -> tuple[float, list[float]]:
  """Median (and all) wall times of the set-up's jitted train step, each waited for."""
  import jax

  rng = jax.random.key(1)
  return median_time(lambda: step_once(setup, rng), repeats, warmup)


def stream_functions(model):
  """jitted streaming: one fused step, and the two halves separately (as predict.py)."""
  import jax
  import jax.numpy as jnp

  def encode(variables, crop_u8, has_face):
    frames = crop_u8.astype(jnp.float32)[None, None] / 255.0
    vectors, spatial = model.apply(variables, frames, has_face[None, None], method="encode_frames")
    return vectors[0, 0], spatial[0, 0]

  def classify(variables, vectors, landmarks, mask):
    logits, _ = model.apply(variables, vectors, landmarks, mask, method="classify_clip")
    return jax.nn.softmax(logits, -1)

  def fused(variables, window, crop_u8, frame_landmarks, has_face):
    """Encode the new frame, roll it into the window, classify the window."""
    vector, spatial = encode(variables, crop_u8, has_face)
    vectors, landmarks, mask = window
    vectors = jnp.concatenate([vectors[:, 1:], vector[None, None]], axis=1)
    landmarks = jnp.concatenate([landmarks[:, 1:], frame_landmarks[None, None]], axis=1)
    mask = jnp.concatenate([mask[:, 1:], has_face[None, None]], axis=1)
    probabilities = classify(variables, vectors, landmarks, mask)
    return (vectors, landmarks, mask), probabilities[0], spatial

  return jax.jit(encode), jax.jit(classify), jax.jit(fused, donate_argnums=1)


def stream_inputs(seed: int = 0):
  """64 random crops (uint8) and landmark sets that the streaming timings cycle through."""
  rng = np.random.default_rng(seed)
  crops = rng.integers(0, 256, (64, 112, 112, 3), dtype=np.uint8)
  points = rng.uniform(0.25, 0.75, (64, 68, 2)).astype(np.float32)
  return crops, points


def stream_frames(fused, variables, window, crops, points, count: int):
  """Pushes `count` frames through the fused streaming step, each to probabilities on the host.

  Returns (window, per-frame latencies in s, total s).
  """
  latencies = []
  started_all = time.perf_counter()
  for i in range(count):
    started = time.perf_counter()
    window, probabilities, _ = fused(variables, window, crops[i % 64], points[i % 64], True)
    np.asarray(probabilities)
    latencies.append(time.perf_counter() - started)
  return window, latencies, time.perf_counter() - started_all


def synthetic_handle(tmp: str, name: str, **simulator):
  """A small simulated stress_faces set of JPEG clips built in `tmp`: (its handle, build s)."""
  from stress_jax import input_pipeline
  from stress_jax.datasets import synthetic
  from tfds_builders.stress_faces.stress_faces_dataset_builder import (
    StressFaces,
    StressFacesConfig,
  )

  sim = synthetic.SimulatorConfig(**simulator)
  builder_config = StressFacesConfig(
    name=name, description="benchmark clips", kind="synthetic", simulator=sim
  )
  started = time.perf_counter()
  builder = StressFaces(config=builder_config, data_dir=tmp, file_format="array_record")
  builder.download_and_prepare()
  build_s = time.perf_counter() - started
  names = builder.info.features["label"].names
  handle = input_pipeline.DatasetHandle(
    builder=builder,
    subjects=tuple(sorted(builder.info.splits.keys())),
    label_names=tuple(names),
    label_map=np.arange(len(names), dtype=np.int32),
    input_key="frames",
    has_landmarks=True,
    synthetic=True,
    num_frames=sim.num_frames,
  )
  return handle, build_s


def train_batches(handle, input_config, num_epochs: int):
  """The training input pipeline of one process over every subject, as an iterator."""
  from stress_jax import input_pipeline

  dataset = input_pipeline.train_dataset(
    handle,
    handle.subjects,
    input_config,
    seed=0,
    num_epochs=num_epochs,
    process_index=0,
    process_count=1,
  )
  return iter(dataset)


def stream_model(cfg=None):
  """(model, variables, empty_window(), window frames) for streaming; paper by default."""
  import jax
  import jax.numpy as jnp

  from stress_jax.models import build_model

  cfg = cfg or config("paper")
  model = build_model(cfg.model)
  t = int(cfg.data.num_frames)
  variables = jax.jit(
    lambda key: model.init(
      key,
      jnp.zeros((1, t, 112, 112, 3)),
      jnp.zeros((1, t, 68, 2)),
      jnp.ones((1, t), bool),
    )
  )(jax.random.key(0))
  width = int(cfg.model.head_width)

  def empty_window():
    return (
      jnp.zeros((1, t, width), jnp.float32),
      jnp.zeros((1, t, 68, 2), jnp.float32),
      jnp.zeros((1, t), bool),
    )

  return model, variables, empty_window, t
