"""The fusion switches (stress_jax/models/fusion.py): modality dropout, combined logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stress_jax.models import StressNetConfig, build_model
from stress_jax.models.fusion import modality_keep
from stress_jax.objectives import Objective, training_loss
from tests.model_helpers import B, T, drawn_variables, make_inputs, tiny

IMAGE_MODULES = ("head", "spatial_attention", "temporal_attention", "image_classifier")
LANDMARK_MODULES = ("landmark_mlp", "landmark_temporal_attention", "landmark_classifier")


def _size(tree) -> float:
  return sum(float(jnp.abs(leaf).sum()) for leaf in jax.tree.leaves(tree))


def test_modality_keep_drops_one_stream_at_the_rate_and_never_both():
  image, landmark = map(
    np.asarray, jax.jit(modality_keep, static_argnums=(1, 2))(jax.random.key(0), 20_000, 0.3)
  )
  assert not np.any(~image & ~landmark)
  dropped = (~image | ~landmark).mean()
  assert dropped == pytest.approx(0.3, abs=0.015)
  assert (~image).mean() == pytest.approx(0.15, abs=0.01)
  assert (~landmark).mean() == pytest.approx(0.15, abs=0.01)
  image, landmark = modality_keep(jax.random.key(0), 100, 0.0)
  assert np.all(image) and np.all(landmark)


@pytest.fixture(scope="module")
def dropping():
  """A features-mode model with stream heads and modality dropout, its variables and inputs."""
  cfg = tiny(input_mode="features", stream_heads=True, modality_dropout=0.9)
  model = build_model(cfg)
  # Every frame valid: a clip with one valid frame would give its attention no gradient.
  x, landmarks, mask = make_inputs(cfg, mask=np.ones((B, T), bool))
  variables = drawn_variables(cfg)
  return model, variables, (x, landmarks, mask)


def test_a_dropped_stream_gets_no_gradient_from_that_clip(dropping):
  model, variables, inputs = dropping
  objective = Objective(stream_weight=0.5)
  labels = jnp.array([0, 2])

  @jax.jit
  def apply(params, rng):
    return model.apply(
      {**variables, "params": params},
      *inputs,
      train=True,
      rngs={"dropout": rng},
      mutable=["batch_stats"],
    )[0]

  # A dropout key under which clip 0 loses its image stream and clip 1 keeps both.
  for seed in range(200):
    rng = jax.random.key(seed)
    _, aux = apply(variables["params"], rng)
    if list(aux["image_kept"]) == [0.0, 1.0] and list(aux["landmark_kept"]) == [1.0, 1.0]:
      break
  else:
    raise AssertionError("no dropout key dropped only clip 0's image stream")

  def clip_loss(params, weights):
    logits, aux = apply(params, rng)
    return training_loss(objective, logits, aux, labels, weights)[0]

  grad = jax.jit(jax.grad(clip_loss))
  dropped = grad(variables["params"], jnp.array([1.0, 0.0]))
  kept = grad(variables["params"], jnp.array([0.0, 1.0]))
  for module in IMAGE_MODULES:
    assert _size(dropped[module]) == 0.0, module
    assert _size(kept[module]) > 0, module
  for module in (*LANDMARK_MODULES, "classifier"):
    assert _size(dropped[module]) > 0, module


def test_eval_is_deterministic_and_ignores_modality_dropout(dropping):
  model, variables, inputs = dropping
  plain = build_model(tiny(input_mode="features", stream_heads=True))
  evaluate = jax.jit(
    lambda m, rng: m.apply(variables, *inputs, rngs={"dropout": rng}), static_argnums=0
  )
  first, again = evaluate(model, jax.random.key(1)), evaluate(model, jax.random.key(2))
  reference = evaluate(plain, jax.random.key(1))
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[0], reference[0])
  assert "image_kept" not in first[1]

  # In training it does drop: two keys give different kept streams somewhere.
  @jax.jit
  def kept_image(rng):
    (_, aux), _ = model.apply(
      variables, *inputs, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
    )
    return aux["image_kept"]

  kept = [kept_image(jax.random.key(k)) for k in range(8)]
  assert len({tuple(np.asarray(k)) for k in kept}) > 1


def test_combined_logits_are_the_mean_of_the_three_heads():
  cfg = tiny(input_mode="features", stream_heads=True, combine_stream_logits=True)
  model = build_model(cfg)
  x, landmarks, mask = make_inputs(cfg)
  variables = drawn_variables(cfg, 3)
  logits, aux = jax.jit(lambda v: model.apply(v, x, landmarks, mask, with_embedding=True))(
    variables
  )
  # Recomputed in numpy from the pooled clip vectors and the three Dense layers.
  params = jax.tree.map(np.asarray, variables["params"])
  clip = np.asarray(aux["embedding"], np.float64)
  width = params["image_classifier"]["kernel"].shape[0]

  def dense(name, v):
    return v @ params[name]["kernel"] + params[name]["bias"]

  heads = [
    dense("classifier", clip),
    dense("image_classifier", clip[:, :width]),
    dense("landmark_classifier", clip[:, width:]),
  ]
  want = (heads[0] + heads[1] + heads[2]) / 3
  np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-5, atol=1e-6)
  assert not np.allclose(want, heads[0], atol=1e-3)  # the stream heads really count
  # Training reports the fused classifier's own logits (its loss trains it alone).
  no_dropout = build_model(
    tiny(input_mode="features", stream_heads=True, combine_stream_logits=True, dropout_rate=0.0)
  )
  (train_logits, train_aux), _ = jax.jit(
    lambda v: no_dropout.apply(
      v, x, landmarks, mask, train=True, with_embedding=True, mutable=["batch_stats"]
    )
  )(variables)
  train_clip = np.asarray(train_aux["embedding"], np.float64)
  np.testing.assert_allclose(
    np.asarray(train_logits), dense("classifier", train_clip), rtol=1e-5, atol=1e-6
  )


def test_fusion_switches_are_checked_and_inert_with_one_stream():
  with pytest.raises(ValueError, match="model.modality_dropout must be in"):
    StressNetConfig(modality_dropout=1.0)
  with pytest.raises(ValueError, match="combine_stream_logits needs model.stream_heads"):
    StressNetConfig(combine_stream_logits=True)
  alone = build_model(tiny(image_stream=False, stream_heads=True, modality_dropout=0.5))
  assert not alone.drops_modalities
  assert build_model(tiny(stream_heads=True, modality_dropout=0.5)).drops_modalities
