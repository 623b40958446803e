"""The GPU check's correctness parts: bf16 forward parity, training + checkpoint + export,
and streaming.

Each part is `fn(s, out, tmp)`: s the run's settings (benchmarks/device/settings.py),
`out[key] = value` records a figure at once, tmp a scratch folder.
"""

from __future__ import annotations

import json
import os
import tarfile
import time

import numpy as np

# Stated tolerances of the bf16 accelerator forward against the float32 CPU forward of
# the same weights and inputs (the paper model, random weights): the logits' relative
# L2 error, and the largest difference of a class probability. bfloat16 keeps 8 bits of
# mantissa (about 2e-3 relative rounding per operation); bf16 against float32, both on
# the CPU here, gave 5.6e-3 and 4.0e-4 for the paper model (1 clip of 48 frames) and
# 4.1e-3 for the dry run's tiny one. The bounds leave about 5x for the GPU's kernels.
BF16_LOGITS_REL_TOL = 3e-2
BF16_PROB_ABS_TOL = 2e-2
# A checkpoint or export trained in bf16 and evaluated in float32 on the CPU here.
RESTORE_PROB_ABS_TOL = 2e-2
TARBALL = "checkpoint.tar.gz"


def config(name: str, s: dict, dtype: str | None = None, **model_overrides):
  """The demo or paper config at the run's sizes (the dry run's tiny model)."""
  from stress_jax.configs import demo, paper

  cfg = {"demo": demo, "paper": paper}[name].get_config()
  cfg.data.num_frames = int(s["paper_frames"] if name == "paper" else s["demo_frames"])
  for key, value in {**s["model_overrides"], **model_overrides}.items():
    setattr(cfg.model, key, tuple(value) if isinstance(value, list) else value)
  if dtype:
    cfg.model.dtype = dtype
  return cfg


def accelerator():
  """The default device and the CPU device (every jaxlib has the CPU backend)."""
  import jax

  return jax.devices()[0], jax.devices("cpu")[0]


