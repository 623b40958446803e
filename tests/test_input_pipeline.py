"""Input pipeline and protocols: sharding, padding, augmentation consistency."""

from __future__ import annotations

import hashlib

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stress_jax import input_pipeline, protocols
from stress_jax.faces import geometry as face_geometry
from tests import fake_clips, tiny_config


@pytest.fixture(scope="module")
def handle(fake_data_dir):
  config = tiny_config.get_config()
  config.data.data_dir = str(fake_data_dir)
  return input_pipeline.open_dataset(config.data), config


def _digest(array) -> str:
  return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_eval_shards_are_disjoint_cover_the_split_and_pad_with_invalid_rows(handle):
  handle, _ = handle
  subjects = handle.subjects[:4]
  seen = []
  shapes = set()
  for process in range(3):
    batches = list(
      input_pipeline.eval_batches(
        handle, subjects, 6, keep_metadata=True, process_index=process, process_count=3
      )
    )
    shapes.add(len(batches))
    for batch in batches:
      assert batch["inputs"].shape[0] == 2
      for row in np.flatnonzero(batch["valid"]):
        seen.append((str(batch["video"][row]), int(batch["start_frame"][row])))
  assert len(shapes) == 1, "every process must run the same number of eval steps"
  total = handle.num_examples(subjects)
  assert len(seen) == total == len(set(seen))
  expected = {
    (f"s{s:02d}/v{c // 3}", c * fake_clips.NUM_FRAMES)
    for s in range(4)
    for c in range(fake_clips.CLIPS_PER_SUBJECT)
  }
  assert set(seen) == expected


def test_train_shards_form_the_same_global_batches_as_one_process(handle):
  handle, config = handle
  subjects = handle.subjects[:3]

  def stream(process_index, process_count, steps=5):
    iterator = iter(
      input_pipeline.train_dataset(
        handle,
        subjects,
        config.input,
        seed=7,
        num_epochs=2,
        process_index=process_index,
        process_count=process_count,
      )
    )
    return [next(iterator) for _ in range(steps)]

  single = stream(0, 1)
  first, second = stream(0, 2), stream(1, 2)
  for whole, a, b in zip(single, first, second, strict=True):
    for key in ("inputs", "landmarks", "frame_mask", "label", "photometric"):
      np.testing.assert_array_equal(whole[key], np.concatenate([a[key], b[key]]))
  # Within one process the per-step blocks never repeat a clip inside an epoch.
  steps_in_epoch = input_pipeline.steps_per_epoch(handle, subjects, config.input.batch_size)
  digests = [_digest(x) for batch in single[:steps_in_epoch] for x in batch["inputs"]]
  assert len(digests) == len(set(digests))


def test_epochs_are_reshuffled_and_iterator_state_resumes(handle):
  handle, config = handle
  subjects = handle.subjects[:3]
  dataset = input_pipeline.train_dataset(
    handle, subjects, config.input, seed=3, num_epochs=2, process_index=0, process_count=1
  )
  steps = input_pipeline.steps_per_epoch(handle, subjects, config.input.batch_size)
  iterator = iter(dataset)
  epochs = [[next(iterator)["label"] for _ in range(steps)] for _ in range(2)]
  assert not all(np.array_equal(a, b) for a, b in zip(*epochs, strict=True))

  iterator = iter(dataset)
  next(iterator)
  state = iterator.get_state()
  expected = next(iterator)
  resumed = iter(dataset)
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)["inputs"], expected["inputs"])


def _dot_frames(landmarks_px):
  frame = np.zeros((112, 112, 3), np.uint8)
  for x, y in landmarks_px:
    frame[int(y), int(x)] = 255
  return frame


