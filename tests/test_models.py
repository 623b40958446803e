"""StressNet: shapes, attention normalisation, masking, ablation switches, dtype, API."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from stress_jax.configs import common
from stress_jax.models import (
  StressNetConfig,
  build_model,
  count_params,
  dummy_inputs,
  init_variables,
  landmark_features,
)
from stress_jax.models.stressnet import clip_mean_map

B, T, C = 2, 4, 3
# Frame 2 of clip 0 is masked between valid frames (velocity must skip it); clip 1 has a
# single valid frame.
MASK = np.array([[True, True, False, True], [True, False, False, False]])

TINY = dict(
  stem_width=8,
  stage_widths=(8, 16, 32),
  stage_blocks=(1, 1, 1),
  head_width=32,
  head_blocks=1,
  attention_hidden=16,
  landmark_hidden=16,
  dropout_rate=0.5,  # inert in eval mode; train-mode tests hold the dropout rng fixed
  num_classes=C,
)


def tiny(**overrides) -> StressNetConfig:
  cfg = common.model_config()
  cfg.update({**TINY, **overrides})
  return StressNetConfig.from_any(cfg)


def make_inputs(cfg: StressNetConfig, seed: int = 0, mask=MASK):
  rng = np.random.default_rng(seed)
  steps = mask.shape[1]
  if cfg.input_mode == "pixels":
    # Per-frame brightness, so frames differ and attention has something to prefer.
    x = rng.uniform(0, 1, (B, steps, 112, 112, 3)) * rng.uniform(0.3, 1, (B, steps, 1, 1, 1))
  else:
    x = np.maximum(rng.normal(0, 1, (B, steps, 7, 7, cfg.feature_channels)), 0)
  # A plausible face: canonical eye positions plus jitter, so the inter-ocular scale is real.
  landmarks = rng.uniform(0.2, 0.8, (B, steps, 68, 2))
  landmarks[:, :, 36:42] = [0.33, 0.38] + rng.normal(0, 0.01, (B, steps, 6, 2))
  landmarks[:, :, 42:48] = [0.67, 0.38] + rng.normal(0, 0.01, (B, steps, 6, 2))
  return (
    jnp.asarray(x, jnp.float32),
    jnp.asarray(landmarks, jnp.float32),
    jnp.asarray(mask),
  )


def corrupt_masked(x, landmarks, mask, seed=1):
  """Garbage (large but finite) wherever the mask is False; valid frames untouched."""
  rng = np.random.default_rng(seed)
  m = np.asarray(mask)
  x = np.array(x)
  landmarks = np.array(landmarks)
  x[~m] = rng.normal(0, 1e4, x[~m].shape)
  landmarks[~m] = rng.normal(0, 1e6, landmarks[~m].shape)
  return jnp.asarray(x), jnp.asarray(landmarks)


@functools.cache
def base_variables():
  """Variables of the full tiny pixel model, drawn in numpy on init's abstract tree.

  XLA takes 5-15 s on a busy CPU to compile flax's init (dozens of PRNG kernels), more
  than all forward passes here together; `test_init_variables_runs` covers the real init.
  Kernels scaled by fan-in keep activations O(1); running statistics away from (0, 1) make the
  eval-mode BatchNorm differ from the train-mode one.
  """
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      gain = 2 if len(leaf.shape) == 4 else 1  # He for ReLU convs, LeCun for Dense
      value = rng.normal(0, np.sqrt(gain / fan_in), leaf.shape)
    elif name in ("scale", "var"):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    else:  # bias, mean
      value = rng.normal(0, 0.1, leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract_variables(tiny()))


def variables_for(cfg: StressNetConfig):
  """The base variables cut down to `cfg`'s parameter tree (shapes checked against init).

  Ablations only drop subtrees, except the classifier, whose input rows are the image
  clip vector followed by the landmark clip vector.
  """
  base = {col: traverse_util.flatten_dict(tree) for col, tree in base_variables().items()}
  want = abstract_variables(cfg)
  out = {}
  for col, tree in want.items():
    flat = {}
    for path, leaf in traverse_util.flatten_dict(tree).items():
      value = base[col][path]
      if path == ("classifier", "kernel") and value.shape != leaf.shape:
        rows = leaf.shape[0]
        value = value[:rows] if cfg.image_stream else value[-rows:]
      assert value.shape == leaf.shape, (path, value.shape, leaf.shape)
      flat[path] = value
    out[col] = traverse_util.unflatten_dict(flat)
  return out


@functools.cache
def forward_fn(cfg: StressNetConfig, train: bool):
  model = build_model(cfg)
  if train:
    return jax.jit(
      lambda v, x, lm, m, rng: model.apply(
        v, x, lm, m, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
      )
    )
  return jax.jit(lambda v, x, lm, m, rng: (model.apply(v, x, lm, m), None))


def forward(cfg, variables, x, landmarks, mask, train=False, rng=None):
  """((logits, aux), new_state or None)."""
  rng = jax.random.key(7) if rng is None else rng
  return forward_fn(cfg, train)(variables, x, landmarks, mask, rng)


@functools.cache
def abstract_variables(cfg: StressNetConfig):
  model = build_model(cfg)
  return jax.eval_shape(lambda rng: init_variables(model, rng, 1, 2), jax.random.key(0))


def param_paths(cfg: StressNetConfig) -> dict[str, tuple[int, ...]]:
  flat = traverse_util.flatten_dict(abstract_variables(cfg)["params"], sep="/")
  return {path: leaf.shape for path, leaf in flat.items()}


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


# --- landmarks ----------------------------------------------------------------------------


def test_landmark_features_normalise_position_scale_and_velocity():
  cfg = tiny()
  _, landmarks, mask = make_inputs(cfg)
  features_fn = jax.jit(landmark_features)  # one compile instead of one per op
  features = np.asarray(features_fn(landmarks, mask))
  assert features.shape == (B, T, 408)
  shape = features[..., :136].reshape(B, T, 68, 2)
  valid = np.asarray(mask)
  np.testing.assert_allclose(shape[valid].mean(axis=1), 0.0, atol=1e-5)
  eyes = shape[valid][:, 42:48].mean(1) - shape[valid][:, 36:42].mean(1)
  np.testing.assert_allclose(np.linalg.norm(eyes, axis=-1), 1.0, rtol=1e-5)

  # A different position and size of the face in every frame changes nothing.
  rng = np.random.default_rng(3)
  scale = rng.uniform(0.5, 2.0, (B, T, 1, 1))
  shift = rng.uniform(-0.3, 0.3, (B, T, 1, 2))
  moved = features_fn(jnp.asarray(np.asarray(landmarks) * scale + shift), mask)
  np.testing.assert_allclose(moved, features, atol=1e-4)

  velocity = features[..., 136:272]
  deviation = features[..., 272:]
  # Deviation is centred per clip over valid frames and equals shape minus that mean.
  for b in range(B):
    np.testing.assert_allclose(deviation[b][valid[b]].mean(0), 0.0, atol=1e-5)
    clip_mean = features[b][valid[b], :136].mean(0)
    np.testing.assert_allclose(
      deviation[b][valid[b]], features[b][valid[b], :136] - clip_mean, atol=1e-5
    )
  step = features[0, 1, :136] - features[0, 0, :136]
  np.testing.assert_allclose(velocity[0, 1], step, atol=1e-6)
  assert np.abs(step).max() > 1e-3  # the frames really moved
  # First frame, a masked frame, and the valid frame right after a masked one.
  for b, t in [(0, 0), (1, 0), (0, 2), (0, 3)]:
    np.testing.assert_array_equal(velocity[b, t], 0.0)
  np.testing.assert_array_equal(features[~valid], 0.0)


def test_median_reference_leaves_frames_without_a_cue_at_zero_deviation():
  # Seven frames of one resting face; frames 2 and 3 press the lips (a cue); frame 6 is
  # padding whose garbage must not shift the reference.
  rng = np.random.default_rng(5)
  rest = rng.uniform(0.2, 0.8, (68, 2))
  rest[36:42], rest[42:48] = [0.33, 0.38], [0.67, 0.38]
  clip = np.repeat(rest[None], 7, axis=0)
  clip[2:4, 48:68, 1] -= 0.04
  clip[6] = 50.0
  mask = np.array([[True] * 6 + [False]])
  landmarks = jnp.asarray(clip[None], jnp.float32)
  deviation = {
    ref: np.asarray(landmark_features(landmarks, jnp.asarray(mask), ref))[0, :, 272:]
    for ref in ("median", "mean")
  }
  rest_frames, cue_frames = [0, 1, 4, 5], [2, 3]
  np.testing.assert_allclose(deviation["median"][rest_frames], 0.0, atol=1e-6)
  assert np.abs(deviation["median"][cue_frames]).max() > 0.05
  # The mean is pulled toward the cue frames, so the rest frames deviate (the other way).
  assert np.abs(deviation["mean"][rest_frames]).max() > 0.02
  np.testing.assert_array_equal(deviation["median"][6], 0.0)
  with pytest.raises(ValueError, match="landmark_reference must be one of"):
    StressNetConfig(landmark_reference="mode")


# --- ablation switches ------------------------------------------------------------------


def test_each_switch_removes_exactly_its_parameters():
  full = param_paths(tiny())
  groups = {p.split("/")[0] for p in full}
  assert groups == {
    "trunk",
    "head",
    "spatial_attention",
    "temporal_attention",
    "landmark_mlp",
    "landmark_temporal_attention",
    "classifier",
  }
  head_width, landmark_width = 32, 16
  assert full["classifier/kernel"] == (head_width + landmark_width, C)

  def removed(**switch):
    ablated = param_paths(tiny(**switch))
    assert set(ablated) <= set(full), switch
    changed = {p for p in ablated if p != "classifier/kernel" and ablated[p] != full[p]}
    assert not changed, changed
    return set(full) - set(ablated), ablated["classifier/kernel"]

  gone, classifier = removed(spatial_attention=False)
  assert gone == {"spatial_attention/conv/kernel", "spatial_attention/conv/bias"}
  assert classifier == full["classifier/kernel"]

  gone, classifier = removed(temporal_attention=False)
  assert gone == {
    f"{stream}/{layer}/{leaf}"
    for stream in ("temporal_attention", "landmark_temporal_attention")
    for layer in ("score_hidden", "score_out")
    for leaf in ("kernel", "bias")
  }
  assert classifier == full["classifier/kernel"]

  gone, classifier = removed(landmark_stream=False)
  assert gone == {
    p for p in full if p.startswith(("landmark_mlp/", "landmark_temporal_attention/"))
  }
  assert classifier == (head_width, C)

  gone, classifier = removed(image_stream=False)
  image = ("trunk/", "head/", "spatial_attention/", "temporal_attention/")
  assert gone == {p for p in full if p.startswith(image)}
  assert classifier == (landmark_width, C)


def test_stream_heads_add_one_classifier_per_stream_and_logits_only_in_training():
  cfg = tiny(input_mode="features", stream_heads=True)
  paths = param_paths(cfg)
  head_width, landmark_width = 32, 16
  assert paths["image_classifier/kernel"] == (head_width, C)
  assert paths["landmark_classifier/kernel"] == (landmark_width, C)
  assert set(paths) - set(param_paths(tiny(input_mode="features"))) == {
    f"{s}_classifier/{leaf}" for s in ("image", "landmark") for leaf in ("kernel", "bias")
  }
  model = build_model(cfg)
  x, landmarks, mask = make_inputs(cfg)
  variables = init_variables(model, jax.random.key(0))
  _, aux = model.apply(variables, x, landmarks, mask)
  assert "image_logits" not in aux and "landmark_logits" not in aux
  rngs = {"dropout": jax.random.key(1)}
  logits, aux = model.apply(
    variables, x, landmarks, mask, train=True, rngs=rngs, mutable=["batch_stats"]
  )[0]
  assert aux["image_logits"].shape == aux["landmark_logits"].shape == logits.shape
  # The image head reads the image stream's pooled vector alone: landmarks do not reach it.
  # (Moving the mouth: landmark features do not change under a translation of the face.)
  moved = model.apply(
    variables,
    x,
    landmarks.at[:, :, 48:68].add(0.05),
    mask,
    train=True,
    rngs=rngs,
    mutable=["batch_stats"],
  )[0][1]
  np.testing.assert_allclose(moved["image_logits"], aux["image_logits"], rtol=1e-6)
  assert not np.allclose(moved["landmark_logits"], aux["landmark_logits"])
  # One stream: its head would duplicate the classifier, so none is made.
  alone = param_paths(tiny(input_mode="features", stream_heads=True, image_stream=False))
  assert not any(p.endswith("_classifier/kernel") for p in alone)


def test_detached_stream_attention_learns_only_from_its_own_head():
  cfg = tiny(input_mode="features", stream_heads=True, detach_stream_attention=True)
  model = build_model(cfg)
  x, landmarks, mask = make_inputs(cfg)
  variables = init_variables(model, jax.random.key(0))
  rngs = {"dropout": jax.random.key(1)}

  def output(params, name):
    logits, aux = model.apply(
      {**variables, "params": params}, x, landmarks, mask, True, rngs=rngs, mutable=["batch_stats"]
    )[0]
    return {"fused": logits, "image": aux["image_logits"], "landmark": aux["landmark_logits"]}[
      name
    ].sum()

  def size(grads, module):
    return sum(float(jnp.abs(leaf).sum()) for leaf in jax.tree.leaves(grads[module]))

  reached = {
    name: {
      module: size(jax.grad(output)(variables["params"], name), module)
      for module in ("temporal_attention", "landmark_temporal_attention", "classifier")
    }
    for name in ("fused", "image", "landmark")
  }
  assert reached["fused"]["temporal_attention"] == 0.0
  assert reached["fused"]["landmark_temporal_attention"] == 0.0
  assert reached["fused"]["classifier"] > 0
  assert reached["image"]["temporal_attention"] > 0
  assert reached["image"]["landmark_temporal_attention"] == 0.0
  assert reached["landmark"]["landmark_temporal_attention"] > 0
  # Only the gradient path differs: evaluation logits equal the undetached model's.
  plain = build_model(tiny(input_mode="features", stream_heads=True))
  np.testing.assert_allclose(
    model.apply(variables, x, landmarks, mask)[0],
    plain.apply(variables, x, landmarks, mask)[0],
    rtol=1e-6,
  )
  with pytest.raises(ValueError, match="detach_stream_attention needs stream_heads"):
    StressNetConfig(detach_stream_attention=True)


def test_image_only_and_landmark_only_models_run():
  image_only = tiny(input_mode="features", landmark_stream=False)
  x, landmarks, mask = make_inputs(image_only)
  (logits, aux), _ = forward(image_only, variables_for(image_only), x, None, mask)
  assert logits.shape == (B, C) and "landmark_temporal_attention" not in aux
  landmark_only = tiny(image_stream=False)
  (logits, aux), _ = forward(landmark_only, variables_for(landmark_only), None, landmarks, mask)
  assert logits.shape == (B, C)
  assert set(aux) == {"landmark_temporal_attention"}


def test_invalid_configs_raise():
  with pytest.raises(ValueError, match="at least one stream"):
    build_model(tiny(image_stream=False, landmark_stream=False))
  with pytest.raises(ValueError, match="unknown model config"):
    build_model({**TINY, "stage_width": (8,)})
  # A field older runs wrote that never changed the function still loads.
  assert build_model({**TINY, "conv_chunk_images": 32}).config == build_model(TINY).config
  cfg = tiny(input_mode="features")
  x, _, mask = make_inputs(cfg)
  model = build_model(cfg)
  with pytest.raises(ValueError, match="needs landmarks"):
    jax.eval_shape(lambda v: model.apply(v, x, None, mask), abstract_variables(cfg))


# --- dtype and API ----------------------------------------------------------------------


def test_bfloat16_forward_close_to_float32():
  f32 = tiny()
  bf16 = tiny(dtype="bfloat16")
  variables = variables_for(f32)
  # Same parameters: the config dtype changes compute only, never the parameter tree.
  as_shapes = functools.partial(jax.tree_util.tree_map, lambda a: (a.shape, a.dtype))
  assert as_shapes(abstract_variables(bf16)) == as_shapes(abstract_variables(f32))
  x, landmarks, mask = make_inputs(f32)
  (ref, ref_aux), _ = forward(f32, variables, x, landmarks, mask)
  (out, aux), _ = forward(bf16, variables, x, landmarks, mask)
  assert out.dtype == jnp.float32 and aux["temporal_attention"].dtype == jnp.float32
  # bfloat16 keeps 8 mantissa bits (relative step 2**-8 ~ 0.4%); a dozen conv/BN layers
  # compound that to ~1% of the logit scale (0.7% measured on these inputs); allow 5%.
  scale = float(np.max(np.abs(ref)))
  np.testing.assert_allclose(out, ref, atol=0.05 * scale)
  np.testing.assert_allclose(aux["temporal_attention"], ref_aux["temporal_attention"], atol=0.02)
  assert not np.array_equal(out, ref)  # it really did compute in bfloat16


def test_classify_clip_ignores_cached_vectors_of_masked_frames():
  """Streaming caches encode_frames' vectors; a masked frame's slot may hold anything."""
  cfg = tiny(input_mode="features")
  model = build_model(cfg)
  variables = variables_for(cfg)
  x, landmarks, mask = make_inputs(cfg)
  vectors, spatial = jax.jit(functools.partial(model.apply, method="encode_frames"))(
    variables, x, mask
  )
  assert vectors.shape == (B, T, 32) and spatial.shape == (B, T, 7, 7)
  np.testing.assert_array_equal(vectors[~MASK], 0.0)
  np.testing.assert_array_equal(spatial[~MASK], 0.0)
  assert np.all(np.any(np.asarray(vectors)[MASK] != 0.0, axis=-1))
  logits, aux = jax.jit(functools.partial(model.apply, method="classify_clip"))(
    variables, vectors, landmarks, mask
  )

  # A cache may hold anything for masked frames; classify_clip must not read it.
  garbage = jnp.where(jnp.asarray(MASK)[..., None], vectors, 1e6)
  logits2, aux2 = jax.jit(functools.partial(model.apply, method="classify_clip"))(
    variables, garbage, landmarks, mask
  )
  np.testing.assert_array_equal(logits2, logits)
  np.testing.assert_array_equal(aux2["temporal_attention"], aux["temporal_attention"])


def test_deviation_map_reads_the_clip_mean_of_valid_frames_only():
  cfg = tiny(input_mode="features", spatial_attention_input="deviation")
  model = build_model(cfg)
  assert not model.frames_independent and build_model(tiny()).frames_independent
  variables = model.init(jax.random.key(0), *make_inputs(cfg), train=False)
  # CBAM's mean and max of the map and of its distance from the clip's mean map.
  assert variables["params"]["spatial_attention"]["conv"]["kernel"].shape[2] == 4
  x, landmarks, mask = make_inputs(cfg)
  (logits, aux), _ = forward(cfg, variables, x, landmarks, mask)
  x2, landmarks2 = corrupt_masked(x, landmarks, mask)
  (logits2, aux2), _ = forward(cfg, variables, x2, landmarks2, mask)
  np.testing.assert_array_equal(logits, logits2)
  np.testing.assert_array_equal(aux["spatial_attention"], aux2["spatial_attention"])
  # Changing one valid frame moves the clip mean, so another valid frame's map changes;
  # with CBAM's own input the other frames' maps stay exactly as they were.
  first, other = np.flatnonzero(np.asarray(mask[0]))[:2]
  x3 = x.at[0, first].multiply(3.0)
  (_, aux3), _ = forward(cfg, variables, x3, landmarks, mask)
  assert not np.allclose(aux["spatial_attention"][0, other], aux3["spatial_attention"][0, other])
  pooled = tiny(input_mode="features")
  pooled_vars = build_model(pooled).init(jax.random.key(0), *make_inputs(pooled), train=False)
  (_, before), _ = forward(pooled, pooled_vars, x, landmarks, mask)
  (_, after), _ = forward(pooled, pooled_vars, x3, landmarks, mask)
  np.testing.assert_array_equal(
    before["spatial_attention"][0, other], after["spatial_attention"][0, other]
  )


def test_clip_mean_map_averages_each_clips_valid_frames():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2 * 3, 2, 2, 4)).astype(np.float32)
  valid = np.array([True, False, True, False, False, False])
  out = np.asarray(clip_mean_map(jnp.asarray(x), jnp.asarray(valid), 2, 3)).reshape(2, 3, 2, 2, 4)
  want = (x[0] + x[2]) / 2
  for t in range(3):
    np.testing.assert_allclose(out[0, t], want, rtol=1e-6)
  np.testing.assert_array_equal(out[1], 0.0)  # a clip with no valid frame


def test_trunk_position_gates_the_heads_input():
  cfg = tiny(
    input_mode="features", spatial_attention_position="trunk", spatial_attention_mode="gate"
  )
  model = build_model(cfg)
  x, landmarks, mask = make_inputs(cfg)
  variables = model.init(jax.random.key(0), x, landmarks, mask, train=False)
  # A closed gate (a = sigmoid(-1e4) = 0 everywhere) hands the head zeros whatever the
  # frames hold, so any two inputs give the same frame vectors: the head's output on 0.
  params = jax.tree_util.tree_map(lambda v: v, variables["params"])
  params["spatial_attention"]["conv"]["bias"] = jnp.full((1,), -1e4)
  closed = {**variables, "params": params}
  encode = lambda v, inputs: model.apply(v, inputs, mask, method="encode_frames")  # noqa: E731
  vectors, maps = encode(closed, x)
  zeros, _ = encode(closed, jnp.zeros_like(x))
  np.testing.assert_allclose(vectors, zeros, rtol=1e-6, atol=1e-6)
  assert maps.shape[2:] == x.shape[2:4]  # the trunk's (here: the input features') grid
  # Open, the frames reach the head.
  vectors_open, _ = encode(variables, x)
  assert not np.allclose(vectors_open, zeros)
  with pytest.raises(ValueError, match="spatial_attention_position must be one of"):
    tiny(spatial_attention_position="stem")
