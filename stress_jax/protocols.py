"""Subject-independent evaluation protocols.

A protocol turns the sorted list of subjects into (train, validation, test)
subject sets. Test subjects are never seen in training or model selection;
validation subjects are taken from the non-test subjects, so selecting a
checkpoint on them never looks at the test fold.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stress_jax import cli


class ProtocolError(cli.UserError, ValueError):
  """The protocol config does not fit the dataset's subjects; one line says how."""


@dataclasses.dataclass(frozen=True)
class SubjectSplit:
  train: tuple[str, ...]
  val: tuple[str, ...]
  test: tuple[str, ...]

  def __post_init__(self):
    sets = [set(self.train), set(self.val), set(self.test)]
    if (sets[0] & sets[1]) or (sets[0] & sets[2]) or (sets[1] & sets[2]):
      raise ValueError("train, validation and test subjects overlap")


def num_folds(protocol_config, subjects) -> int:
  if protocol_config.kind == "loso":
    return len(subjects)
  if protocol_config.kind == "kfold":
    return int(protocol_config.num_folds)
  raise ProtocolError(f"unknown protocol kind {protocol_config.kind!r}; use 'kfold' or 'loso'")


def subject_folds(subjects, kind: str, num_folds_: int, seed: int) -> list[list[str]]:
  """Disjoint test-subject groups covering every subject once."""
  subjects = sorted(subjects)
  if kind == "loso":
    return [[s] for s in subjects]
  if not 2 <= num_folds_ <= len(subjects):
    raise ProtocolError(
      f"protocol.num_folds={num_folds_} needs between 2 and {len(subjects)} folds "
      f"for {len(subjects)} subjects"
    )
  # A fixed permutation per seed: folds mix subjects but never change between runs.
  order = np.random.default_rng(seed).permutation(len(subjects))
  return [[subjects[i] for i in sorted(group)] for group in np.array_split(order, num_folds_)]


def split_subjects(protocol_config, subjects) -> SubjectSplit:
  """The train / validation / test subjects of fold `protocol_config.fold`."""
  subjects = sorted(subjects)
  folds = subject_folds(
    subjects, protocol_config.kind, num_folds(protocol_config, subjects), protocol_config.seed
  )
  fold = int(protocol_config.fold)
  if not 0 <= fold < len(folds):
    raise ProtocolError(
      f"protocol.fold={fold} is out of range: this protocol has {len(folds)} folds"
    )
  test = folds[fold]
  # Validation subjects come from the following folds in turn: deterministic and
  # different for every test fold.
  rest = [s for k in range(1, len(folds)) for s in folds[(fold + k) % len(folds)]]
  num_val = int(protocol_config.num_val_subjects)
  if num_val >= len(rest):
    raise ProtocolError(
      f"protocol.num_val_subjects={num_val} leaves no training subject ({len(rest)} non-test)"
    )
  val = rest[:num_val]
  train = sorted(rest[num_val:])
  return SubjectSplit(train=tuple(train), val=tuple(sorted(val)), test=tuple(test))
