"""grain input pipeline over TFDS array_record data sources.

Host side (numpy, per example): decode, map labels to the task, horizontal flip
that mirrors the 68 landmark indices, temporal jitter, and draw the photometric
augmentation parameters. Device side (`device_preprocess`, inside the jitted
step): uint8 -> float32 in [0, 1] and brightness/contrast, so the host ships
uint8 and the arithmetic runs where the FLOPs are cheap.

Sharding: the global example order (shuffled per epoch from the config seed) is
the same for any number of processes; process p reads only its contiguous block
of `global_batch / P` rows of each global batch, so the global batch at each step
is the same clips in the same rows on 1 or many hosts. Per-example random
augmentation is keyed on the global position, hence identical too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import grain
import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from stress_jax import cli
from stress_jax.faces import geometry as face_geometry

# Keys that travel to the device; everything else stays on the host.
DEVICE_KEYS = ("inputs", "landmarks", "frame_mask", "label", "photometric", "valid")


@dataclasses.dataclass
class DatasetHandle:
  """An opened (built) dataset and what the pipeline needs to know about it."""

  builder: tfds.core.DatasetBuilder
  subjects: tuple[str, ...]  # split names: one split per subject
  label_names: tuple[str, ...]  # after the task mapping
  label_map: np.ndarray  # stored label -> task label
  input_key: str  # "frames" or "features"
  has_landmarks: bool
  synthetic: bool
  num_frames: int

  def source(self, subjects) -> grain.sources.RandomAccessDataSource:
    if not subjects:
      raise ValueError("no subjects selected for this split")
    unknown = sorted(set(subjects) - set(self.subjects))
    if unknown:
      raise ValueError(f"subjects not in the dataset: {unknown}")
    return self.builder.as_data_source(split="+".join(sorted(subjects)))

  def num_examples(self, subjects) -> int:
    return sum(self.builder.info.splits[s].num_examples for s in subjects)


def _task_labels(data_config, builder):
  """(class names, stored label -> task label); a task must be one the dataset declares.

  A dataset whose stored labels can be read several ways (Yonsei: 4class, 3class,
  binary) lists them on its builder as `LABEL_TASKS`; the pipeline knows no dataset.
  """
  if not data_config.task:
    stored_names = builder.info.features["label"].names
    return tuple(stored_names), np.arange(len(stored_names), dtype=np.int32)
  tasks = getattr(builder, "LABEL_TASKS", None) or {}
  if data_config.task not in tasks:
    known = ", ".join(tasks) if tasks else "none"
    raise DatasetMismatch(
      f"data.task={data_config.task!r} is not a task of {data_config.name} (its tasks: {known})"
    )
  names, mapping = tasks[data_config.task]
  return tuple(names), np.asarray(mapping, np.int32)


class DatasetError(cli.UserError, FileNotFoundError):
  """The dataset is unknown, not built, or cannot be built; one line names the problem."""


class DatasetMismatch(cli.UserError, ValueError):
  """The config does not fit the dataset (e.g. another clip length)."""


def _builder(name: str, data_dir):
  import tfds_builders

  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    # TFDS's own message lists its whole catalogue; name ours instead.
    raise DatasetError(
      f"unknown dataset {name!r}; this project's datasets are "
      f"{', '.join(tfds_builders.BUILDER_PACKAGES)} (`python -m stress_jax.data.build --help`)"
    ) from None
  except ValueError as error:  # e.g. an unknown builder config
    raise DatasetError(f"dataset {name!r}: {cli.one_line(error)[:300]}") from None


def dataset_name(data_config) -> str:
  """The TFDS name the config reads: data.simulator ('seed=7,...') names its own population."""
  import tfds_builders

  try:
    return tfds_builders.population_name(data_config.name, data_config.get("simulator", ""))
  except ValueError as error:
    raise DatasetError(f"{data_config.name}: {cli.one_line(error)}") from None


def open_dataset(data_config) -> DatasetHandle:
  """Opens a built dataset and describes it; making a missing one is the command's job.

  `stress_jax.data.build.ensure_built` (called by the commands that train) builds a
  missing dataset first where the config allows it.
  """
  data_dir = data_config.data_dir or None
  name = dataset_name(data_config)
  builder = _builder(name, data_dir)
  if not builder.is_prepared():
    raise DatasetError(
      f"dataset {name} is not built in {builder.data_dir}; build it with "
      f"`python -m stress_jax.data.build {name} --data_dir=...` first"
    )
  features = builder.info.features
  label_names, label_map = _task_labels(data_config, builder)
  input_key = "frames" if "frames" in features else "features"
  num_frames = int(features["frame_mask"].shape[0])
  if data_config.num_frames and data_config.num_frames != num_frames:
    raise DatasetMismatch(
      f"config data.num_frames={data_config.num_frames} but {data_config.name} holds "
      f"{num_frames}-frame clips"
    )
  return DatasetHandle(
    builder=builder,
    subjects=tuple(sorted(builder.info.splits.keys())),
    label_names=label_names,
    label_map=label_map,
    input_key=input_key,
    has_landmarks="landmarks" in features,
    synthetic="cue_frames" in features,
    num_frames=num_frames,
  )


class ClipTransform:
  """Record -> fixed-shape numpy arrays, with optional consistent augmentation."""

  def __init__(self, handle: DatasetHandle, augment_config=None, keep_metadata: bool = False):
    self.handle = handle
    self.augment = augment_config
    self.keep_metadata = keep_metadata

  def __call__(self, example, rng: np.random.Generator | None = None) -> dict:
    handle = self.handle
    num_frames = handle.num_frames
    if handle.input_key == "frames":
      inputs = np.stack(example["frames"]).astype(np.uint8, copy=False)
    else:
      inputs = np.asarray(example["features"], np.float16)
    if handle.has_landmarks:
      landmarks = np.asarray(example["landmarks"], np.float32)
    else:
      landmarks = np.zeros((num_frames, face_geometry.NUM_LANDMARKS, 2), np.float32)
    frame_mask = np.asarray(example["frame_mask"], bool)
    out = {
      "label": np.int32(handle.label_map[int(example["label"])]),
      "valid": np.bool_(True),
    }
    extra = {}
    if handle.synthetic:
      # cue_region: (T, 28, 28) uint8 per frame (stress_faces 2), or one (112, 112)
      # float map per clip in older records; both stay as stored.
      extra = {
        "cue_frames": np.asarray(example["cue_frames"], bool),
        "cue_region": np.asarray(example["cue_region"]),
      }
      if "cue_events" in example:
        extra["cue_events"] = np.asarray(example["cue_events"], np.float32)
    photometric = np.array([0.0, 1.0], np.float32)  # brightness shift, contrast gain
    if rng is not None and self.augment is not None:
      inputs, landmarks, frame_mask, extra = self._temporal_jitter(
        rng, inputs, landmarks, frame_mask, extra
      )
      if self.augment.flip and handle.input_key == "frames" and rng.random() < 0.5:
        inputs = inputs[:, :, ::-1]
        landmarks = face_geometry.mirror_landmarks(landmarks)
        if "cue_region" in extra:
          extra["cue_region"] = np.ascontiguousarray(extra["cue_region"][..., ::-1])
      photometric = np.array(
        [
          rng.uniform(-self.augment.brightness, self.augment.brightness),
          1.0 + rng.uniform(-self.augment.contrast, self.augment.contrast),
        ],
        np.float32,
      )
    out.update(
      inputs=np.ascontiguousarray(inputs),
      landmarks=np.ascontiguousarray(landmarks, np.float32),
      frame_mask=np.ascontiguousarray(frame_mask),
      photometric=photometric,
    )
    if self.keep_metadata:
      out.update(extra)
      out["subject"] = np.asarray(_text(example["subject"]))
      out["video"] = np.asarray(_text(example["video"]))
      out["start_frame"] = np.int32(example["start_frame"])
    return out

  def _temporal_jitter(self, rng, inputs, landmarks, frame_mask, extra):
    """Shift the clip by up to T/8 frames; vacated frames are masked, never invented."""
    max_shift = self.handle.num_frames // 8 if self.augment.temporal_jitter else 0
    shift = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
    if shift == 0:
      return inputs, landmarks, frame_mask, extra

    def roll(x, fill):
      x = np.roll(x, shift, axis=0)
      if shift > 0:
        x[:shift] = fill
      else:
        x[shift:] = fill
      return x

    # Filled landmarks repeat a real frame so the landmark stream never sees zeros
    # it could mistake for a face; the mask keeps them out of every statistic.
    edge = landmarks[0] if shift > 0 else landmarks[-1]
    extra = dict(extra)
    if "cue_frames" in extra:
      extra["cue_frames"] = roll(extra["cue_frames"].copy(), False)
    if "cue_region" in extra and extra["cue_region"].ndim == 3:  # per frame: moves with it
      extra["cue_region"] = roll(extra["cue_region"].copy(), 0)
    if "cue_events" in extra:
      events = extra["cue_events"].copy()
      used = events[:, 0] >= 0
      events[used, 1:3] = np.clip(events[used, 1:3] + shift, 0, self.handle.num_frames)
      extra["cue_events"] = events
    return (
      roll(inputs.copy(), 0),
      roll(landmarks.copy(), edge),
      roll(frame_mask.copy(), False),
      extra,
    )


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _read_options(input_config) -> grain.ReadOptions:
  return grain.ReadOptions(
    num_threads=max(1, int(input_config.get("read_threads", 2))),
    prefetch_buffer_size=int(input_config.prefetch_batches) * 8,
  )


def train_dataset(
  handle: DatasetHandle,
  subjects,
  input_config,
  *,
  seed: int,
  num_epochs: int,
  process_index: int | None = None,
  process_count: int | None = None,
  triplets: bool = False,
) -> grain.IterDataset:
  """An endless-enough training stream: `num_epochs` passes, reshuffled every epoch.

  With `triplets`, each row stacks (anchor, positive, negative) clips on a new axis 1
  (stress_jax/triplets.py); the epoch is still one pass of the clips as anchors.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  global_batch = int(input_config.batch_size)
  if global_batch % process_count:
    raise ValueError(f"batch_size={global_batch} is not divisible by {process_count} processes")
  local_batch = global_batch // process_count
  transform = ClipTransform(handle, input_config.augment)
  source = handle.source(subjects)
  if triplets:
    from stress_jax import triplets as triplet_sampling

    sampler = triplet_sampling.TripletSampler(triplet_sampling.ClipIndex.read(handle, subjects))
    stream = grain.MapDataset.range(len(source))
    transform = triplet_sampling.TripletTransform(source, sampler, transform)
  else:
    stream = grain.MapDataset.source(source)
  global_stream = (
    stream.shuffle(seed=seed)
    .repeat(num_epochs)
    # Keyed on the global position, so a clip is augmented the same on any host count.
    .random_map(transform, seed=seed + 1)
  )
  num_batches = len(global_stream) // global_batch
  dataset = (
    grain.MapDataset.range(num_batches * local_batch)
    .map(_LocalBlock(global_stream, global_batch, local_batch, process_index))
    .batch(local_batch, drop_remainder=True)
  )
  iter_dataset = dataset.to_iter_dataset(_read_options(input_config))
  if input_config.num_workers > 0:
    iter_dataset = iter_dataset.mp_prefetch(
      grain.MultiprocessingOptions(num_workers=int(input_config.num_workers))
    )
  return iter_dataset