def rel_l2(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _forward(model, dtype):
  import jax
  import jax.numpy as jnp

  from stress_jax import input_pipeline

  def forward(variables, batch):
    batch = input_pipeline.device_preprocess(batch, dtype)
    logits, _ = model.apply(
      variables, batch["inputs"], batch["landmarks"], batch["frame_mask"], train=False
    )
    return logits.astype(jnp.float32)

  return jax.jit(forward)


def parity(s: dict, out, tmp: str) -> None:
  """(b) The paper model's bf16 forward on the accelerator vs the float32 CPU forward."""
  del tmp
  import jax
  import jax.numpy as jnp

  from benchmarks import common
  from stress_jax.models import build_model

  accel, cpu = accelerator()
  out.update(backend=accel.platform, device_kind=accel.device_kind)
  cfg32 = config("paper", s, "float32")
  cfg16 = config("paper", s, "bfloat16")
  model32, model16 = build_model(cfg32.model), build_model(cfg16.model)
  frames = int(cfg32.data.num_frames)
  host = common.synthetic_batch(int(s["parity_clips"]), frames, seed=3)
  host = {k: host[k] for k in ("inputs", "landmarks", "frame_mask", "photometric")}
  with jax.default_device(cpu):
    sample = {k: jnp.asarray(v) for k, v in host.items()}
    variables = jax.jit(
      lambda key: model32.init(
        key, sample["inputs"].astype(jnp.float32), sample["landmarks"], sample["frame_mask"]
      )
    )(jax.random.key(0))
    reference = np.asarray(_forward(model32, jnp.float32)(variables, sample))
  on_accel = jax.device_put(variables, accel)
  batch = jax.device_put(host, accel)
  bf16 = np.asarray(_forward(model16, jnp.bfloat16)(on_accel, batch))
  # float32 on the device, for scale (GPUs run float32 convolutions in TF32 by default).
  f32 = reference if accel == cpu else np.asarray(_forward(model32, jnp.float32)(on_accel, batch))
  probs = lambda x: np.asarray(jax.nn.softmax(jnp.asarray(x), -1))  # noqa: E731
  out.update(
    clips=int(s["parity_clips"]),
    frames=frames,
    logits_rel_l2_bf16=rel_l2(bf16, reference),
    prob_max_abs_bf16=float(np.abs(probs(bf16) - probs(reference)).max()),
    logits_rel_l2_f32=rel_l2(f32, reference),
    logits_finite=bool(np.isfinite(bf16).all()),
    tolerance={"logits_rel_l2": BF16_LOGITS_REL_TOL, "prob_max_abs": BF16_PROB_ABS_TOL},
  )
  out["agrees"] = bool(
    out["logits_finite"]
    and out["logits_rel_l2_bf16"] <= BF16_LOGITS_REL_TOL
    and out["prob_max_abs_bf16"] <= BF16_PROB_ABS_TOL
  )


def train_config(s: dict, data_dir: str):
  """The demo model on a small synthetic set, trained s['train_steps'] steps."""
  cfg = config("demo", s, "auto")
  cfg.data.name = s["train_data"]
  cfg.data.data_dir = data_dir
  cfg.data.num_frames = int(s["train_frames"])
  if s["dry"]:  # synthetic_tiny has 3 subjects
    cfg.protocol.num_folds, cfg.protocol.num_val_subjects = 3, 1
  cfg.input.batch_size = int(s["train_batch"])
  cfg.input.eval_batch_size = int(s["train_batch"])
  cfg.optim.warmup_steps = 5
  train = cfg.train
  train.num_steps = int(s["train_steps"])
  train.log_every_steps = 1
  train.eval_every_steps = train.num_steps
  train.checkpoint_every_steps = train.num_steps
  train.progress_bar = False
  return cfg


def losses(workdir: str) -> list[float]:
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  return [
    float(r["train/loss"]) for r in sorted(rows, key=lambda r: r["step"]) if "train/loss" in r
  ]


def train(s: dict, out, tmp: str) -> None:
  """(c) training steps, (d) the checkpoint packed for the CPU here, (e) export parity."""
  import jax

  from stress_jax import evaluate, export
  from stress_jax import train as train_loop
  from stress_jax.models import build_model

  accel, cpu = accelerator()
  workdir, export_dir = os.path.join(tmp, "workdir"), os.path.join(tmp, "export")
  cfg = train_config(s, os.path.join(tmp, "data"))
  started = time.perf_counter()
  train_loop.train_and_evaluate(cfg, workdir)
  values = losses(workdir)
  k = max(1, min(10, len(values) // 2))
  first, last = float(np.mean(values[:k])), float(np.mean(values[-k:]))
  out.update(
    data=cfg.data.name,
    model_dtype=json.load(open(os.path.join(workdir, "config.json")))["model"]["dtype"],
    steps=len(values),
    train_s=round(time.perf_counter() - started, 1),
    loss_first=first,
    loss_last=last,
    loss_window=k,
    loss_finite=bool(np.isfinite(values).all()),
  )
  out["loss_falls"] = bool(out["loss_finite"] and last < first)

  # Compared below with the model on the device and on the CPU (verify would compare it
  # once more, on the default device).
  export.export_model(
    workdir, export_dir, checkpoint="latest", platforms=("cpu", "cuda"), verify=False
  )
  config_json = json.load(open(os.path.join(export_dir, "config.json")))
  frames = int(config_json["num_frames"])
  shape = tuple(config_json["frame_shape"])
  inputs = export.random_inputs(np.random.default_rng(7), 2, frames, shape)
  trained = evaluate.read_config(workdir)
  step, _ = evaluate.resolve_checkpoint(workdir, trained, "latest")
  model = build_model(trained.model)
  variables = evaluate.load_variables(workdir, step, model, frames)
  whole, _, _ = export.model_functions(model, jax.device_put(variables, accel))
  accel_probs = np.asarray(jax.jit(whole)(*inputs)["probabilities"])
  loaded = export.load_exported(export_dir)
  export_accel = loaded(*inputs)["probabilities"]
  if accel == cpu:  # the dry run: the same program on the same device
    export_cpu = export_accel
  else:
    with jax.default_device(cpu):
      export_cpu = export.load_exported(export_dir)(*inputs)["probabilities"]
  out.update(
    checkpoint_step=int(step),
    export_platforms=config_json["platforms"],
    export_vs_model_on_device=float(np.abs(export_accel - accel_probs).max()),
    export_cpu_vs_device=float(np.abs(export_cpu - accel_probs).max()),
    export_tolerance=RESTORE_PROB_ABS_TOL,
  )
  out["export_agrees"] = bool(
    out["export_vs_model_on_device"] <= RESTORE_PROB_ABS_TOL
    and out["export_cpu_vs_device"] <= RESTORE_PROB_ABS_TOL
  )
  # What the CPU here checks (benchmarks/device/restore.py): the inputs and what the
  # device made of them, as plain arrays (np.load(..., allow_pickle=False) reads it).
  np.savez(
    os.path.join(tmp, "reference.npz"),
    inputs=inputs[0],
    landmarks=inputs[1],
    frame_mask=inputs[2],
    probabilities=accel_probs,
    export_probabilities=export_accel,
    checkpoint_step=np.int64(step),
  )
  tarball = os.path.join(s["out_dir"], TARBALL)
  with tarfile.open(tarball, "w:gz") as tar:
    tar.add(os.path.join(tmp, "reference.npz"), "reference.npz")
    tar.add(export_dir, "export")
    for name in ("config.json", "checkpoints", "summary.json", "provenance.json"):
      if os.path.exists(os.path.join(workdir, name)):
        tar.add(os.path.join(workdir, name), f"workdir/{name}")
  out.update(tarball=TARBALL, tarball_bytes=os.path.getsize(tarball))


def streaming(s: dict, out, tmp: str) -> None:
  """(h) one new frame in, probabilities out, on the accelerator: frames/s and p95."""
  del tmp
  from benchmarks import common

  cfg = config("paper", s)
  cfg.model.dtype = "bfloat16" if not s["dry"] else "float32"
  model, variables, empty_window, t = common.stream_model(cfg)
  _, _, fused = common.stream_functions(model)
  crops, points = common.stream_inputs()
  # The first 2T frames compile, then fill the window.
  window, _, _ = common.stream_frames(fused, variables, empty_window(), crops, points, 2 * t)
  frames = int(s["stream_frames"])
  _, latencies, total = common.stream_frames(fused, variables, window, crops, points, frames)
  out.update(
    config="paper",
    dtype=str(cfg.model.dtype),
    window_frames=t,
    frames=frames,
    frames_per_s=round(frames / total, 1),
    latency_ms_p50=round(1000 * float(np.percentile(latencies, 50)), 3),
    latency_ms_p95=round(1000 * float(np.percentile(latencies, 95)), 3),
    latency_ms_max=round(1000 * max(latencies), 3),
    method=(
      "per frame: uint8 crop + landmarks -> one jitted step (encode the frame, roll it "
      "into the window on the device, classify the window) -> probabilities on the host"
    ),
  )
