"""Numeric config fields checked against their meaningful range before a run starts.

A negative learning rate trains by gradient ascent and exits 0; a zero batch size
dies on a division deep in the input pipeline. Each field below is checked before
anything is opened or written, and the first one out of range is one ConfigError
naming the field as the config spells it and the range it takes.
"""

from __future__ import annotations

import math

from stress_jax.errors import ConfigError

# field: (low, high, low inclusive, high inclusive, integer). None: unbounded.
_AT_LEAST_1 = (1, None, True, False, True)
_AT_LEAST_0 = (0, None, True, False, True)
_NON_NEGATIVE = (0, None, True, False, False)
_POSITIVE = (0, None, False, False, False)
_FRACTION = (0, 1, True, False, False)  # [0, 1)

RANGES = {
  "seed": (None, None, False, False, True),
  "data.num_frames": _AT_LEAST_1,
  "protocol.num_folds": (2, None, True, False, True),
  "protocol.num_val_subjects": _AT_LEAST_0,
  "protocol.seed": (None, None, False, False, True),
  "input.batch_size": _AT_LEAST_1,
  "input.eval_batch_size": _AT_LEAST_1,
  "input.num_workers": _AT_LEAST_0,
  "input.prefetch_batches": _AT_LEAST_0,
  "input.augment.brightness": _FRACTION,
  "input.augment.contrast": _FRACTION,
  "model.stem_width": _AT_LEAST_1,
  "model.stage_widths": _AT_LEAST_1,
  "model.stage_blocks": _AT_LEAST_1,
  "model.head_width": _AT_LEAST_1,
  "model.head_blocks": _AT_LEAST_0,
  "model.spatial_kernel_size": _AT_LEAST_1,
  "model.attention_hidden": _AT_LEAST_1,
  "model.landmark_hidden": _AT_LEAST_1,
  "model.dropout_rate": _FRACTION,
  "model.conv_chunk_images": _AT_LEAST_0,
  "optim.learning_rate": _POSITIVE,
  "optim.warmup_steps": _AT_LEAST_0,
  "optim.end_learning_rate_factor": (0, 1, True, True, False),
  "optim.weight_decay": _NON_NEGATIVE,
  "optim.momentum": _FRACTION,
  "optim.clip_norm": _NON_NEGATIVE,  # 0 = no clipping
  "train.num_epochs": _AT_LEAST_1,
  "train.num_steps": (None, None, False, False, True),  # <= 0: num_epochs decides
  "train.log_every_steps": _AT_LEAST_1,
  "train.eval_every_steps": (None, None, False, False, True),  # <= 0: once per epoch
  "train.checkpoint_every_steps": _AT_LEAST_1,
  "train.keep_checkpoints": _AT_LEAST_1,
  "train.triplet_margin": _NON_NEGATIVE,
  "train.triplet_weight": _NON_NEGATIVE,
  "train.stream_loss_weight": _NON_NEGATIVE,
}


# "best": chosen on the validation subjects; "last": the final step's.
REPORT_CHECKPOINTS = ("best", "last")


def allowed(spec) -> str:
  low, high, low_in, high_in, integer = spec
  kind = "an integer" if integer else "a number"
  if low is not None and high is not None:
    return f"{kind} in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
  if low is not None:
    return f"{kind} {'>=' if low_in else '>'} {low}"
  if high is not None:
    return f"{kind} {'<=' if high_in else '<'} {high}"
  return kind


def _fits(value, spec) -> bool:
  low, high, low_in, high_in, integer = spec
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return False
  if integer and not (isinstance(value, int) or float(value).is_integer()):
    return False
  if not math.isfinite(value):
    return False
  if low is not None and (value < low or (value == low and not low_in)):
    return False
  return high is None or (value < high or (value == high and high_in))


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    if part not in node:
      return None, False
    node = node[part]
  return node, True


def check(config) -> None:
  """Raises ConfigError for the first field out of its range; fields a config lacks pass."""
  num_steps, _ = _get(config, "train.num_steps")
  for field, spec in RANGES.items():
    value, present = _get(config, field)
    if not present or value is None:
      continue
    if field == "train.num_epochs" and isinstance(num_steps, int) and num_steps > 0:
      continue  # num_steps decides the length
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in values:
      if not _fits(item, spec):
        raise ConfigError(f"{field}={value!r} is out of range: it takes {allowed(spec)}")
  choice, present = _get(config, "train.report_checkpoint")
  if present and choice not in REPORT_CHECKPOINTS:
    raise ConfigError(
      f"train.report_checkpoint={choice!r} is not one of {', '.join(REPORT_CHECKPOINTS)}"
    )
  if "model" in config:
    # The model section's own checks (StressNetConfig), before any data is built.
    from stress_jax.models.config import StressNetConfig

    StressNetConfig.from_any(config.model)