def _cell_at(point_px) -> np.ndarray:
  region = np.zeros((28, 28), np.uint8)
  region[int(point_px[1]) // 4, int(point_px[0]) // 4] = 255
  return region


def test_flip_mirrors_frames_landmark_indices_and_cue_regions_together(handle):
  handle, _ = handle
  rng = np.random.default_rng(0)
  landmarks = rng.uniform(0.1, 0.9, (fake_clips.NUM_FRAMES, 68, 2)).astype(np.float32)
  landmarks = (np.floor(landmarks * 112) + 0.5) / 112
  frames = np.stack([_dot_frames(lm * 112) for lm in landmarks])
  example = {
    "frames": list(frames),
    "landmarks": landmarks,
    "frame_mask": np.ones(fake_clips.NUM_FRAMES, bool),
    "label": 1,
    "cue_frames": np.ones(fake_clips.NUM_FRAMES, bool),
    # Each frame's cue region: the 4x4-pixel cell under its landmark 0.
    "cue_region": np.stack([_cell_at(lm[0] * 112) for lm in landmarks]),
    "subject": b"s",
    "video": b"v",
    "start_frame": 0,
  }
  augment = ml_collections.ConfigDict(
    dict(flip=True, brightness=0.0, contrast=0.0, temporal_jitter=False)
  )
  transform = input_pipeline.ClipTransform(handle, augment, keep_metadata=True)
  flipped = None
  for seed in range(20):
    out = transform(example, np.random.default_rng(seed))
    if not np.array_equal(out["inputs"], frames):
      flipped = out
      break
  assert flipped is not None, "the flip never happened in 20 draws"
  np.testing.assert_array_equal(flipped["inputs"], frames[:, :, ::-1])
  np.testing.assert_allclose(flipped["landmarks"], face_geometry.mirror_landmarks(landmarks))
  # Every landmark still sits on its dot, and the subject's right eye moved to the
  # image's right: the indices were permuted, not just the x coordinates.
  for t in range(fake_clips.NUM_FRAMES):
    for x, y in flipped["landmarks"][t] * 112:
      assert flipped["inputs"][t, int(y), int(x), 0] == 255
  # The regions flip with the frames: each still marks the cell under its frame's point.
  np.testing.assert_array_equal(flipped["cue_region"], example["cue_region"][..., ::-1])
  for t in range(fake_clips.NUM_FRAMES):
    x, y = face_geometry.mirror_landmarks(landmarks)[t, 16] * 112  # landmark 0, mirrored
    assert flipped["cue_region"][t, int(y) // 4, int(x) // 4] == 255
  right_eye_x = flipped["landmarks"][0, face_geometry.RIGHT_EYE, 0].mean()
  np.testing.assert_allclose(right_eye_x, 1 - landmarks[0, face_geometry.LEFT_EYE, 0].mean())


def test_temporal_jitter_keeps_frames_landmarks_and_mask_aligned(handle):
  handle, _ = handle
  handle_long = type(handle)(**{**handle.__dict__, "num_frames": 16})
  frames = np.stack([np.full((112, 112, 3), 10 * t, np.uint8) for t in range(16)])
  landmarks = np.tile(np.arange(16, dtype=np.float32)[:, None, None], (1, 68, 2)) / 100
  example = {
    "frames": list(frames),
    "landmarks": landmarks,
    "frame_mask": np.ones(16, bool),
    "label": 0,
    "cue_frames": np.arange(16) == 5,
    # Frame t's region holds t + 1 in its top-left cell, so it can be followed.
    "cue_region": np.stack([np.pad([[t + 1]], ((0, 27), (0, 27))) for t in range(16)]).astype(
      np.uint8
    ),
    "cue_events": np.float32([[1, 5, 6, 0.9], [-1, 0, 0, 0], [-1, 0, 0, 0], [-1, 0, 0, 0]]),
  }
  augment = ml_collections.ConfigDict(
    dict(flip=False, brightness=0.0, contrast=0.0, temporal_jitter=True)
  )
  transform = input_pipeline.ClipTransform(handle_long, augment, keep_metadata=True)
  shifts = set()
  for seed in range(30):
    out = transform(
      {**example, "subject": b"s", "video": b"v", "start_frame": 0}, np.random.default_rng(seed)
    )
    valid = out["frame_mask"]
    frame_ids = out["inputs"][:, 0, 0, 0] // 10
    landmark_ids = np.rint(out["landmarks"][:, 0, 0] * 100)
    np.testing.assert_array_equal(frame_ids[valid], landmark_ids[valid])
    shift = int(frame_ids[valid][0]) - int(np.flatnonzero(valid)[0])
    shifts.add(-shift)
    assert valid.sum() == 16 - abs(shift)
    # The cue frame moves with the frames it belongs to.
    np.testing.assert_array_equal(
      np.flatnonzero(out["cue_frames"]), np.flatnonzero((frame_ids == 5) & valid)
    )
    # So does each frame's region (vacated frames have none), and the event's frames.
    region_ids = out["cue_region"][:, 0, 0].astype(int) - 1
    np.testing.assert_array_equal(region_ids[valid], frame_ids[valid])
    assert not out["cue_region"][~valid].any()
    if 0 <= 5 - shift < 16:
      assert out["cue_events"][0, 1] == np.flatnonzero(frame_ids == 5)[0]
  assert len(shifts) > 2 and max(abs(s) for s in shifts) <= 16 // 8


def test_device_preprocess_scales_uint8_and_applies_photometric():
  batch = {
    "inputs": jnp.full((2, 1, 2, 2, 3), 255, jnp.uint8),
    "photometric": jnp.array([[0.0, 1.0], [-0.25, 1.0]], jnp.float32),
  }
  out = input_pipeline.device_preprocess(batch)
  np.testing.assert_allclose(out["inputs"][0], 1.0)
  np.testing.assert_allclose(out["inputs"][1], 0.75)


def test_kfold_protocol_partitions_subjects_without_leaks():
  subjects = [f"s{i:02d}" for i in range(50)]
  config = ml_collections.ConfigDict(
    dict(kind="kfold", num_folds=10, fold=0, num_val_subjects=5, seed=0)
  )
  tests = []
  for fold in range(10):
    config.fold = fold
    split = protocols.split_subjects(config, subjects)
    assert len(split.test) == 5 and len(split.val) == 5 and len(split.train) == 40
    assert set(split.train) | set(split.val) | set(split.test) == set(subjects)
    tests.extend(split.test)
  assert sorted(tests) == subjects  # each subject is tested exactly once


def test_loso_protocol_and_bad_folds():
  subjects = ["a", "b", "c", "d"]
  config = ml_collections.ConfigDict(
    dict(kind="loso", num_folds=0, fold=2, num_val_subjects=1, seed=0)
  )
  split = protocols.split_subjects(config, subjects)
  assert split.test == ("c",) and len(split.val) == 1 and "c" not in split.train + split.val
  config.fold = 4
  with pytest.raises(ValueError, match="out of range"):
    protocols.split_subjects(config, subjects)
  config.kind, config.fold, config.num_folds = "kfold", 0, 9
  with pytest.raises(ValueError, match="num_folds"):
    protocols.split_subjects(config, subjects)
