"""StressNet: the spatial-temporal stress classifier of Jeon et al. (Sensors 2021).

Its config is models/config.py; what each stream reads before attention, models/streams.py;
the fusion switches beyond the paper's concatenation, models/fusion.py.

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

`model.image_reference` ("mean" or "median") subtracts the clip's reference map from
every frame's stage-3 map before the head, so the image stream reads how each frame
departs from the same face's other frames (the landmark stream's deviation, for pixels);
with `model.image_reference_mode="append"` the head reads [map, departure] instead.
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
With `modality_dropout` > 0 (and both streams), training calls also return
aux["image_kept"] and aux["landmark_kept"] (B,) float32: 0 where that clip's stream was
dropped. With `combine_stream_logits`, eval calls return the mean of the fused and the
two stream heads' logits. Both switches: stress_jax/models/fusion.py.
With `with_embedding=True`, also aux["embedding"] (B, D): the fused clip vector that the
classifier reads (before dropout), for the triplet objective.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stress_jax.faces.geometry import NUM_LANDMARKS
from stress_jax.models import fusion
from stress_jax.models.attention import SpatialAttention, TemporalAttentionPool, pool_frames
from stress_jax.models.config import (  # noqa: F401 (re-exported: older import paths)
  LANDMARK_REFERENCES,
  PIXEL_MEAN,
  PIXEL_NORMS,
  PIXEL_STD,
  RETIRED_FIELDS,
  SPATIAL_POSITIONS,
  StressNetConfig,
  resolve_dtype,
)
from stress_jax.models.resnet import ResidualHead, ResNetTrunk
from stress_jax.models.streams import (  # noqa: F401 (re-exported: older import paths)
  LANDMARK_FEATURES,
  MIN_INTEROCULAR,
  LandmarkMLP,
  clip_mean_map,
  landmark_features,
  masked_median,
  normalize_pixels,
)


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
  def drops_modalities(self) -> bool:
    cfg = self.config
    return cfg.modality_dropout > 0 and cfg.image_stream and cfg.landmark_stream

  @property
  def frames_independent(self) -> bool:
    """Whether encode_frames encodes each frame on its own (a frame-by-frame stream can)."""
    cfg = self.config
    if cfg.image_reference:
      return False
    return not (cfg.spatial_attention and cfg.spatial_attention_input == "deviation")

  def encode_frames(self, inputs, frame_mask, train: bool = False):
    """Per-frame image encoding, independent across frames except for BN batch stats,
    the clip reference map that image_reference subtracts and, with spatial_attention_input
    "deviation", the clip mean map the attention reads.

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
    if cfg.image_reference:
      reference = clip_mean_map(x, valid, batch, steps, cfg.image_reference)
      departure = jnp.where(valid[:, None, None, None], x - reference, 0.0).astype(x.dtype)
      x = (
        departure
        if cfg.image_reference_mode == "subtract"
        else jnp.concatenate([x, departure], axis=-1)
      )
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
    pooled = [p for p, _, _ in parts]
    fused = pooled
    if heads and cfg.detach_stream_attention:
      # Same values as `pooled`; only the gradient path differs. Fused, the streams can
      # split the work (one attends to cue frames, the other to rest frames) and each
      # stream's weights would follow that split rather than its own evidence.
      fused = [pool_frames(jax.lax.stop_gradient(w), v, mask) for _, w, v in parts]
    if with_embedding:
      aux["embedding"] = jnp.concatenate(fused, axis=-1)
    if train and self.drops_modalities:
      keep = fusion.modality_keep(self.make_rng("dropout"), mask.shape[0], cfg.modality_dropout)
      fused, pooled = fusion.drop_streams(fused, keep), fusion.drop_streams(pooled, keep)
      aux["image_kept"], aux["landmark_kept"] = (k.astype(jnp.float32) for k in keep)
    clip = self.dropout(jnp.concatenate(fused, axis=-1), deterministic=not train)
    logits = self.classifier(clip)
    if heads:
      own = clip
      if cfg.detach_stream_attention:
        own = self.dropout(jnp.concatenate(pooled, -1), deterministic=not train)
      image, landmark = jnp.split(own, [pooled[0].shape[-1]], axis=-1)
      stream_logits = self.image_classifier(image), self.landmark_classifier(landmark)
      if train:
        aux["image_logits"], aux["landmark_logits"] = stream_logits
      elif cfg.combine_stream_logits:
        logits = fusion.combine_logits(logits, *stream_logits)
    return logits, aux

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
