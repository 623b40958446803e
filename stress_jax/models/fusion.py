"""How the two streams' clip vectors become one prediction, beyond the paper's concatenation.

The paper (and `model` with every switch below off) concatenates the image and landmark
clip vectors and reads them with one Dense layer. Nothing then stops the classifier from
leaning on whichever stream fits the training subjects first, and on held-out subjects
the full model ended below its own landmark stream (docs/results.md, issue 25). Two
switches, both ours and off in the paper config:

  model.modality_dropout = p      in training, each clip loses one whole stream (image
                                  or landmark, equal odds) with probability p: that
                                  stream's pooled vector is zeroed before the fused
                                  classifier and before its own head, and its own head's
                                  loss skips the clip (aux["<stream>_kept"], read by
                                  stress_jax/objectives.py). The fused classifier has to
                                  classify from either stream alone, and a dropped stream
                                  gets no gradient from that clip.
  model.combine_stream_logits     at inference (train=False), the logits are the mean of
                                  the fused classifier's and both stream heads' logits
                                  (needs model.stream_heads). Each head is trained on its
                                  own loss, so the average is an ensemble of three
                                  classifiers; the fused head alone is what trains.

Both are inert with a single stream (the no_image_stream / no_landmark_stream ablations).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

STREAMS = ("image", "landmark")


def modality_keep(rng, batch: int, rate: float):
  """Which clips keep each stream: ((B,) bool image, (B,) bool landmark).

  With probability `rate` a clip drops exactly one stream, image or landmark with equal
  odds; it never drops both, so every clip keeps something to classify from.
  """
  drop_rng, which_rng = jax.random.split(rng)
  drop = jax.random.uniform(drop_rng, (batch,)) < rate
  image_goes = jax.random.bernoulli(which_rng, 0.5, (batch,))
  return ~(drop & image_goes), ~(drop & ~image_goes)


def drop_streams(pooled: list, keep: tuple):
  """Zeroes each (B, D) pooled vector on the clips whose `keep` (B,) is False.

  jnp.where, not a multiplication: the dropped clip's gradient into its stream is then
  exactly zero, whatever the vector held.
  """
  return [jnp.where(k[:, None], p, jnp.zeros_like(p)) for p, k in zip(pooled, keep, strict=True)]


def combine_logits(fused, image, landmark):
  """The inference logits of model.combine_stream_logits: the three heads' mean."""
  return (fused + image + landmark) / 3.0
