"""StressNet: shapes, attention normalisation, masking."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stress_jax.configs import common
from stress_jax.models import (
  StressNetConfig,
  build_model,
  count_params,
  dummy_inputs,
  init_variables,
)
from tests.model_helpers import (
  MASK,
  B,
  C,
  T,
  abstract_variables,
  corrupt_masked,
  forward,
  make_inputs,
  param_paths,
  tiny,
  variables_for,
)

# --- shapes and parameter counts ------------------------------------------------------


def test_init_variables_runs():
  cfg = tiny(image_stream=False)
  model = build_model(cfg)
  variables = jax.jit(lambda rng: init_variables(model, rng, B, T))(jax.random.key(0))
  as_shapes = functools.partial(jax.tree_util.tree_map, lambda a: (a.shape, a.dtype))
  assert as_shapes(variables) == as_shapes(abstract_variables(cfg))
  leaves = jax.tree_util.tree_leaves(variables)
  assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
  assert np.std(variables["params"]["landmark_mlp"]["dense1"]["kernel"]) > 0


def test_paper_trunk_matches_resnet18_through_stage3():
  cfg = StressNetConfig.from_any(common.model_config())
  model = build_model(cfg)
  shapes = jax.eval_shape(lambda rng: init_variables(model, rng), jax.random.key(0))
  # Hand count in stress_jax/models/resnet.py's docstring: stem 9,536 + stage1 147,968 +
  # stage2 525,568 + stage3 2,099,712.
  assert count_params(shapes["params"]["trunk"]) == 2_782_784
  frames, _, mask = dummy_inputs(cfg, 1, 2)
  vectors, spatial = jax.eval_shape(
    lambda v, x, m: model.apply(v, x, m, method="encode_frames"), shapes, frames, mask
  )
  assert spatial.shape == (1, 2, 7, 7)  # 112 -> 7: stride 16 from stem, pool, stages 2-3
  assert vectors.shape == (1, 2, 512)
  head_in = shapes["params"]["head"]["block1"]["proj_conv"]["kernel"].shape
  assert head_in == (1, 1, 256, 512)


@pytest.mark.parametrize("input_mode", ["pixels", "features"])
def test_output_shapes_and_dtypes(input_mode):
  cfg = tiny(input_mode=input_mode)
  x, landmarks, mask = make_inputs(cfg)
  (logits, aux), _ = forward(cfg, variables_for(cfg), x, landmarks, mask)
  assert logits.shape == (B, C) and logits.dtype == jnp.float32
  assert set(aux) == {"spatial_attention", "temporal_attention", "landmark_temporal_attention"}
  assert aux["spatial_attention"].shape == (B, T, 7, 7)
  assert aux["temporal_attention"].shape == (B, T)
  assert aux["landmark_temporal_attention"].shape == (B, T)
  assert np.all(np.isfinite(logits))


def test_feature_mode_creates_no_trunk_params():
  pixels = param_paths(tiny())
  features = param_paths(tiny(input_mode="features"))
  assert any(p.startswith("trunk/") for p in pixels)
  assert not any(p.startswith("trunk/") for p in features)
  assert set(features) == {p for p in pixels if not p.startswith("trunk/")}
  # The head reads the stage-3 map directly: C = stage_widths[-1] input channels.
  assert features["head/block1/conv1/kernel"] == (3, 3, 32, 32)


# --- attention maps and weights -------------------------------------------------------


@pytest.mark.parametrize("input_mode", ["pixels", "features"])
def test_attention_ranges_and_normalisation(input_mode):
  cfg = tiny(input_mode=input_mode)
  x, landmarks, mask = make_inputs(cfg)
  (_, aux), _ = forward(cfg, variables_for(cfg), x, landmarks, mask)
  spatial = np.asarray(aux["spatial_attention"])
  assert np.all(spatial >= 0) and np.all(spatial <= 1)
  # A real sigmoid map: values strictly inside (0, 1) that vary over the face.
  inside = spatial[MASK][(spatial[MASK] > 0) & (spatial[MASK] < 1)]
  assert inside.size > 0 and np.ptp(inside) > 1e-3
  assert np.all(spatial[~MASK] == 0)
  for key in ("temporal_attention", "landmark_temporal_attention"):
    weights = np.asarray(aux[key])
    assert np.all(weights[~MASK] == 0.0), key
    assert np.all(weights[MASK] > 0), key
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert weights[1, 0] == pytest.approx(1.0)  # the lone valid frame takes all the weight
    # Learned scores, not a plain mean: a clip with 3 valid frames is not uniform.
    assert np.ptp(weights[0, MASK[0]]) > 1e-6, key


def test_attention_switches_off():
  """temporal_attention=False pools by the masked mean; spatial_attention=False reports 0 maps."""
  cfg = tiny(input_mode="features", temporal_attention=False, spatial_attention=False)
  x, landmarks, mask = make_inputs(cfg)
  (_, aux), _ = forward(cfg, variables_for(cfg), x, landmarks, mask)
  expected = MASK / MASK.sum(axis=1, keepdims=True)
  np.testing.assert_allclose(aux["temporal_attention"], expected, rtol=1e-6)
  np.testing.assert_allclose(aux["landmark_temporal_attention"], expected, rtol=1e-6)
  assert aux["spatial_attention"].shape == (B, T, 7, 7)
  assert np.all(np.asarray(aux["spatial_attention"]) == 0)


# --- masking ----------------------------------------------------------------------------


@pytest.mark.parametrize(
  "input_mode, train", [("pixels", False), ("pixels", True), ("features", False)]
)
def test_masked_frames_do_not_change_outputs(input_mode, train):
  cfg = tiny(input_mode=input_mode)
  variables = variables_for(cfg)
  x, landmarks, mask = make_inputs(cfg)
  x2, landmarks2 = corrupt_masked(x, landmarks, mask)
  (logits, aux), state = forward(cfg, variables, x, landmarks, mask, train)
  (logits2, aux2), state2 = forward(cfg, variables, x2, landmarks2, mask, train)
  np.testing.assert_array_equal(logits, logits2)
  for key in aux:
    np.testing.assert_array_equal(aux[key], aux2[key], err_msg=key)
  if train:
    jax.tree_util.tree_map(np.testing.assert_array_equal, state, state2)
    # Dropout is live in this mode, so holding its rng fixed above was what kept it equal.
    (logits3, _), _ = forward(cfg, variables, x, landmarks, mask, train, jax.random.key(99))
    assert not np.allclose(logits, logits3)


def test_masked_padding_equals_the_unpadded_clip_in_train_mode():
  """Two valid frames vs the same two plus two masked ones: same logits and BN statistics.

  Fails if masked frames enter BatchNorm batch statistics (they are zeros by then, which
  would still shift the mean and variance) or leak into the landmark velocity.
  """
  cfg = tiny()
  variables = variables_for(cfg)
  padded_mask = np.array([[True, True, False, False]] * B)
  x, landmarks, mask = make_inputs(cfg, mask=padded_mask)
  (logits, aux), state = forward(cfg, variables, x, landmarks, mask, True)
  (short, short_aux), short_state = forward(
    cfg, variables, x[:, :2], landmarks[:, :2], mask[:, :2], True
  )
  np.testing.assert_allclose(logits, short, rtol=1e-4, atol=1e-5)
  for key in aux:
    np.testing.assert_allclose(aux[key][:, :2], short_aux[key], rtol=1e-4, atol=1e-6)
  close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6)
  jax.tree_util.tree_map(close, state, short_state)


@pytest.mark.parametrize("train", [False, True])
def test_all_masked_clip_is_finite(train):
  cfg = tiny()
  mask = np.array([[True, True, False, True], [False] * T])
  x, landmarks, mask = make_inputs(cfg, mask=mask)
  (logits, aux), state = forward(cfg, variables_for(cfg), x, landmarks, mask, train)
  assert np.all(np.isfinite(logits))
  for key in ("temporal_attention", "landmark_temporal_attention"):
    np.testing.assert_array_equal(aux[key][1], 0.0)
    np.testing.assert_allclose(aux[key][0].sum(), 1.0, rtol=1e-6)
  if train:
    # Even a batch with no valid frame at all keeps BatchNorm finite.
    none = jnp.zeros((B, T), bool)
    (logits, _), state = forward(cfg, variables_for(cfg), x, landmarks, none, True)
    assert np.all(np.isfinite(logits))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(state))


def test_gradients_are_finite_with_masked_and_empty_clips():
  """where()-based masking must not leak NaN/inf into gradients (a classic -inf pitfall)."""
  cfg = tiny(input_mode="features")
  model = build_model(cfg)
  variables = variables_for(cfg)
  mask = np.array([[True, False, True, False], [False] * T])
  x, landmarks, mask = make_inputs(cfg, mask=mask)
  x, landmarks = corrupt_masked(x, landmarks, mask)

  def loss(params):
    (logits, _), _ = model.apply(
      {**variables, "params": params},
      x,
      landmarks,
      mask,
      train=True,
      rngs={"dropout": jax.random.key(0)},
      mutable=["batch_stats"],
    )
    return jnp.sum(logits**2)

  grads = jax.jit(jax.grad(loss))(variables["params"])
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert np.any(np.asarray(grads["temporal_attention"]["score_hidden"]["kernel"]) != 0)
