"""StressNet: the spatial-temporal stress classifier of Jeon et al. (Sensors 2021).

  frames (B,T,112,112,3) in [0,1]          landmarks (B,T,68,2) crop units
      | fold T into the batch                    | landmark_features: centre, scale, velocity
  trunk: ResNet-18 stem + stages 1-3             | landmark_mlp
      | (B*T,7,7,256)  <- or features in         | landmark_temporal_attention
  head: residual block(s) -> 512                 |
  spatial_attention: x + a*x, a = (h,w) map      |
  global average pool -> frame vectors (B,T,D)   |
  temporal_attention -> clip vector              |
      '---------------- concat -------------------'
                  dropout -> classifier -> logits

`model.spatial_attention_position="trunk"` moves the spatial map below the head, onto
the trunk's map (in feature mode: the input features), so it weights cells before the
head's convolutions mix them.

Masking: `frame_mask` (B,T) marks real frames. Masked frames are replaced by zeros before
anything reads them, are kept out of BatchNorm's batch statistics in training, and get
exactly zero temporal weight, so changing them never changes the logits (eval or train).

Outputs: `apply(...)` returns (logits (B, num_classes) float32, aux) with
  aux["spatial_attention"]            (B,T,h,w) the sigmoid map in [0,1]; all zeros when
                                      spatial_attention is off (x + 0*x = x, which is what
                                      the model then computes) and on masked frames
  aux["temporal_attention"]           (B,T) image-stream frame weights
  aux["landmark_temporal_attention"]  (B,T) landmark-stream frame weights
The first two exist only with the image stream, the last only with the landmark stream.
With `stream_heads` (and both streams), training calls (train=True) also return
aux["image_logits"] and aux["landmark_logits"] (B, num_classes): each stream's own
classifier over its pooled vector, which the loss adds (stress_jax/objectives.py) so that
each stream's attention keeps a gradient that rewards its own evidence after fusion.
With `detach_stream_attention` as well, the frame weights learn from the stream heads
only (the logits are unchanged; only the gradient path differs).
With `with_embedding=True`, also aux["embedding"] (B, D): the fused clip vector that the
classifier reads (before dropout), for the triplet objective.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stress_jax.errors import ConfigError
from stress_jax.faces.geometry import LEFT_EYE, NUM_LANDMARKS, RIGHT_EYE
from stress_jax.models.attention import (
  SPATIAL_INPUTS,
  SPATIAL_MODES,
  SpatialAttention,
  TemporalAttentionPool,
  masked_mean,
  pool_frames,
)
from stress_jax.models.resnet import ResidualHead, ResNetTrunk

# Frames arrive in [0, 1]; a fixed (x - 0.5) / 0.25 maps a typical face crop to roughly
# unit scale without dataset statistics, which we do not have for every builder. The
# stem BatchNorm absorbs any remaining per-channel offset.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25

# model.pixel_norm -> per-channel (RGB) mean and std on [0, 1] pixels. Imported ImageNet
# weights (torchvision, timm) saw "imagenet" inputs in training; their stem does not
# absorb another scaling, so they need exactly it.
PIXEL_NORMS = {
  "fixed": ((PIXEL_MEAN,) * 3, (PIXEL_STD,) * 3),
  "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

# Inter-ocular distance floor in crop units (~1 pixel of a 112 crop; a real face has
# ~0.34). Keeps a degenerate detection from dividing by zero.
MIN_INTEROCULAR = 1e-2

LANDMARK_FEATURES = 6 * NUM_LANDMARKS  # normalised, velocity, deviation: 136 each

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class StressNetConfig:
  """The fields of `configs.common.model_config()`, frozen so the module stays hashable."""

  input_mode: str = "pixels"
  stem_width: int = 64
  stage_widths: tuple[int, ...] = (64, 128, 256)
  stage_blocks: tuple[int, ...] = (2, 2, 2)
  head_width: int = 512
  head_blocks: int = 1
  spatial_attention: bool = True
  spatial_kernel_size: int = 7
  spatial_attention_mode: str = "residual"
  spatial_attention_input: str = "pooled"
  spatial_attention_position: str = "head"
  temporal_attention: bool = True
  attention_hidden: int = 128
  landmark_stream: bool = True
  landmark_hidden: int = 128
  landmark_reference: str = "mean"
  image_stream: bool = True
  stream_heads: bool = False
  # With stream heads: each stream's frame weights learn only from its own head; the
  # fused classifier reads the same pooled vectors with the weights behind a stop_gradient.
  detach_stream_attention: bool = False
  dropout_rate: float = 0.5
  num_classes: int = 3
  dtype: str = "float32"
  pixel_norm: str = "fixed"
  # The trunk runs in inference mode (stored BatchNorm statistics) behind a
  # stop_gradient; steps.py keeps its parameters out of the gradient and optimizer.
  freeze_trunk: bool = False
  # Read only when a run initialises (stress_jax/models/pretrained.py); kept here so
  # that the model section of a config maps one to one onto this dataclass.
  pretrained: str = ""

  def __post_init__(self):
    if self.pixel_norm not in PIXEL_NORMS:
      raise ConfigError(f"pixel_norm must be one of {sorted(PIXEL_NORMS)}, got {self.pixel_norm!r}")
    if self.input_mode not in ("pixels", "features"):
      raise ConfigError(f"input_mode must be 'pixels' or 'features', got {self.input_mode!r}")
    if self.spatial_attention_mode not in SPATIAL_MODES:
      raise ConfigError(
        f"spatial_attention_mode must be one of {SPATIAL_MODES}, "
        f"got {self.spatial_attention_mode!r}"
      )
    if self.spatial_attention_input not in SPATIAL_INPUTS:
      raise ConfigError(
        f"spatial_attention_input must be one of {SPATIAL_INPUTS}, "
        f"got {self.spatial_attention_input!r}"
      )
    if self.spatial_attention_position not in SPATIAL_POSITIONS:
      raise ConfigError(
        f"spatial_attention_position must be one of {SPATIAL_POSITIONS}, "
        f"got {self.spatial_attention_position!r}"
      )
    if self.landmark_reference not in LANDMARK_REFERENCES:
      raise ConfigError(
        f"landmark_reference must be one of {LANDMARK_REFERENCES}, got {self.landmark_reference!r}"
      )
    if self.detach_stream_attention and not self.stream_heads:
      raise ConfigError(
        "detach_stream_attention needs stream_heads: without them the temporal attention "
        "would get no gradient at all"
      )
    if self.dtype not in _DTYPES:
      raise ConfigError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
    if not (self.image_stream or self.landmark_stream):
      raise ConfigError("StressNet needs at least one stream: image_stream or landmark_stream")
    if len(self.stage_widths) != len(self.stage_blocks):
      raise ConfigError(
        f"stage_widths {self.stage_widths} and stage_blocks {self.stage_blocks} differ in length"
      )

  @classmethod
  def from_any(cls, cfg: Any) -> StressNetConfig:
    """Accepts a StressNetConfig, an ml_collections ConfigDict or a plain mapping."""
    if isinstance(cfg, cls):
      return cfg
    values = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)
    for name in RETIRED_FIELDS.intersection(values):
      # An older run's config.json: the field never changed the computed function.
      del values[name]
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ConfigError(f"unknown model config fields: {unknown}")
    for name in ("stage_widths", "stage_blocks"):
      if name in values:
        values[name] = tuple(int(v) for v in values[name])
    if values.get("dtype") == "auto":
      # An API user building from a shipped config gets the dtype train.py would run.
      values["dtype"] = resolve_dtype("auto", jax.default_backend())
    return cls(**values)

  @property
  def compute_dtype(self):
    return _DTYPES[self.dtype]

  @property
  def feature_channels(self) -> int:
    """Channels of the stage-3 map the head reads (the feature-mode input)."""
    return self.stage_widths[-1]


def resolve_dtype(dtype: str, backend: str) -> str:
  """model.dtype "auto": bfloat16 compute where matrix units run it natively, else float32.

  TPUs and current GPUs multiply bfloat16 at several times their float32 rate; on CPU
  bfloat16 is emulated and slower. Parameters and optimizer state stay float32 either way.
  """
  if dtype != "auto":
    return dtype
  return "bfloat16" if backend in ("tpu", "gpu", "cuda", "rocm") else "float32"


# Fields older versions wrote into config.json that changed only how fast the model ran
# (conv_chunk_images: a chunked convolution, replaced by nn.Conv); their runs still load.
RETIRED_FIELDS = frozenset({"conv_chunk_images"})


def normalize_pixels(x, pixel_norm: str = "fixed"):
  """[0, 1] RGB pixels (..., 3) -> the trunk's input scale for `pixel_norm` (PIXEL_NORMS)."""
  if pixel_norm not in PIXEL_NORMS:
    raise ConfigError(f"pixel_norm must be one of {sorted(PIXEL_NORMS)}, got {pixel_norm!r}")
  mean, std = PIXEL_NORMS[pixel_norm]
  return (x - jnp.asarray(mean, x.dtype)) / jnp.asarray(std, x.dtype)


