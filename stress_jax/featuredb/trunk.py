"""The trunk a feature database is written with: from a training workdir or pretrained weights.

A workdir's trunk is its checkpoint's (restored the way `stress_jax.evaluate` restores
it, with the same checks); a pretrained one is StressNet at the paper's architecture
initialised with `model.pretrained` set (stress_jax/models/pretrained.py loads it).
Either way the maps are `StressNet.trunk_features`: the pixel normalisation and the
stage-3 output the head of that model reads, in eval mode.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from stress_jax import cli


class TrunkError(cli.UserError):
  """A problem with the trunk the user named; its message is one line."""


@dataclasses.dataclass
class Trunk:
  model: Any  # a pixel-mode StressNet
  variables: dict  # {'params', 'batch_stats'}
  description: dict  # what database.json records under "trunk"
  pixel_norm: str

  def feature_fn(self):
    """jit(inputs (B,T,112,112,3) in [0,1], frame_mask (B,T)) -> (B,T,7,7,C) float32."""
    import jax

    from stress_jax.models.stressnet import StressNet

    model, variables = self.model, self.variables
    return jax.jit(
      lambda inputs, mask: model.apply(variables, inputs, mask, method=StressNet.trunk_features)
    )


def _model_summary(model_config) -> dict:
  return {
    key: (list(value) if isinstance(value, tuple | list) else value)
    for key, value in model_config.to_dict().items()
    if key in ("stem_width", "stage_widths", "stage_blocks", "dtype")
  }


def _pixel_norm(model_config) -> str:
  return str(model_config.get("pixel_norm", "") or "fixed")


def from_workdir(workdir: str, checkpoint: str = "reported") -> Trunk:
  """The trunk of a trained pixel-mode model (its reported, best, latest or step-N checkpoint)."""
  from stress_jax import evaluate
  from stress_jax.models import build_model

  try:
    config = evaluate.read_config(workdir)
    if config.model.input_mode != "pixels" or not config.model.image_stream:
      raise TrunkError(
        f"{workdir} trained a model without a pixel trunk (input_mode="
        f"{config.model.input_mode}, image_stream={config.model.image_stream})"
      )
    step, tag = evaluate.resolve_checkpoint(workdir, config, checkpoint)
    model = build_model(config.model)
    variables = evaluate.load_variables(workdir, step, model, int(config.data.num_frames))
  except evaluate.EvaluationError as error:
    raise TrunkError(str(error)) from None
  description = dict(
    workdir=str(workdir), checkpoint=tag, step=step, model=_model_summary(config.model)
  )
  return Trunk(model, variables, description, _pixel_norm(config.model))


def from_pretrained(path: str, pixel_norm: str = "imagenet", seed: int = 0) -> Trunk:
  """ResNet-18 at the paper's widths, initialised with `model.pretrained=path` loaded into
  it as a training run's first state is; the head and classifier are unused."""
  import jax

  from stress_jax.configs import common
  from stress_jax.models import build_model, init_variables

  model_config = common.model_config()
  from stress_jax.models import pretrained as pretrained_lib

  model_config.pretrained = str(path)
  model_config.pixel_norm = pixel_norm or "imagenet"  # what torchvision/timm weights expect
  try:
    model = build_model(model_config)
    variables = init_variables(model, jax.random.key(seed))
    weights = pretrained_lib.load_for_model(path, variables)
    variables = pretrained_lib.merge(variables, weights)
  except (FileNotFoundError, ValueError, KeyError) as error:
    raise TrunkError(str(error).splitlines()[0]) from None
  description = dict(pretrained=str(path), model=_model_summary(model_config))
  return Trunk(model, dict(variables), description, _pixel_norm(model_config))
