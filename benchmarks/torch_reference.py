"""StressNet in PyTorch (eager), the reference the JAX step is compared against.

The same architecture and training step as stress_jax (models/stressnet.py,
train.train_step), module for module:

  uint8 frames -> [0,1] -> brightness/contrast -> (x - 0.5) / 0.25
  ResNet-18 stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool) + BasicBlock stages
  residual head block(s) -> head_width, CBAM spatial attention (x + a*x), GAP
  temporal attention MLP on [frame vector, masked clip mean], masked softmax
  landmark stream: centred, inter-ocular-scaled shape, velocity and deviation from
  the clip's mean shape -> 2-layer MLP
  -> its own temporal attention; concat -> dropout -> linear
  loss: cross-entropy weighted by `valid`; clip_grad_norm(clip_norm);
  AdamW (b1 0.9, b2 0.999, eps 1e-8) with weight decay on kernels only,
  warmup + cosine learning rate.

One difference, and why it does not matter here: stress_jax's BatchNorm leaves
masked frames out of the batch statistics; torch's BatchNorm2d cannot, so this
reference uses all frames. The benchmark batches have every frame valid, where
the two are the same computation (the JAX side even does slightly more work).

`count_parameters` must equal stress_jax's `count_params(params)` (BatchNorm
running statistics are buffers here and batch_stats there, in neither count).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
NUM_LANDMARKS = 68
LANDMARK_FEATURES = 6 * NUM_LANDMARKS  # shape, velocity, deviation: 136 each
MASKED_SCORE = -1e9
MIN_INTEROCULAR = 1e-2
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


def _bn(channels: int) -> nn.BatchNorm2d:
  # momentum 0.1 in torch is flax's 0.9; the same epsilon.
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


def _conv(cin: int, cout: int, kernel: int, stride: int) -> nn.Conv2d:
  conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
  nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
  return conv


class BasicBlock(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1, self.bn1 = _conv(cin, cout, 3, stride), _bn(cout)
    self.conv2, self.bn2 = _conv(cout, cout, 3, 1), _bn(cout)
    self.proj = None
    if stride != 1 or cin != cout:
      self.proj = nn.Sequential(_conv(cin, cout, 1, stride), _bn(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    residual = x if self.proj is None else self.proj(x)
    return F.relu(y + residual)


class Trunk(nn.Module):
  def __init__(self, stem: int, widths, blocks):
    super().__init__()
    self.stem = nn.Sequential(_conv(3, stem, 7, 2), _bn(stem), nn.ReLU())
    layers, cin = [], stem
    for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
      for block in range(count):
        layers.append(BasicBlock(cin, width, 2 if stage > 0 and block == 0 else 1))
        cin = width
    self.blocks = nn.Sequential(*layers)

  def forward(self, x):
    x = F.max_pool2d(self.stem(x), 3, 2, 1)
    return self.blocks(x)


class SpatialAttention(nn.Module):
  def __init__(self, kernel: int):
    super().__init__()
    self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=True)

  def forward(self, x):
    pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    a = torch.sigmoid(self.conv(pooled))
    return x + a * x, a[:, 0]


def masked_mean(vectors, mask):
  total = (vectors * mask[..., None]).sum(1)
  return total / mask.sum(1, keepdim=True).clamp_min(1.0)


def masked_softmax(scores, mask_bool):
  scores = torch.where(mask_bool, scores, torch.full_like(scores, MASKED_SCORE))
  shifted = scores - scores.max(-1, keepdim=True).values.detach()
  exp = torch.where(mask_bool, shifted.exp(), torch.zeros_like(shifted))
  total = exp.sum(-1, keepdim=True)
  return exp / torch.where(total > 0, total, torch.ones_like(total))


class TemporalAttention(nn.Module):
  def __init__(self, dim: int, hidden: int):
    super().__init__()
    self.hidden = nn.Linear(2 * dim, hidden)
    self.out = nn.Linear(hidden, 1)

  def forward(self, vectors, mask_bool):
    mask = mask_bool.to(vectors.dtype)
    vectors = vectors * mask[..., None]
    context = masked_mean(vectors, mask)[:, None].expand_as(vectors)
    scores = self.out(torch.tanh(self.hidden(torch.cat([vectors, context], -1))))[..., 0]
    weights = masked_softmax(scores, mask_bool)
    return (weights[..., None] * vectors).sum(1), weights


def landmark_features(landmarks, mask_bool):
  points = landmarks * mask_bool[..., None, None].to(landmarks.dtype)
  centre = points.mean(-2, keepdim=True)
  right = points[..., RIGHT_EYE, :].mean(-2)
  left = points[..., LEFT_EYE, :].mean(-2)
  interocular = (left - right).square().sum(-1).clamp_min(MIN_INTEROCULAR**2).sqrt()
  shape = ((points - centre) / interocular[..., None, None]).flatten(-2)
  previous = torch.cat([torch.zeros_like(shape[:, :1]), shape[:, :-1]], 1)
  previous_valid = torch.cat([torch.zeros_like(mask_bool[:, :1]), mask_bool[:, :-1]], 1)
  both = (mask_bool & previous_valid)[..., None].to(shape.dtype)
  weights = mask_bool[..., None].to(shape.dtype)
  clip_mean = (shape * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1.0)
  return torch.cat([shape, (shape - previous) * both, (shape - clip_mean) * weights], -1)


class StressNet(nn.Module):
  """The paper-config StressNet (pixel input, both streams, both attentions)."""

  def __init__(self, cfg):
    super().__init__()
    self.trunk = Trunk(cfg.stem_width, tuple(cfg.stage_widths), tuple(cfg.stage_blocks))
    head, cin = [], cfg.stage_widths[-1]
    for _ in range(cfg.head_blocks):
      head.append(BasicBlock(cin, cfg.head_width, 1))
      cin = cfg.head_width
    self.head = nn.Sequential(*head)
    self.spatial = SpatialAttention(cfg.spatial_kernel_size)
    self.temporal = TemporalAttention(cfg.head_width, cfg.attention_hidden)
    self.landmark_mlp = nn.Sequential(
      nn.Linear(LANDMARK_FEATURES, cfg.landmark_hidden),
      nn.ReLU(),
      nn.Linear(cfg.landmark_hidden, cfg.landmark_hidden),
      nn.ReLU(),
    )
    self.landmark_temporal = TemporalAttention(cfg.landmark_hidden, cfg.attention_hidden)
    self.dropout = nn.Dropout(cfg.dropout_rate)
    self.classifier = nn.Linear(cfg.head_width + cfg.landmark_hidden, cfg.num_classes)
    self.channels_last = False

  def forward(self, frames, landmarks, mask_bool):
    """frames (B,T,3,H,W) float in [0,1]; landmarks (B,T,68,2); mask (B,T) bool."""
    b, t = frames.shape[:2]
    x = frames.reshape(b * t, *frames.shape[2:])
    x = (x - PIXEL_MEAN) / PIXEL_STD
    x = x * mask_bool.reshape(b * t, 1, 1, 1).to(x.dtype)
    if self.channels_last:
      x = x.contiguous(memory_format=torch.channels_last)
    x, spatial = self.spatial(self.head(self.trunk(x)))
    vectors = x.mean((2, 3)).reshape(b, t, -1)
    pooled, weights = self.temporal(vectors, mask_bool)
    per_frame = self.landmark_mlp(landmark_features(landmarks, mask_bool))
    lm_pooled, lm_weights = self.landmark_temporal(per_frame, mask_bool)
    clip = self.dropout(torch.cat([pooled, lm_pooled], -1))
    return self.classifier(clip), (spatial, weights, lm_weights)


def count_parameters(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def warmup_cosine(optim_config, total_steps: int):
  """optax.warmup_cosine_decay_schedule as a LambdaLR factor of the peak rate."""
  warmup = min(int(optim_config.warmup_steps), max(total_steps - 1, 0))
  decay = max(total_steps, warmup + 1)
  end = float(optim_config.end_learning_rate_factor)

  def factor(step: int) -> float:
    if step < warmup:
      return step / max(warmup, 1)
    progress = min((step - warmup) / max(decay - warmup, 1), 1.0)
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))

  return factor


def make_optimizer(model: nn.Module, optim_config, total_steps: int):
  decay = [p for p in model.parameters() if p.ndim > 1]
  no_decay = [p for p in model.parameters() if p.ndim <= 1]
  optimizer = torch.optim.AdamW(
    [
      {"params": decay, "weight_decay": float(optim_config.weight_decay)},
      {"params": no_decay, "weight_decay": 0.0},
    ],
    lr=float(optim_config.learning_rate),
    betas=(0.9, 0.999),
    eps=1e-8,
    # foreach (multi-tensor) is torch's fastest CPU path for many small tensors.
    foreach=True,
  )
  schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(optim_config, total_steps))
  return optimizer, schedule


def preprocess(batch: dict):
  """The stress_jax device_preprocess: uint8 (B,T,H,W,3) -> float (B,T,3,H,W) in [0,1]."""
  frames = batch["inputs"].permute(0, 1, 4, 2, 3).float() / 255.0
  brightness = batch["photometric"][:, 0].reshape(-1, 1, 1, 1, 1)
  contrast = batch["photometric"][:, 1].reshape(-1, 1, 1, 1, 1)
  return ((frames - 0.5) * contrast + 0.5 + brightness).clamp(0.0, 1.0)


def train_step(model, optimizer, schedule, batch: dict, clip_norm: float) -> dict:
  model.train()
  frames = preprocess(batch)
  logits, _ = model(frames, batch["landmarks"], batch["frame_mask"])
  weights = batch["valid"].float()
  losses = F.cross_entropy(logits, batch["label"], reduction="none")
  loss = (losses * weights).sum() / weights.sum().clamp_min(1.0)
  optimizer.zero_grad(set_to_none=True)
  loss.backward()
  grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
  optimizer.step()
  schedule.step()
  with torch.no_grad():
    correct = (logits.argmax(-1) == batch["label"]).float()
    accuracy = (correct * weights).sum() / weights.sum().clamp_min(1.0)
    param_norm = torch.sqrt(sum(p.square().sum() for p in model.parameters()))
  return {
    "loss": loss.detach(),
    "accuracy": accuracy,
    "grad_norm": grad_norm,
    "param_norm": param_norm,
  }


@torch.inference_mode()
def predict(model, batch: dict):
  model.eval()
  logits, aux = model(preprocess(batch), batch["landmarks"], batch["frame_mask"])
  return torch.softmax(logits, -1), aux


def default_device() -> torch.device:
  """cuda where this torch build sees a GPU, else cpu: where the reference runs."""
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device) -> None:
  """Waits for queued GPU work, so a timer around a step measures the step."""
  if device.type == "cuda":
    torch.cuda.synchronize(device)


def to_torch(batch: dict, device: torch.device | str = "cpu") -> dict:
  """numpy batch (stress_jax DEVICE_KEYS) -> torch tensors with the dtypes torch expects."""
  out = {k: torch.from_numpy(v.copy()).to(device) for k, v in batch.items()}
  out["label"] = out["label"].long()
  return out


def load_flax_variables(model: StressNet, variables: dict) -> None:
  """Copies stress_jax variables ({'params', 'batch_stats'}) into `model`, in place."""
  params, stats = variables["params"], variables.get("batch_stats", {})

  def tensor(x):
    return torch.from_numpy(__import__("numpy").array(x, dtype="float32"))

  def conv(module: nn.Conv2d, p):
    module.weight.data.copy_(tensor(p["kernel"]).permute(3, 2, 0, 1))  # HWIO -> OIHW
    if module.bias is not None:
      module.bias.data.copy_(tensor(p["bias"]))

  def bn(module: nn.BatchNorm2d, p, s):
    module.weight.data.copy_(tensor(p["scale"]))
    module.bias.data.copy_(tensor(p["bias"]))
    module.running_mean.copy_(tensor(s["mean"]))
    module.running_var.copy_(tensor(s["var"]))

  def dense(module: nn.Linear, p):
    module.weight.data.copy_(tensor(p["kernel"]).T)
    module.bias.data.copy_(tensor(p["bias"]))

  def block(module: BasicBlock, p, s):
    conv(module.conv1, p["conv1"])
    bn(module.bn1, p["bn1"], s["bn1"])
    conv(module.conv2, p["conv2"])
    bn(module.bn2, p["bn2"], s["bn2"])
    if module.proj is not None:
      conv(module.proj[0], p["proj_conv"])
      bn(module.proj[1], p["proj_bn"], s["proj_bn"])

  trunk_p, trunk_s = params["trunk"], stats["trunk"]
  conv(model.trunk.stem[0], trunk_p["stem_conv"])
  bn(model.trunk.stem[1], trunk_p["stem_bn"], trunk_s["stem_bn"])
  names = sorted(k for k in trunk_p if k.startswith("stage"))
  for module, name in zip(model.trunk.blocks, names, strict=True):
    block(module, trunk_p[name], trunk_s[name])
  for i, module in enumerate(model.head):
    block(module, params["head"][f"block{i + 1}"], stats["head"][f"block{i + 1}"])
  conv(model.spatial.conv, params["spatial_attention"]["conv"])
  for module, name in (
    (model.temporal, "temporal_attention"),
    (model.landmark_temporal, "landmark_temporal_attention"),
  ):
    dense(module.hidden, params[name]["score_hidden"])
    dense(module.out, params[name]["score_out"])
  dense(model.landmark_mlp[0], params["landmark_mlp"]["dense1"])
  dense(model.landmark_mlp[2], params["landmark_mlp"]["dense2"])
  dense(model.classifier, params["classifier"])