LANDMARK_REFERENCES = ("mean", "median")
# Where the spatial map acts: after the head (the authors' code) or on the trunk's map,
# where each cell's features mix less of the face, before the head's convolutions.
SPATIAL_POSITIONS = ("head", "trunk")


def masked_median(values, frame_mask):
  """Median over T of (B, T, D) taken over each clip's valid frames; zeros if none.

  Even counts average the two middle values, as numpy.median does.
  """
  mask = frame_mask.astype(bool)
  ordered = jnp.sort(jnp.where(mask[..., None], values, jnp.inf), axis=1)
  count = jnp.sum(mask, axis=1)
  low = jnp.maximum((count - 1) // 2, 0)[:, None, None]
  high = jnp.minimum(count // 2, jnp.maximum(count - 1, 0))[:, None, None]
  pick = lambda index: jnp.take_along_axis(ordered, index, axis=1)  # noqa: E731
  middle = 0.5 * (pick(low) + pick(high))
  return jnp.where((count > 0)[:, None, None], middle, 0.0)


def landmark_features(landmarks, frame_mask, reference: str = "mean"):
  """Per-frame landmark descriptor: (B,T,68,2) crop units, (B,T) -> (B,T,408) float32.

  Each frame's 68 points are centred on their mean (steadier than the eye midpoint,
  which moves with every blink) and divided by the inter-ocular distance (eye centres =
  mean of points 36-41 and 42-47), so the descriptor ignores where the face sits in the
  crop and how large it is. Velocity is the normalised shape minus the previous frame's;
  it is 0 on the first frame and wherever this or the previous frame is masked.
  Deviation is the normalised shape minus the clip's reference shape over its valid
  frames: their mean, or (`reference="median"`) their per-coordinate median. With the
  mean, cue frames pull the reference toward themselves, so the frames *without* a cue
  deviate too (the other way) and say as much about the cue as the cue frames do; the
  median of a clip whose cues fill less than half of it is the person's rest shape,
  and only cue frames deviate from it (docs/spatial_attention.md, section 7).
  Layout: [shape (136), velocity (136), deviation (136)]. Masked frames are zeroed
  before use, so their content cannot reach the output.
  """
  mask = frame_mask.astype(bool)
  points = jnp.where(mask[..., None, None], landmarks.astype(jnp.float32), 0.0)
  centre = jnp.mean(points, axis=-2, keepdims=True)
  right_eye = jnp.mean(points[..., RIGHT_EYE, :], axis=-2)
  left_eye = jnp.mean(points[..., LEFT_EYE, :], axis=-2)
  # sqrt of a floored square rather than norm(): finite gradients at coincident eyes.
  interocular = jnp.sqrt(
    jnp.maximum(jnp.sum(jnp.square(left_eye - right_eye), axis=-1), MIN_INTEROCULAR**2)
  )
  shape = (points - centre) / interocular[..., None, None]
  shape = shape.reshape(*shape.shape[:-2], 2 * NUM_LANDMARKS)
  previous = jnp.concatenate([jnp.zeros_like(shape[:, :1]), shape[:, :-1]], axis=1)
  previous_valid = jnp.concatenate([jnp.zeros_like(mask[:, :1]), mask[:, :-1]], axis=1)
  velocity = jnp.where((mask & previous_valid)[..., None], shape - previous, 0.0)
  # Deviation from the clip's own mean shape: people differ at rest (brow height,
  # mouth width), so a cue is a change against the person's baseline, not a value.
  if reference not in LANDMARK_REFERENCES:
    raise ConfigError(f"landmark_reference must be one of {LANDMARK_REFERENCES}, got {reference!r}")
  if reference == "median":
    baseline = masked_median(shape, mask)
  else:
    weights = mask[..., None].astype(jnp.float32)
    baseline = jnp.sum(shape * weights, axis=1, keepdims=True) / jnp.maximum(
      jnp.sum(weights, axis=1, keepdims=True), 1.0
    )
  deviation = jnp.where(mask[..., None], shape - baseline, 0.0)
  return jnp.concatenate([shape, velocity, deviation], axis=-1)


def clip_mean_map(x, valid, batch: int, steps: int):
  """(B*T,h,w,C) maps, (B*T,) validity -> each frame's clip mean over valid frames, (B*T,h,w,C)."""
  mean = masked_mean(x.reshape(batch, steps, -1), valid.reshape(batch, steps))
  return jnp.broadcast_to(mean[:, None], (batch, steps, mean.shape[-1])).reshape(x.shape)


class LandmarkMLP(nn.Module):
  """Two ReLU layers of width `hidden` over each frame's landmark descriptor."""

  hidden: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for layer in (1, 2):
      x = nn.Dense(self.hidden, dtype=self.dtype, param_dtype=jnp.float32, name=f"dense{layer}")(x)
      x = nn.relu(x)
    return x


class StressNet(nn.Module):
  """See the module docstring. Submodule (parameter path) names:

  trunk                        ResNet-18 stem + stages (pixel mode only)
  head                         residual block(s) to head_width
  spatial_attention            CBAM spatial attention conv
  temporal_attention           image-stream frame scoring MLP (no params when disabled)
  landmark_mlp                 per-frame landmark MLP
  landmark_temporal_attention  landmark-stream frame scoring MLP
  classifier                   Dense(num_classes) over the fused clip vector
  image_classifier             Dense(num_classes) over the image stream's clip vector
  landmark_classifier          the same over the landmark stream's (both: stream_heads)
  """

  config: StressNetConfig

  def setup(self):
    cfg = self.config
    dtype = cfg.compute_dtype
    if cfg.image_stream:
      if cfg.input_mode == "pixels":
        self.trunk = ResNetTrunk(cfg.stem_width, cfg.stage_widths, cfg.stage_blocks, dtype)
      self.head = ResidualHead(cfg.head_width, cfg.head_blocks, dtype)
      if cfg.spatial_attention:
        self.spatial_attention = SpatialAttention(
          cfg.spatial_kernel_size,
          dtype,
          cfg.spatial_attention_mode,
          cfg.spatial_attention_input,
        )
      self.temporal_attention = TemporalAttentionPool(
        cfg.attention_hidden, cfg.temporal_attention, dtype
      )
    if cfg.landmark_stream:
      self.landmark_mlp = LandmarkMLP(cfg.landmark_hidden, dtype)
      self.landmark_temporal_attention = TemporalAttentionPool(
        cfg.attention_hidden, cfg.temporal_attention, dtype
      )
    self.dropout = nn.Dropout(cfg.dropout_rate)
    # float32 whatever the compute dtype: logits feed a softmax cross-entropy.
    self.classifier = nn.Dense(cfg.num_classes, dtype=jnp.float32, param_dtype=jnp.float32)
    if self.has_stream_heads:
      self.image_classifier = nn.Dense(cfg.num_classes, dtype=jnp.float32, param_dtype=jnp.float32)
      self.landmark_classifier = nn.Dense(
        cfg.num_classes, dtype=jnp.float32, param_dtype=jnp.float32
      )

  @property
  def has_stream_heads(self) -> bool:
    # With one stream its head would read what the classifier reads: nothing to add.
    cfg = self.config
    return cfg.stream_heads and cfg.image_stream and cfg.landmark_stream

  @property
  def frames_independent(self) -> bool:
    """Whether encode_frames encodes each frame on its own (a frame-by-frame stream can)."""
    cfg = self.config
    return not (cfg.spatial_attention and cfg.spatial_attention_input == "deviation")

  def encode_frames(self, inputs, frame_mask, train: bool = False):
    """Per-frame image encoding, independent across frames except for BN batch stats and,
    with spatial_attention_input "deviation", the clip mean map the attention reads.

    inputs: (B,T,112,112,3) pixels in [0,1] or (B,T,h,w,C) stage-3 feature maps.
    Returns (frame_vectors (B,T,head_width) float32, spatial_maps (B,T,h,w) float32);
    both are zero on masked frames.
    """
    cfg = self.config
    if not cfg.image_stream:
      raise ValueError("encode_frames needs image_stream=True")
    if inputs is None or inputs.ndim != 5:
      raise ValueError(f"expected (B, T, H, W, C) inputs, got {getattr(inputs, 'shape', None)}")
    batch, steps = inputs.shape[:2]
    x, valid, bn_mask = self._flat_frames(inputs, frame_mask)
    if cfg.input_mode == "pixels":
      if cfg.freeze_trunk:
        # Stored statistics even in training, and nothing flows back into the trunk:
        # its output is a constant of the step, as cached features would be.
        x = jax.lax.stop_gradient(self.trunk(x, False, bn_mask))
      else:
        x = self.trunk(x, train, bn_mask)
    spatial = None
    if cfg.spatial_attention and cfg.spatial_attention_position == "trunk":
      x, spatial = self._attend(x, valid, batch, steps)
    x = self.head(x, train, bn_mask)
    if cfg.spatial_attention and cfg.spatial_attention_position == "head":
      x, spatial = self._attend(x, valid, batch, steps)
    if spatial is None:
      spatial = jnp.zeros(x.shape[:3], jnp.float32)
    vectors = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    vectors = jnp.where(valid[:, None], vectors, 0.0)
    spatial = jnp.where(valid[:, None, None], spatial, 0.0)
    return (
      vectors.reshape(batch, steps, -1),
      spatial.reshape(batch, steps, *spatial.shape[1:]),
    )

  def _attend(self, x, valid, batch: int, steps: int):
    reference = None
    if self.config.spatial_attention_input == "deviation":
      reference = clip_mean_map(x, valid, batch, steps)
    return self.spatial_attention(x, reference)

  def _flat_frames(self, inputs, frame_mask):
    """(B,T,...) -> (B*T,...) in the compute dtype, normalised in pixel mode, zero where
    masked; with the validity (B*T,) and BatchNorm's statistics mask."""
    cfg = self.config
    batch, steps = inputs.shape[:2]
    valid = frame_mask.astype(bool).reshape(batch * steps)
    x = inputs.reshape(batch * steps, *inputs.shape[2:]).astype(jnp.float32)
    if cfg.input_mode == "pixels":
      x = normalize_pixels(x, cfg.pixel_norm)
    x = jnp.where(valid[:, None, None, None], x, 0.0).astype(cfg.compute_dtype)
    # A batch with no valid frame at all would give BatchNorm an empty mean (NaN); let
    # its (zeroed) frames count then, which keeps the step finite.
    bn_mask = (valid | ~jnp.any(valid))[:, None, None, None]
    return x, valid, bn_mask

  def trunk_features(self, inputs, frame_mask):
    """(B,T,112,112,3) pixels in [0,1] -> (B,T,h,w,C) float32 stage-3 maps, eval mode.

    Exactly what the head reads in pixel mode, so a features-mode model given these maps
    (and this model's other parameters) computes the same logits. Zero on masked frames.
    """
    cfg = self.config
    if cfg.input_mode != "pixels" or not cfg.image_stream:
      raise ValueError("trunk_features needs a pixel-mode model with the image stream")
    if inputs is None or inputs.ndim != 5:
      raise ValueError(f"expected (B, T, H, W, C) inputs, got {getattr(inputs, 'shape', None)}")
    batch, steps = inputs.shape[:2]
    x, valid, bn_mask = self._flat_frames(inputs, frame_mask)
    x = self.trunk(x, False, bn_mask).astype(jnp.float32)
    x = jnp.where(valid[:, None, None, None], x, 0.0)
    return x.reshape(batch, steps, *x.shape[1:])

  def classify_clip(
    self, frame_vectors, landmarks, frame_mask, train: bool = False, with_embedding: bool = False
  ):
    """Temporal pooling of each stream, fusion and classification -> (logits, aux).

    frame_vectors: (B,T,D) from `encode_frames` (ignored, may be None, without the image
    stream); landmarks: (B,T,68,2) (may be None without the landmark stream).
    with_embedding adds aux["embedding"], the fused clip vector the classifier reads
    (before dropout), for the triplet objective (stress_jax/objectives.py).
    """
    cfg = self.config
    mask = frame_mask.astype(bool)
    parts, aux = [], {}
    if cfg.image_stream:
      if frame_vectors is None:
        raise ValueError("image_stream=True needs frame vectors")
      pooled, weights = self.temporal_attention(frame_vectors, mask)
      parts.append((pooled, weights, frame_vectors))
      aux["temporal_attention"] = weights
    if cfg.landmark_stream:
      if landmarks is None:
        raise ValueError("landmark_stream=True needs landmarks (B, T, 68, 2)")
      per_frame = self.landmark_mlp(
        landmark_features(landmarks, mask, cfg.landmark_reference).astype(cfg.compute_dtype)
      )
      pooled, weights = self.landmark_temporal_attention(per_frame, mask)
      parts.append((pooled, weights, per_frame))
      aux["landmark_temporal_attention"] = weights
    heads = self.has_stream_heads
    fused = [p for p, _, _ in parts]
    if heads and cfg.detach_stream_attention:
      # Same values as `pooled`; only the gradient path differs. Fused, the streams can
      # split the work (one attends to cue frames, the other to rest frames) and each
      # stream's weights would follow that split rather than its own evidence.
      fused = [pool_frames(jax.lax.stop_gradient(w), v, mask) for _, w, v in parts]
    clip = jnp.concatenate(fused, axis=-1)
    if with_embedding:
      aux["embedding"] = clip
    clip = self.dropout(clip, deterministic=not train)
    if heads:
      own = clip
      if cfg.detach_stream_attention:
        own = self.dropout(jnp.concatenate([p for p, _, _ in parts], -1), deterministic=not train)
      image, landmark = jnp.split(own, [parts[0][0].shape[-1]], axis=-1)
      stream_logits = self.image_classifier(image), self.landmark_classifier(landmark)
      if train:
        aux["image_logits"], aux["landmark_logits"] = stream_logits
    return self.classifier(clip), aux

  def __call__(
    self, inputs, landmarks, frame_mask, train: bool = False, with_embedding: bool = False
  ):
    """(frames or features, landmarks, frame_mask) -> (logits, aux); see the module doc."""
    spatial = vectors = None
    if self.config.image_stream:
      vectors, spatial = self.encode_frames(inputs, frame_mask, train)
    logits, aux = self.classify_clip(vectors, landmarks, frame_mask, train, with_embedding)
    if spatial is not None:
      aux["spatial_attention"] = spatial
    return logits, aux


def build_model(model_config: Any) -> StressNet:
  """StressNet from `configs.common.model_config()` (a ConfigDict, mapping or StressNetConfig)."""
  return StressNet(StressNetConfig.from_any(model_config))


def dummy_inputs(model_config: Any, batch: int = 1, num_frames: int = 2):
  """Zero (inputs, landmarks, frame_mask) of the right shapes, for init or shape checks.

  A disabled stream's input is None. frame_mask is all True.
  """
  cfg = StressNetConfig.from_any(model_config)
  inputs = landmarks = None
  if cfg.image_stream:
    if cfg.input_mode == "pixels":
      shape = (batch, num_frames, 112, 112, 3)
    else:
      shape = (batch, num_frames, 7, 7, cfg.feature_channels)
    inputs = jnp.zeros(shape, jnp.float32)
  if cfg.landmark_stream:
    landmarks = jnp.zeros((batch, num_frames, NUM_LANDMARKS, 2), jnp.float32)
  return inputs, landmarks, jnp.ones((batch, num_frames), bool)


def init_variables(model: StressNet, rng: jax.Array, batch: int = 1, num_frames: int = 2):
  """{'params', 'batch_stats'} for `model`, initialised on `dummy_inputs`."""
  return model.init({"params": rng}, *dummy_inputs(model.config, batch, num_frames), train=False)


def count_params(tree: Mapping) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(tree))