class _LocalBlock:
  """Local position -> this process's contiguous block of each global batch.

  Process p holds rows [p*b, (p+1)*b) of every global batch, which is exactly the
  rows `make_array_from_process_local_data` assigns it: the global batch, its row
  order and so each row's dropout mask are the same for any number of processes.
  """

  def __init__(self, global_stream, global_batch: int, local_batch: int, process_index: int):
    self.global_stream = global_stream
    self.global_batch = global_batch
    self.local_batch = local_batch
    self.offset = process_index * local_batch

  def __call__(self, position: int):
    batch, row = divmod(int(position), self.local_batch)
    return self.global_stream[batch * self.global_batch + self.offset + row]


def steps_per_epoch(handle: DatasetHandle, subjects, global_batch: int) -> int:
  steps = handle.num_examples(subjects) // global_batch
  if steps == 0:
    raise cli.ConfigError(
      f"input.batch_size={global_batch} is larger than the {handle.num_examples(subjects)} "
      "training clips of this fold; use a smaller batch"
    )
  return steps


def eval_batches(
  handle: DatasetHandle,
  subjects,
  batch_size: int,
  *,
  keep_metadata: bool = False,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Iterator[dict]:
  """Every clip of `subjects` exactly once, in padded batches of `batch_size / processes`.

  The last batches are padded with copies of a real clip marked `valid=False`, and
  every process yields the same number of batches, so no clip is dropped and the
  jitted step always sees one shape.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if batch_size % process_count:
    raise ValueError(f"eval_batch_size={batch_size} is not divisible by {process_count} processes")
  local_batch = batch_size // process_count
  source = handle.source(subjects)
  total = len(source)
  per_process = math.ceil(total / process_count)
  num_batches = math.ceil(per_process / local_batch)
  transform = ClipTransform(handle, None, keep_metadata=keep_metadata)
  local = grain.MapDataset.source(source).slice(slice(process_index, None, process_count))
  local = local.map(transform)
  template = None
  for b in range(num_batches):
    examples = [local[i] for i in range(b * local_batch, min((b + 1) * local_batch, len(local)))]
    if examples and template is None:
      template = examples[0]
    if template is None:  # this process has no clip at all
      template = transform(source[0])
    padding = {**template, "valid": np.bool_(False)}
    examples += [padding] * (local_batch - len(examples))
    yield {key: np.stack([e[key] for e in examples]) for key in examples[0]}


def device_preprocess(batch: dict, dtype=jnp.float32) -> dict:
  """Runs inside jit: uint8 frames -> float in [0, 1], then brightness/contrast."""
  inputs = batch["inputs"]
  if inputs.dtype == jnp.uint8:
    frames = inputs.astype(jnp.float32) / 255.0
    brightness = batch["photometric"][:, 0].reshape(-1, 1, 1, 1, 1)
    contrast = batch["photometric"][:, 1].reshape(-1, 1, 1, 1, 1)
    frames = jnp.clip((frames - 0.5) * contrast + 0.5 + brightness, 0.0, 1.0)
    inputs = frames
  return {**batch, "inputs": inputs.astype(dtype)}


def to_global(batch: dict, sharding: jax.sharding.Sharding) -> dict:
  """This process's slice of the batch -> global arrays sharded over the mesh."""
  return {
    key: jax.make_array_from_process_local_data(sharding, np.asarray(batch[key]))
    for key in DEVICE_KEYS
  }
