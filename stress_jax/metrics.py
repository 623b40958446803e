"""Classification metrics in numpy (host side), with scikit-learn's definitions.

tests/test_metrics.py checks every figure against sklearn.metrics. Undefined
per-class entries are NaN rather than 0: the precision of a class never predicted,
the recall and ROC-AUC of a class absent from the labels. Macro-F1 averages over
every class (sklearn's f1_score(labels=all, average="macro", zero_division=0)), so a
model that never predicts a class is not rewarded for it; balanced accuracy is the
mean recall over the classes present, as in sklearn.
"""

from __future__ import annotations

import numpy as np

from stress_jax import jsonio


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """Rows are true classes, columns predicted classes."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
  return matrix


def _divide_or_nan(numerator, denominator) -> np.ndarray:
  numerator = np.asarray(numerator, np.float64)
  denominator = np.asarray(denominator, np.float64)
  out = np.full_like(numerator, np.nan)
  return np.divide(numerator, denominator, out=out, where=denominator > 0)


def binary_roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
  """Area under the ROC curve via the rank-sum statistic (ties count one half)."""
  positive = np.asarray(positive, bool)
  scores = np.asarray(scores, np.float64)
  num_pos, num_neg = int(positive.sum()), int((~positive).sum())
  if num_pos == 0 or num_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  ranks = np.empty(len(scores), np.float64)
  sorted_scores = scores[order]
  # Average ranks over tied scores.
  boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
  starts = np.concatenate([[0], boundaries])
  ends = np.concatenate([boundaries, [len(scores)]])
  for start, end in zip(starts, ends, strict=True):
    ranks[order[start:end]] = (start + end + 1) / 2.0
  return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def _per_class(label_names, values) -> dict:
  return {name: float(v) for name, v in zip(label_names, values, strict=True)}


def classification_metrics(labels, probabilities, label_names) -> dict:
  """Accuracy, balanced accuracy, macro-F1, per-class precision/recall/F1, confusion, ROC-AUC.

  `absent_classes` names the classes with no example in `labels`: their recall, F1
  (unless predicted) and ROC-AUC are NaN, and `roc_auc_macro` averages the classes
  listed in `roc_auc_classes` only.
  """
  labels = np.asarray(labels, np.int64)
  probabilities = np.asarray(probabilities, np.float64)
  label_names = list(label_names)
  num_classes = len(label_names)
  if len(labels) == 0:
    raise ValueError("no examples to evaluate")
  predictions = probabilities.argmax(-1)
  matrix = confusion_matrix(labels, predictions, num_classes)
  true_per_class = matrix.sum(1)
  predicted_per_class = matrix.sum(0)
  correct = np.diag(matrix)
  recall = _divide_or_nan(correct, true_per_class)
  precision = _divide_or_nan(correct, predicted_per_class)
  # F1 = 2TP / (2TP + FP + FN): defined whenever the class is true or predicted at all.
  f1 = _divide_or_nan(2 * correct, true_per_class + predicted_per_class)
  present = true_per_class > 0
  auc = np.asarray([binary_roc_auc(labels == k, probabilities[:, k]) for k in range(num_classes)])
  scored = np.isfinite(auc)
  return {
    "accuracy": float(correct.sum() / len(labels)),
    "balanced_accuracy": float(recall[present].mean()),
    "macro_f1": float(np.nan_to_num(f1, nan=0.0).mean()),
    "precision": _per_class(label_names, precision),
    "recall": _per_class(label_names, recall),
    "f1": _per_class(label_names, f1),
    "roc_auc": _per_class(label_names, auc),
    "roc_auc_macro": float(auc[scored].mean()) if scored.any() else float("nan"),
    "roc_auc_classes": [name for name, ok in zip(label_names, scored, strict=True) if ok],
    "absent_classes": [name for name, ok in zip(label_names, present, strict=True) if not ok],
    "confusion_matrix": matrix.tolist(),
    "num_clips": int(len(labels)),
  }


def video_level(labels, probabilities, videos) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Clips -> videos: (video labels, mean clip probabilities, video names), sorted by name.

  A video's label is the most common label of its clips (ties go to the lower class
  index): a recording has one condition, but noisy clip labels may disagree with it.
  """
  labels = np.asarray(labels, np.int64)
  probabilities = np.asarray(probabilities, np.float64)
  videos = np.asarray([str(v) for v in videos])
  if not len(labels) == len(probabilities) == len(videos):
    raise ValueError(
      f"labels ({len(labels)}), probabilities ({len(probabilities)}) and videos ({len(videos)}) "
      "differ in length"
    )
  names, inverse = np.unique(videos, return_inverse=True)
  num_classes = probabilities.shape[-1]
  counts = np.zeros((len(names), num_classes), np.int64)
  np.add.at(counts, (inverse, labels), 1)
  sums = np.zeros((len(names), num_classes), np.float64)
  np.add.at(sums, inverse, probabilities)
  return counts.argmax(-1), sums / counts.sum(-1, keepdims=True), names


def mean_std(values) -> dict:
  """Mean and sample standard deviation (ddof=1; 0 for a single value) of finite values.

  `n` counts the values averaged and `dropped` the ones left out (None or NaN, e.g.
  the ROC-AUC of a fold whose test subjects lack a class), so a table can say so.
  """
  values = list(values)
  finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
  dropped = len(values) - int(finite.size)
  if finite.size == 0:
    return {"mean": float("nan"), "std": float("nan"), "n": 0, "dropped": dropped}
  std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
  return {"mean": float(finite.mean()), "std": std, "n": int(finite.size), "dropped": dropped}


# Kept for callers that only want the conversion; files are written with jsonio.write.
json_safe = jsonio.json_safe
