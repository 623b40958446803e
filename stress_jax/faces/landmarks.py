"""Landmark tracks over a clip's frames."""

from __future__ import annotations

import numpy as np


def fill_missing_landmarks(landmarks: np.ndarray, has_face: np.ndarray) -> np.ndarray:
  """Frames without a face take the landmarks of the nearest frame with one.

  Ties go to the earlier frame. The landmark stream pools over time, so a plausible
  face shape in masked frames does less harm than zeros would, and it never sees
  NaN. With no face anywhere the landmarks stay as given.
  """
  landmarks = np.asarray(landmarks, np.float32)
  has_face = np.asarray(has_face, bool)
  valid = np.flatnonzero(has_face)
  if valid.size == 0 or valid.size == has_face.size:
    return landmarks.copy()
  frames = np.arange(has_face.size)
  after = np.clip(np.searchsorted(valid, frames), 0, valid.size - 1)
  before = np.clip(after - 1, 0, valid.size - 1)
  take_before = np.abs(frames - valid[before]) <= np.abs(valid[after] - frames)
  nearest = np.where(take_before, valid[before], valid[after])
  return landmarks[nearest]
