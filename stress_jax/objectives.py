"""Training objectives: plain cross-entropy, or the authors' triplet objective.

The authors' earlier code trained on triplets of clips (anchor; positive: same label,
another subject; negative: same subject, another label; see stress_jax/triplets.py for
the sampling) and added to the cross-entropy of all three clips an embedding term

  mean_sq(a, p) + max(0, margin - mean_sq(a, n))

where a, p, n are the fused clip vectors before the classifier (StressNet's
aux["embedding"]) and mean_sq is the squared distance averaged over the vector's
entries. It pulls the anchor toward a clip of the same class from someone else and
pushes it at least `margin` away from a clip of another class from the same person, so
the embedding has to encode the stress level rather than the identity.

Config (config.train): objective = "cross_entropy" | "triplet", triplet_margin (2.0 as
in the authors' code), triplet_weight (the embedding term's weight; 1.0 = plain sum).

Either objective adds `stream_weight` (config.train.stream_loss_weight) times the mean
of the per-stream cross-entropies when the model returns them (model.stream_heads:
aux["image_logits"], aux["landmark_logits"]). Our choice, not the authors': without it
a stream whose evidence the fused classifier does not need gets no gradient that
rewards its attention for finding the cues (docs/spatial_attention.md, section 6).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from stress_jax.errors import ConfigError

OBJECTIVES = ("cross_entropy", "triplet")


@dataclasses.dataclass(frozen=True)
class Objective:
  """What train_step optimises; frozen so it can be closed over by jit."""

  name: str = "cross_entropy"
  margin: float = 2.0
  weight: float = 1.0
  stream_weight: float = 0.0

  def __post_init__(self):
    if self.name not in OBJECTIVES:
      raise ConfigError(
        f"train.objective must be one of {', '.join(OBJECTIVES)}, got {self.name!r}"
      )
    # The error names the one field that is wrong, as the config spells it.
    fields = (
      ("triplet_margin", self.margin),
      ("triplet_weight", self.weight),
      ("stream_loss_weight", self.stream_weight),
    )
    for field, value in fields:
      if value < 0:
        raise ConfigError(f"train.{field} must be >= 0, got {value}")

  @property
  def triplet(self) -> bool:
    return self.name == "triplet"

  @classmethod
  def from_config(cls, train_config) -> Objective:
    """From config.train; configs written before the option existed mean cross-entropy."""
    get = train_config.get if hasattr(train_config, "get") else lambda k, d: d
    return cls(
      name=str(get("objective", "cross_entropy")),
      margin=float(get("triplet_margin", 2.0)),
      weight=float(get("triplet_weight", 1.0)),
      stream_weight=float(get("stream_loss_weight", 0.0)),
    )


def cross_entropy(logits, labels, weights):
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  return (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def flatten_triplets(batch: dict) -> dict:
  """(B, 3, ...) triplet rows -> (3B, ...): all anchors, then positives, then negatives."""
  return {
    key: jnp.swapaxes(value, 0, 1).reshape(-1, *value.shape[2:]) for key, value in batch.items()
  }


def triplet_term(embeddings, margin: float, weights=None):
  """The embedding term averaged over triplets; embeddings (3B, D) as flatten_triplets orders.

  Returns (term, {"triplet_positive": mean_sq(a, p), "triplet_negative": mean_sq(a, n)}).
  """
  anchor, positive, negative = jnp.split(embeddings.astype(jnp.float32), 3, axis=0)
  to_positive = jnp.mean(jnp.square(anchor - positive), axis=-1)
  to_negative = jnp.mean(jnp.square(anchor - negative), axis=-1)
  per_triplet = to_positive + jax.nn.relu(margin - to_negative)
  if weights is None:
    weights = jnp.ones_like(per_triplet)
  total = jnp.maximum(weights.sum(), 1.0)
  parts = {
    "triplet_positive": (to_positive * weights).sum() / total,
    "triplet_negative": (to_negative * weights).sum() / total,
  }
  return (per_triplet * weights).sum() / total, parts


STREAM_LOGITS = ("image_logits", "landmark_logits")


def training_loss(objective: Objective, logits, aux, labels, weights):
  """(loss, extra metrics) for a batch already flattened (see flatten_triplets)."""
  loss = cross_entropy(logits, labels, weights)
  total, terms = loss, {}
  # A clip whose stream modality dropout removed (aux["<stream>_kept"] = 0) does not
  # train that stream's head: its zeroed vector says nothing about the label.
  streams = [
    cross_entropy(aux[key], labels, weights * aux.get(key.replace("logits", "kept"), 1.0))
    for key in STREAM_LOGITS
    if key in aux
  ]
  if streams and objective.stream_weight > 0:
    term = sum(streams) / len(streams)
    total = total + objective.stream_weight * term
    terms["stream_cross_entropy"] = term
  if objective.triplet:
    anchor_weights = jnp.split(weights, 3)[0]
    term, parts = triplet_term(aux["embedding"], objective.margin, anchor_weights)
    total = total + objective.weight * term
    terms.update(triplet=term, **parts)
  if terms:
    terms["cross_entropy"] = loss
  return total, terms
