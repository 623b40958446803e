"""Triplet sampling over a training split, for the triplet objective (objectives.py).

Every training clip is an anchor once per epoch (the epoch order is the usual shuffled
one); with it come a positive (same label, another subject) and a negative (same subject,
another label), drawn uniformly from the split with the example's random generator, so a
triplet is a pure function of (seed, position) like the rest of the pipeline and is the
same on any number of hosts.

The index (label and subject of every clip) is read once, without decoding frames or
feature maps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

# The three roles, in the order a triplet row stacks them.
ROLES = ("anchor", "positive", "negative")
_HEAVY = ("frames", "features", "landmarks", "cue_region")


class _Undecoded(tfds.decode.Decoder):
  """Leaves a feature as stored: the index needs labels and subjects, not pictures."""

  def decode_example(self, serialized):
    return serialized

  def decode_example_np(self, serialized):
    return serialized

  def decode_batch_example_np(self, serialized):
    return serialized


class TripletError(ValueError):
  """The split cannot give every clip a positive and a negative; one line naming why."""


@dataclasses.dataclass(frozen=True)
class ClipIndex:
  """Task label and subject of each clip of a data source, in source order."""

  labels: np.ndarray  # (N,) int
  subjects: np.ndarray  # (N,) str

  @classmethod
  def read(cls, handle, subjects) -> ClipIndex:
    features = handle.builder.info.features
    decoders = {k: _Undecoded() for k in _HEAVY if k in features}
    source = handle.builder.as_data_source(split="+".join(sorted(subjects)), decoders=decoders)
    labels, names = [], []
    for i in range(len(source)):
      record = source[i]
      labels.append(int(handle.label_map[int(record["label"])]))
      subject = record["subject"]
      names.append(subject.decode("utf-8") if isinstance(subject, bytes) else str(subject))
    return cls(np.asarray(labels, np.int64), np.asarray(names))


class TripletSampler:
  """Index -> (positive index, negative index) under the rules in the module docstring."""

  def __init__(self, index: ClipIndex):
    self.index = index
    labels, subjects = index.labels, index.subjects
    groups = {}
    for i, key in enumerate(zip(labels.tolist(), subjects.tolist(), strict=True)):
      groups.setdefault(key, []).append(i)
    by_label = {k: np.flatnonzero(labels == k) for k in np.unique(labels)}
    by_subject = {s: np.flatnonzero(subjects == s) for s in np.unique(subjects)}
    self._positive_pool, self._negative_pool = {}, {}
    for label, subject in groups:
      positives = by_label[label][subjects[by_label[label]] != subject]
      negatives = by_subject[subject][labels[by_subject[subject]] != label]
      if positives.size == 0:
        raise TripletError(
          f"triplet objective: label {label} occurs only in subject {subject}, so its clips "
          "have no positive (same label, another subject)"
        )
      if negatives.size == 0:
        raise TripletError(
          f"triplet objective: subject {subject} has clips of one label only ({label}), so "
          "they have no negative (same subject, another label)"
        )
      self._positive_pool[label, subject] = positives
      self._negative_pool[label, subject] = negatives

  def __len__(self) -> int:
    return len(self.index.labels)

  def draw(self, anchor: int, rng: np.random.Generator) -> tuple[int, int]:
    key = (int(self.index.labels[anchor]), str(self.index.subjects[anchor]))
    positives, negatives = self._positive_pool[key], self._negative_pool[key]
    return int(rng.choice(positives)), int(rng.choice(negatives))


class TripletTransform:
  """grain random_map: anchor index -> one row whose arrays stack (anchor, positive, negative)."""

  def __init__(self, source, sampler: TripletSampler, clip_transform):
    self.source = source
    self.sampler = sampler
    self.clip_transform = clip_transform

  def __call__(self, anchor, rng: np.random.Generator) -> dict:
    anchor = int(anchor)
    positive, negative = self.sampler.draw(anchor, rng)
    clips = [self.clip_transform(self.source[i], rng) for i in (anchor, positive, negative)]
    return {key: np.stack([clip[key] for clip in clips]) for key in clips[0]}
