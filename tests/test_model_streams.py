"""StressNet's streams: landmark descriptor, ablation switches, stream heads, bfloat16, the
split API (encode_frames / classify_clip), spatial-map inputs and positions."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stress_jax.models import StressNetConfig, build_model, init_variables, landmark_features
from stress_jax.models.stressnet import clip_mean_map
from tests.model_helpers import (
  MASK,
  TINY,
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


@pytest.mark.parametrize("reference", ["mean", "median"])
def test_image_reference_removes_what_every_frame_of_a_clip_shares(reference):
  cfg = tiny(input_mode="features", image_reference=reference)
  model = build_model(cfg)
  assert not model.frames_independent
  x, landmarks, mask = make_inputs(cfg)
  variables = model.init(jax.random.key(0), x, landmarks, mask, train=False)
  (logits, aux), _ = forward(cfg, variables, x, landmarks, mask)
  # A face's own constant look (one map added to every frame of a clip, another clip
  # another map) is what the reference takes away: nothing downstream sees it.
  look = np.random.default_rng(3).normal(0, 2.0, (x.shape[0], 1, *x.shape[2:]))
  (logits2, aux2), _ = forward(cfg, variables, x + look, landmarks, mask)
  np.testing.assert_allclose(logits2, logits, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(aux2["spatial_attention"], aux["spatial_attention"], atol=1e-5)
  # Masked frames do not move the reference.
  x3, landmarks3 = corrupt_masked(x, landmarks, mask)
  (logits3, _), _ = forward(cfg, variables, x3, landmarks3, mask)
  np.testing.assert_array_equal(logits3, logits)
  # In training too (batch statistics, dropout with the same key).
  (train_logits, _), _ = forward(cfg, variables, x, landmarks, mask, train=True)
  (train_logits3, _), _ = forward(cfg, variables, x3, landmarks3, mask, train=True)
  np.testing.assert_allclose(train_logits3, train_logits, rtol=1e-5, atol=1e-5)
  # Without the reference, the same constant look changes the prediction.
  plain = tiny(input_mode="features")
  plain_vars = build_model(plain).init(jax.random.key(0), x, landmarks, mask, train=False)
  (before, _), _ = forward(plain, plain_vars, x, landmarks, mask)
  (after, _), _ = forward(plain, plain_vars, x + look, landmarks, mask)
  assert not np.allclose(before, after, atol=1e-3)


def test_clip_median_map_ignores_an_outlying_frame():
  x = np.zeros((1 * 5, 1, 1, 2), np.float32)
  x[:, 0, 0, 0] = [1.0, 2.0, 3.0, 100.0, -50.0]
  valid = np.array([True, True, True, True, False])
  out = np.asarray(clip_mean_map(jnp.asarray(x), jnp.asarray(valid), 1, 5, "median"))
  # Median of the valid 1, 2, 3, 100 is 2.5 (numpy's even-count rule); the mean would be 26.5.
  np.testing.assert_allclose(out[:, 0, 0, 0], 2.5)
  with pytest.raises(ValueError, match="image_reference must be one of"):
    tiny(image_reference="mode")


def test_appended_departure_doubles_the_heads_input_and_keeps_the_frames_own_map():
  cfg = tiny(input_mode="features", image_reference="median", image_reference_mode="append")
  paths = param_paths(cfg)
  channels = cfg.feature_channels
  assert paths["head/block1/conv1/kernel"][2] == 2 * channels
  assert param_paths(tiny(input_mode="features"))["head/block1/conv1/kernel"][2] == channels
  model = build_model(cfg)
  x, landmarks, mask = make_inputs(cfg)
  variables = model.init(jax.random.key(0), x, landmarks, mask, train=False)
  (logits, _), _ = forward(cfg, variables, x, landmarks, mask)
  # The frame's own map still reaches the head, so a face's constant look counts again.
  look = np.random.default_rng(3).normal(0, 2.0, (x.shape[0], 1, *x.shape[2:]))
  (moved, _), _ = forward(cfg, variables, x + look, landmarks, mask)
  assert not np.allclose(moved, logits, atol=1e-3)
  x2, landmarks2 = corrupt_masked(x, landmarks, mask)
  (masked, _), _ = forward(cfg, variables, x2, landmarks2, mask)
  np.testing.assert_array_equal(masked, logits)
  with pytest.raises(ValueError, match="image_reference_mode must be one of"):
    tiny(image_reference_mode="both")
