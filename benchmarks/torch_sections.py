"""Sections `torch_demo`, `torch_paper` and `batch_sweep`: the same model in PyTorch.

benchmarks/torch_reference.py is the same architecture and AdamW step in torch eager;
the torch sections time it at its faster memory layout and check, with the JAX
weights copied in, that both compute the same function. `batch_sweep` times JAX and
torch back to back in one process, the fairest ratio on a machine whose speed drifts.
"""

from __future__ import annotations

import os

import numpy as np

from benchmarks import common


def worker_torch(s: dict, config_name: str) -> dict:
  import torch

  from benchmarks import torch_reference as ref
  from stress_jax.models import StressNetConfig

  threads = int(s.get("torch_threads") or os.cpu_count())
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  config = common.config(config_name)
  model_cfg = StressNetConfig.from_any(config.model)
  batch_size = s["paper_batch"] if config_name == "paper" else s["demo_batch"]
  num_frames = int(config.data.num_frames)
  host = common.synthetic_batch(batch_size, num_frames)
  result = {
    "config": config_name,
    "torch_version": torch.__version__,
    "threads": threads,
    "per_device_batch_clips": batch_size,
    "frames_per_clip": num_frames,
    "by_layout": {},
  }
  device = ref.default_device()
  result["device"] = device.type
  infer_batch = s["infer_batch"] if config_name == "paper" else batch_size
  for layout in ("channels_first", "channels_last"):
    model = ref.StressNet(model_cfg).to(device)
    model.channels_last = layout == "channels_last"
    if model.channels_last:
      model = model.to(memory_format=torch.channels_last)
    result["params"] = ref.count_parameters(model)
    optimizer, schedule = ref.make_optimizer(model, config.optim, 1000)
    batch = ref.to_torch(host, device)

    def train_once(model=model, optimizer=optimizer, schedule=schedule, batch=batch):
      ref.train_step(model, optimizer, schedule, batch, float(config.optim.clip_norm))
      ref.synchronize(device)

    eval_batch = {k: v[:infer_batch] for k, v in batch.items()}

    def infer_once(model=model, eval_batch=eval_batch):
      ref.predict(model, eval_batch)
      ref.synchronize(device)

    step_s, runs = common.median_time(train_once, s["train_repeats"], s["train_warmup"])
    infer_s, _ = common.median_time(infer_once, s["train_repeats"], 2)
    result["by_layout"][layout] = {
      "step_s": round(step_s, 4),
      "step_s_runs": [round(t, 4) for t in runs],
      "clips_per_s": round(batch_size / step_s, 3),
      "frames_per_s": round(batch_size * num_frames / step_s, 1),
      "infer_batch_clips": infer_batch,
      "infer_s": round(infer_s, 4),
      "infer_clips_per_s": round(infer_batch / infer_s, 3),
    }
    if s["quick"]:
      break
  # The reference is torch at its best layout: the ratio should not flatter JAX.
  best_train = min(result["by_layout"].items(), key=lambda kv: kv[1]["step_s"])
  best_infer = min(result["by_layout"].items(), key=lambda kv: kv[1]["infer_s"])
  result.update(
    train_layout=best_train[0],
    clips_per_s=best_train[1]["clips_per_s"],
    step_s=best_train[1]["step_s"],
    infer_layout=best_infer[0],
    infer_clips_per_s=best_infer[1]["infer_clips_per_s"],
    peak_rss_mb=round(common.rss_mb(), 1),
  )
  result["parity_with_jax"] = _torch_parity(config_name)
  return result


