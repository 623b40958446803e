"""The triplet objective: sampling rules, the loss arithmetic, and training steps that run."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stress_jax import input_pipeline, objectives, steps, triplets
from stress_jax.models import build_model
from tests import tiny_config


@pytest.fixture(scope="module")
def handle(fake_data_dir):
  config = tiny_config.get_config()
  config.data.data_dir = str(fake_data_dir)
  return input_pipeline.open_dataset(config.data), config


def test_clip_index_matches_the_records(handle):
  handle, _ = handle
  subjects = handle.subjects[:4]
  index = triplets.ClipIndex.read(handle, subjects)
  source = handle.source(subjects)
  assert len(index.labels) == len(source)
  for i in range(len(source)):
    record = source[i]
    assert index.labels[i] == int(record["label"])
    assert index.subjects[i] == record["subject"].decode()


def test_positives_never_share_the_subject_negatives_always_do(handle):
  handle, _ = handle
  index = triplets.ClipIndex.read(handle, handle.subjects)
  sampler = triplets.TripletSampler(index)
  rng = np.random.default_rng(0)
  seen_positive_subjects = set()
  for anchor in range(len(sampler)):
    for _ in range(5):
      positive, negative = sampler.draw(anchor, rng)
      assert index.labels[positive] == index.labels[anchor]
      assert index.subjects[positive] != index.subjects[anchor]
      assert index.subjects[negative] == index.subjects[anchor]
      assert index.labels[negative] != index.labels[anchor]
      seen_positive_subjects.add(index.subjects[positive])
  # Positives come from every subject, not from one fixed choice.
  assert seen_positive_subjects == set(index.subjects.tolist())


def test_sampler_names_a_subject_without_negatives():
  index = triplets.ClipIndex(np.array([0, 1, 0, 0, 1]), np.array(["a", "a", "b", "b", "c"]))
  with pytest.raises(triplets.TripletError, match="subject b has clips of one label only"):
    triplets.TripletSampler(index)
  index = triplets.ClipIndex(np.array([0, 1, 0, 2]), np.array(["a", "a", "b", "b"]))
  with pytest.raises(triplets.TripletError, match="label 1 occurs only in subject a"):
    triplets.TripletSampler(index)


def test_train_dataset_rows_stack_anchor_positive_negative(handle):
  handle, config = handle
  subjects = handle.subjects[:4]
  dataset = input_pipeline.train_dataset(
    handle,
    subjects,
    config.input,
    seed=3,
    num_epochs=1,
    process_index=0,
    process_count=1,
    triplets=True,
  )
  batches = list(dataset)
  b = config.input.batch_size
  assert len(batches) == handle.num_examples(subjects) // b  # an epoch of anchors
  batch = batches[0]
  assert batch["inputs"].shape == (b, 3, handle.num_frames, 112, 112, 3)
  assert batch["landmarks"].shape == (b, 3, handle.num_frames, 68, 2)
  assert batch["frame_mask"].shape == (b, 3, handle.num_frames)
  labels = np.concatenate([x["label"] for x in batches])
  assert labels.shape == (len(batches) * b, 3)
  np.testing.assert_array_equal(labels[:, 1], labels[:, 0])
  assert np.all(labels[:, 2] != labels[:, 0])
  # fake_clips frames are brightness-coded by label: the positive looks like the anchor's
  # class, the negative like another (a check that the rows hold the sampled clips).
  mean = batch["inputs"].reshape(b, 3, -1).mean(-1)
  assert np.all(np.abs(mean[:, 0] - mean[:, 1]) < np.abs(mean[:, 0] - mean[:, 2]) + 25)


def test_triplet_term_by_hand():
  anchors = jnp.array([[0.0, 0.0], [1.0, 1.0]])
  positives = jnp.array([[1.0, 1.0], [1.0, 1.0]])  # mean squared distance 1, then 0
  negatives = jnp.array([[1.0, 0.0], [4.0, 4.0]])  # 0.5 (inside the margin), then 9
  embeddings = jnp.concatenate([anchors, positives, negatives])
  term, parts = objectives.triplet_term(embeddings, margin=2.0)
  # Triplet 0: 1 + (2 - 0.5) = 2.5; triplet 1: 0 + max(0, 2 - 9) = 0.
  assert float(term) == pytest.approx(1.25)
  assert float(parts["triplet_positive"]) == pytest.approx(0.5)
  assert float(parts["triplet_negative"]) == pytest.approx(4.75)
  # Invalid (padding) anchors do not count.
  term, _ = objectives.triplet_term(embeddings, 2.0, weights=jnp.array([0.0, 1.0]))
  assert float(term) == 0.0

  logits = jnp.zeros((6, 3))
  labels = jnp.array([0, 1, 0, 1, 2, 2])
  weights = jnp.ones(6)
  objective = objectives.Objective("triplet", margin=2.0, weight=0.5)
  loss, terms = objectives.training_loss(
    objective, logits, {"embedding": embeddings}, labels, weights
  )
  # Uniform logits: cross-entropy log 3 for each of the six clips, plus 0.5 * 1.25.
  assert float(terms["cross_entropy"]) == pytest.approx(np.log(3))
  assert float(loss) == pytest.approx(np.log(3) + 0.625)
  plain, extra = objectives.training_loss(objectives.Objective(), logits, {}, labels, weights)
  assert float(plain) == pytest.approx(np.log(3)) and extra == {}


def test_stream_cross_entropies_are_added_with_their_weight():
  labels = jnp.array([0, 1, 2, 0])
  weights = jnp.array([1.0, 1.0, 1.0, 0.0])  # the last row is padding
  logits = jnp.zeros((4, 3))
  image = jnp.eye(3)[jnp.array([0, 1, 2, 1])] * 5.0  # confident and right on valid rows
  landmark = jnp.zeros((4, 3))
  aux = {"image_logits": image, "landmark_logits": landmark}
  objective = objectives.Objective(stream_weight=0.5)
  loss, terms = objectives.training_loss(objective, logits, aux, labels, weights)
  right = float(objectives.cross_entropy(image, labels, weights))
  assert right == pytest.approx(-np.log(np.exp(5) / (np.exp(5) + 2)), rel=1e-5)
  stream = (right + np.log(3)) / 2
  assert float(terms["stream_cross_entropy"]) == pytest.approx(stream, rel=1e-5)
  assert float(terms["cross_entropy"]) == pytest.approx(np.log(3))
  assert float(loss) == pytest.approx(np.log(3) + 0.5 * stream, rel=1e-5)
  # Weight 0 (the default) leaves the plain loss, whatever the model returns.
  plain, extra = objectives.training_loss(objectives.Objective(), logits, aux, labels, weights)
  assert float(plain) == pytest.approx(np.log(3)) and extra == {}
  # With the triplet objective both terms add up.
  both = objectives.Objective("triplet", weight=1.0, stream_weight=0.5)
  embeddings = jnp.zeros((6, 2))
  loss, terms = objectives.training_loss(
    both,
    jnp.zeros((6, 3)),
    {"embedding": embeddings, "landmark_logits": jnp.zeros((6, 3))},
    jnp.zeros(6, jnp.int32),
    jnp.ones(6),
  )
  assert float(loss) == pytest.approx(np.log(3) + 0.5 * np.log(3) + 2.0, rel=1e-5)


def test_objective_config_is_checked():
  with pytest.raises(ValueError, match="train.objective must be one of"):
    objectives.Objective("contrastive")
  with pytest.raises(ValueError, match=r"^train.triplet_weight must be >= 0, got -1.0$"):
    objectives.Objective("triplet", margin=2.0, weight=-1.0)
  with pytest.raises(ValueError, match=r"^train.triplet_margin must be >= 0, got -0.5$"):
    objectives.Objective("triplet", margin=-0.5)
  with pytest.raises(ValueError, match=r"^train.stream_loss_weight must be >= 0, got -1.0$"):
    objectives.Objective(stream_weight=-1.0)
  assert objectives.Objective.from_config(tiny_config.get_config().train).name == "cross_entropy"


# Pixel input runs the same step end to end in test_ablation (the triplet variant trains
# on fake_clips); here feature maps, the Yonsei layout, on a fixed batch.
@pytest.mark.parametrize("input_mode", ["features"])
def test_triplet_train_steps_run_and_reduce_the_loss(input_mode):
  config = tiny_config.get_config()
  model_config = config.model
  model_config.input_mode = input_mode
  model = build_model(model_config)
  b, t = 2, 2
  rng = np.random.default_rng(0)
  shape = (112, 112, 3) if input_mode == "pixels" else (7, 7, model_config.stage_widths[-1])
  dtype = np.uint8 if input_mode == "pixels" else np.float16
  inputs = (rng.uniform(0, 255, (b, 3, t, *shape))).astype(dtype)
  batch = {
    "inputs": inputs,
    "landmarks": rng.uniform(0.2, 0.8, (b, 3, t, 68, 2)).astype(np.float32),
    "frame_mask": np.ones((b, 3, t), bool),
    "label": np.array([[0, 0, 1], [2, 2, 0]], np.int32),
    "photometric": np.tile(np.array([0.0, 1.0], np.float32), (b, 3, 1)),
    "valid": np.ones((b, 3), bool),
  }
  tx = optax.adam(1e-2)
  schedule = optax.constant_schedule(1e-2)
  plain = {k: v[:, 0] for k, v in batch.items()}
  state = steps.init_state(model, tx, jax.random.key(0), plain, dtype=jnp.float32)
  objective = objectives.Objective("triplet", margin=2.0, weight=1.0)
  step = jax.jit(
    functools.partial(
      steps.train_step,
      model=model,
      tx=tx,
      schedule=schedule,
      dtype=jnp.float32,
      objective=objective,
    )
  )
  losses = []
  for _ in range(3):
    state, metrics = step(state, batch, jax.random.key(1))
    losses.append(float(metrics["loss"]))
    assert {"cross_entropy", "triplet", "triplet_positive", "triplet_negative"} <= set(metrics)
    assert float(metrics["loss"]) == pytest.approx(
      float(metrics["cross_entropy"]) + float(metrics["triplet"]), rel=1e-5
    )
  assert int(state.step) == 3
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_detached_attention_without_a_stream_loss_is_refused(fake_data_dir, tmp_path):
  from stress_jax.trainer import Trainer

  config = tiny_config.get_config()
  config.data.data_dir = str(fake_data_dir)
  assert config.model.stream_heads and config.model.detach_stream_attention
  config.train.stream_loss_weight = 0.0
  with pytest.raises(ValueError, match="detach_stream_attention needs train.stream_loss_weight"):
    Trainer(config, tmp_path / "run")
