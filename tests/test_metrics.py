"""stress_jax.metrics against scikit-learn's definitions, on random inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as sk

from stress_jax import crossval, metrics

# Also run by the GPU check with the accelerator as JAX's default backend.
pytestmark = pytest.mark.gpu_ok

NAMES = ("a", "b", "c", "d")


def _random_case(seed: int, absent: int | None, never_predicted: int | None):
  rng = np.random.default_rng(seed)
  num = 60
  labels = rng.integers(0, len(NAMES), num)
  if absent is not None:
    labels[labels == absent] = (absent + 1) % len(NAMES)
  logits = rng.normal(size=(num, len(NAMES)))
  if never_predicted is not None:
    logits[:, never_predicted] = -100.0
  probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  return labels, probabilities


def _nan_equal(mine: dict, theirs) -> None:
  np.testing.assert_allclose([mine[n] for n in NAMES], theirs, equal_nan=True, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
  ("absent", "never_predicted"), [(None, None), (2, None), (None, 1), (3, 0)]
)
def test_agrees_with_sklearn(seed, absent, never_predicted):
  labels, probabilities = _random_case(seed, absent, never_predicted)
  predictions = probabilities.argmax(-1)
  everything = list(range(len(NAMES)))
  got = metrics.classification_metrics(labels, probabilities, NAMES)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # sklearn warns about the absent class, as it should
    precision, recall, f1, _ = sk.precision_recall_fscore_support(
      labels, predictions, labels=everything, zero_division=np.nan
    )
    assert got["balanced_accuracy"] == pytest.approx(
      sk.balanced_accuracy_score(labels, predictions)
    )
  assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, predictions))
  assert got["macro_f1"] == pytest.approx(
    sk.f1_score(labels, predictions, labels=everything, average="macro", zero_division=0.0)
  )
  _nan_equal(got["precision"], precision)
  _nan_equal(got["recall"], recall)
  _nan_equal(got["f1"], f1)
  assert (
    got["confusion_matrix"] == sk.confusion_matrix(labels, predictions, labels=everything).tolist()
  )
  present = [k for k in everything if (labels == k).any()]
  auc = [sk.roc_auc_score(labels == k, probabilities[:, k]) for k in present]
  _nan_equal(
    got["roc_auc"], [auc[present.index(k)] if k in present else np.nan for k in everything]
  )
  assert got["roc_auc_macro"] == pytest.approx(np.mean(auc))
  if absent is None:
    # With every class present, the macro mean is sklearn's one-vs-rest macro AUC.
    assert got["roc_auc_macro"] == pytest.approx(
      sk.roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    )
  assert got["absent_classes"] == ([] if absent is None else [NAMES[absent]])
  assert got["roc_auc_classes"] == [NAMES[k] for k in present]
  if never_predicted is not None:
    assert np.isnan(got["precision"][NAMES[never_predicted]])


def test_binary_auc_is_sklearns():
  rng = np.random.default_rng(7)
  labels = rng.integers(0, 2, 40)
  scores = np.round(rng.random(40), 1)  # ties
  got = metrics.classification_metrics(labels, np.stack([1 - scores, scores], -1), ("n", "s"))
  assert got["roc_auc"]["s"] == pytest.approx(sk.roc_auc_score(labels, scores))
  assert got["roc_auc_macro"] == pytest.approx(sk.roc_auc_score(labels, scores))


def test_never_predicting_a_class_lowers_macro_f1():
  # Perfect on two classes, a third never predicted: the old mean over true classes
  # gave 1.0 when the third was absent; now macro-F1 counts every class.
  labels = np.array([0, 0, 1, 1])
  probabilities = np.eye(3)[labels]
  got = metrics.classification_metrics(labels, probabilities, ("x", "y", "z"))
  assert got["macro_f1"] == pytest.approx(2 / 3)
  assert got["absent_classes"] == ["z"] and np.isnan(got["recall"]["z"])


def test_fold_mean_says_what_it_left_out():
  stats = metrics.mean_std([0.5, None, float("nan"), 0.7])
  assert stats == {
    "mean": pytest.approx(0.6),
    "std": pytest.approx(np.std([0.5, 0.7], ddof=1)),
    "n": 2,
    "dropped": 2,
  }
  assert crossval._cell(stats).endswith("(n=2, 2 undefined)")


def test_report_names_absent_classes_and_undefined_figures():
  from stress_jax import report

  test = metrics.classification_metrics([0, 0, 1], np.eye(3)[[0, 1, 1]], ("a", "b", "c"))
  text = report.format_summary(
    {"dataset": "d", "fold": 0, "test_subjects": ["s1"], "selected_step": 1, "test": test}, "/w"
  )
  assert "c: recall n/a  precision n/a" in text
  assert "no test clip of: c" in text
