"""Classification metrics in numpy (host side), no scikit-learn needed."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """Rows are true classes, columns predicted classes."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
  return matrix


def _safe_divide(numerator, denominator):
  numerator = np.asarray(numerator, np.float64)
  denominator = np.asarray(denominator, np.float64)
  return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


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


def classification_metrics(labels, probabilities, label_names) -> dict:
  """Accuracy, balanced accuracy, macro-F1, per-class precision/recall, confusion, ROC-AUC."""
  labels = np.asarray(labels, np.int64)
  probabilities = np.asarray(probabilities, np.float64)
  num_classes = len(label_names)
  if len(labels) == 0:
    raise ValueError("no examples to evaluate")
  predictions = probabilities.argmax(-1)
  matrix = confusion_matrix(labels, predictions, num_classes)
  true_per_class = matrix.sum(1)
  predicted_per_class = matrix.sum(0)
  correct = np.diag(matrix)
  recall = _safe_divide(correct, true_per_class)
  precision = _safe_divide(correct, predicted_per_class)
  f1 = _safe_divide(2 * precision * recall, precision + recall)
  present = true_per_class > 0
  auc = [binary_roc_auc(labels == k, probabilities[:, k]) for k in range(num_classes)]
  finite_auc = [a for a in auc if np.isfinite(a)]
  return {
    "accuracy": float(correct.sum() / len(labels)),
    "balanced_accuracy": float(recall[present].mean()),
    "macro_f1": float(f1[present].mean()),
    "precision": {name: float(p) for name, p in zip(label_names, precision, strict=True)},
    "recall": {name: float(r) for name, r in zip(label_names, recall, strict=True)},
    "f1": {name: float(v) for name, v in zip(label_names, f1, strict=True)},
    "roc_auc": {name: a for name, a in zip(label_names, auc, strict=True)},
    "roc_auc_macro": float(np.mean(finite_auc)) if finite_auc else float("nan"),
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
  """Mean and sample standard deviation (ddof=1; 0 for a single value) of finite values."""
  values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
  if values.size == 0:
    return {"mean": float("nan"), "std": float("nan"), "n": 0}
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  return {"mean": float(values.mean()), "std": std, "n": int(values.size)}


def json_safe(value):
  """NaN/inf -> None, numpy scalars and arrays -> Python: json.dumps then writes strict JSON."""
  if isinstance(value, dict):
    return {str(k): json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v) for v in value]
  if isinstance(value, np.ndarray):
    return json_safe(value.tolist())
  if isinstance(value, (np.floating, float)):
    return float(value) if np.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.bool_):
    return bool(value)
  return value