def _torch_parity(config_name: str) -> dict:
  """Eval-mode outputs of both models with the JAX weights copied into torch.

  logits_rel: max |logit difference| / max |logit|; attention: max abs difference of
  the spatial (valid frames) and both temporal attentions. Small values mean the two
  implementations compute the same function, not merely have the same sizes.
  """
  import jax
  import torch

  from benchmarks import torch_reference as ref
  from stress_jax import input_pipeline
  from stress_jax.models import StressNetConfig, build_model

  # The torch reference has no stream heads, so its logits are the fused classifier's.
  config = common.config(config_name, combine_stream_logits=False)
  model = build_model(config.model)
  host = common.synthetic_batch(2, int(config.data.num_frames), seed=5)
  host["frame_mask"][1, -3:] = False
  inputs = input_pipeline.device_preprocess(host)["inputs"]
  variables = model.init(jax.random.key(0), inputs, host["landmarks"], host["frame_mask"])
  # Non-trivial BN statistics and biases, so the copy is checked everywhere.
  rng = np.random.default_rng(0)
  variables = jax.tree.map(
    lambda x: np.asarray(x) + rng.normal(0, 0.05, np.shape(x)).astype(np.float32), variables
  )
  variables["batch_stats"] = jax.tree.map(np.abs, variables["batch_stats"])
  logits, aux = model.apply(variables, inputs, host["landmarks"], host["frame_mask"])
  reference = ref.StressNet(StressNetConfig.from_any(config.model))
  ref.load_flax_variables(reference, variables)
  reference.eval()
  batch = ref.to_torch(host)
  with torch.inference_mode():
    torch_logits, (spatial, temporal, landmark_temporal) = reference(
      ref.preprocess(batch), batch["landmarks"], batch["frame_mask"]
    )
  logits, torch_logits = np.asarray(logits), torch_logits.numpy()
  valid = host["frame_mask"].reshape(-1)
  spatial_jax = np.asarray(aux["spatial_attention"]).reshape(spatial.shape)
  return {
    "logits_rel": float(np.max(np.abs(logits - torch_logits)) / np.max(np.abs(logits))),
    "spatial_attention": float(np.max(np.abs(spatial_jax - spatial.numpy())[valid])),
    "temporal_attention": float(
      np.max(np.abs(np.asarray(aux["temporal_attention"]) - temporal.numpy()))
    ),
    "landmark_temporal_attention": float(
      np.max(np.abs(np.asarray(aux["landmark_temporal_attention"]) - landmark_temporal.numpy()))
    ),
  }


def _sweep_point(s: dict, config, batch_size: int) -> dict:
  import torch

  from benchmarks import torch_reference as ref
  from stress_jax.models import StressNetConfig

  setup = common.train_setup("paper", batch_size, s.get("dtype"))
  jax_s, _ = common.time_steps(setup, s["train_repeats"], s["train_warmup"])
  device = ref.default_device()
  model = ref.StressNet(StressNetConfig.from_any(config.model)).to(device)
  model.channels_last = True
  model = model.to(memory_format=torch.channels_last)
  optimizer, schedule = ref.make_optimizer(model, config.optim, 1000)
  host = common.synthetic_batch(batch_size, int(config.data.num_frames))
  torch_batch = ref.to_torch(host, device)

  def torch_once():
    ref.train_step(model, optimizer, schedule, torch_batch, 1.0)
    ref.synchronize(device)

  torch_s, _ = common.median_time(torch_once, s["train_repeats"], s["train_warmup"])
  return {
    "batch_clips": batch_size,
    "jax_step_s": round(jax_s, 3),
    "jax_clips_per_s": round(batch_size / jax_s, 3),
    "torch_step_s": round(torch_s, 3),
    "torch_clips_per_s": round(batch_size / torch_s, 3),
    "ratio": round(torch_s / jax_s, 3),
    "torch_device": device.type,
  }


def worker_batch_sweep(s: dict) -> dict:
  """Paper-config training throughput against the per-device batch, JAX and torch."""
  import torch

  torch.set_num_threads(int(s.get("torch_threads") or os.cpu_count()))
  config = common.config("paper")
  rows = [_sweep_point(s, config, batch_size) for batch_size in (1, 2, 4)]
  return {"rows": rows, "torch_layout": "channels_last"}
