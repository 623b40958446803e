"""StressNet (Jeon et al., Sensors 2021) in flax.linen: `build_model(config.model)`."""

from stress_jax.models.stressnet import (
  StressNet,
  StressNetConfig,
  build_model,
  count_params,
  dummy_inputs,
  init_variables,
  landmark_features,
  normalize_pixels,
  resolve_dtype,
)

__all__ = [
  "StressNet",
  "StressNetConfig",
  "build_model",
  "count_params",
  "dummy_inputs",
  "init_variables",
  "landmark_features",
  "normalize_pixels",
  "resolve_dtype",
]
