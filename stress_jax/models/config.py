"""StressNetConfig: the model section of a config, checked and frozen, and its constants."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from stress_jax.errors import ConfigError
from stress_jax.models.attention import SPATIAL_INPUTS, SPATIAL_MODES

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

LANDMARK_REFERENCES = ("mean", "median")
# What the image stream subtracts from each frame's stage-3 map before anything else
# reads it: nothing (""), or the clip's per-cell mean or median over its valid frames.
IMAGE_REFERENCES = ("", "mean", "median")
# How the departure reaches the head: in place of the frame's map, or appended to it.
IMAGE_REFERENCE_MODES = ("subtract", "append")
# Where the spatial map acts: after the head (the authors' code) or on the trunk's map,
# where each cell's features mix less of the face, before the head's convolutions.
SPATIAL_POSITIONS = ("head", "trunk")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Fields older versions wrote into config.json that changed only how fast the model ran
# (conv_chunk_images: a chunked convolution, replaced by nn.Conv); their runs still load.
RETIRED_FIELDS = frozenset({"conv_chunk_images"})


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
  # "" or a reference map (IMAGE_REFERENCES) taken from every frame's stage-3 map, so the
  # head and both attentions see how a frame departs from the same person's other frames.
  image_reference: str = ""
  # "subtract": the head reads the departure only; "append": [map, departure], so twice
  # the channels (a stressed clip is mostly cue frames, so its median is one of them).
  image_reference_mode: str = "subtract"
  image_stream: bool = True
  stream_heads: bool = False
  # With stream heads: each stream's frame weights learn only from its own head; the
  # fused classifier reads the same pooled vectors with the weights behind a stop_gradient.
  detach_stream_attention: bool = False
  # Training only, both streams: the chance per clip that one whole stream (either, with
  # equal odds) is zeroed before fusion, so the fused classifier cannot lean on one.
  modality_dropout: float = 0.0
  # Inference only, needs stream_heads: the logits are the mean of the fused classifier's
  # and the two stream heads' logits (stress_jax/models/fusion.py).
  combine_stream_logits: bool = False
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
    if self.image_reference not in IMAGE_REFERENCES:
      raise ConfigError(
        f"image_reference must be one of {IMAGE_REFERENCES}, got {self.image_reference!r}"
      )
    if self.image_reference_mode not in IMAGE_REFERENCE_MODES:
      raise ConfigError(
        f"image_reference_mode must be one of {IMAGE_REFERENCE_MODES}, "
        f"got {self.image_reference_mode!r}"
      )
    if self.detach_stream_attention and not self.stream_heads:
      raise ConfigError(
        "detach_stream_attention needs stream_heads: without them the temporal attention "
        "would get no gradient at all"
      )
    if not 0.0 <= self.modality_dropout < 1.0:
      raise ConfigError(f"model.modality_dropout must be in [0, 1), got {self.modality_dropout}")
    if self.combine_stream_logits and not self.stream_heads:
      raise ConfigError(
        "model.combine_stream_logits needs model.stream_heads: it averages their logits"
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
    if "modality_dropout" in values:
      values["modality_dropout"] = float(values["modality_dropout"])
    if values.get("dtype") == "auto":
      # An API user building from a shipped config gets the dtype train.py would run.
      import jax

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
