"""The 68-point face (iBUG / dlib order) and the eye-based similarity alignment.

Every path that produces a face crop goes through `align_face`: the synthetic
renderer and the real-video pipeline alike, so a model trained on one sees the
same geometry as the other.

Coordinate convention, used everywhere in the project: points are continuous
image coordinates (x, y) in pixels where pixel (i, j) covers [j, j+1) x [i, i+1),
so its centre is at (j + 0.5, i + 0.5). dlib reports integer pixel indices;
`from_dlib_points` adds the half pixel. Records store crop landmarks divided by
the crop size, so they lie in [0, 1].
"""

from __future__ import annotations

import numpy as np
from PIL import Image

NUM_LANDMARKS = 68
CROP_SIZE = 112

JAW = np.arange(0, 17)
RIGHT_BROW = np.arange(17, 22)  # the subject's right: the image's left
LEFT_BROW = np.arange(22, 27)
NOSE_BRIDGE = np.arange(27, 31)
NOSE_BASE = np.arange(31, 36)
RIGHT_EYE = np.arange(36, 42)
LEFT_EYE = np.arange(42, 48)
OUTER_LIP = np.arange(48, 60)
INNER_LIP = np.arange(60, 68)

# Where the two eye centres land in the crop, as fractions of its size. Chosen
# so that brows, both cheeks and the chin of a frontal face stay inside.
CANONICAL_RIGHT_EYE = (0.33, 0.38)
CANONICAL_LEFT_EYE = (0.67, 0.38)


def _mirror_permutation() -> np.ndarray:
  pairs = [(i, 16 - i) for i in range(8)]  # jaw
  pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
  pairs += [(31, 35), (32, 34)]  # nose base
  pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
  pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lip
  pairs += [(60, 64), (61, 63), (65, 67)]  # inner lip
  perm = np.arange(NUM_LANDMARKS)
  for a, b in pairs:
    perm[a], perm[b] = b, a
  return perm


# After a horizontal flip, point k of the mirrored face is point MIRROR[k] of the
# original (the subject's right eye becomes the image's right-hand eye, and so on).
MIRROR_PERMUTATION = _mirror_permutation()


def from_dlib_points(points: np.ndarray) -> np.ndarray:
  """dlib integer pixel indices -> continuous coordinates (pixel centres)."""
  return np.asarray(points, np.float32) + 0.5


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean of each eye's six points: (subject's right eye, subject's left eye)."""
  landmarks = np.asarray(landmarks, np.float64)
  return landmarks[..., RIGHT_EYE, :].mean(-2), landmarks[..., LEFT_EYE, :].mean(-2)


def similarity_from_eyes(landmarks: np.ndarray, crop_size: int = CROP_SIZE) -> np.ndarray:
  """The 2x3 similarity (rotation, uniform scale, shift) taking image points to crop points.

  It sends the two eye centres exactly onto the canonical eye positions, so the
  eyes are level and a fixed distance apart in every crop.
  """
  right, left = eye_centres(landmarks)
  src = left - right
  dst = (np.asarray(CANONICAL_LEFT_EYE) - np.asarray(CANONICAL_RIGHT_EYE)) * crop_size
  src_len = float(np.hypot(*src))
  if not np.isfinite(src_len) or src_len < 1e-6:
    raise ValueError("eye centres coincide; cannot align a face with zero inter-ocular distance")
  scale = float(np.hypot(*dst)) / src_len
  angle = np.arctan2(dst[1], dst[0]) - np.arctan2(src[1], src[0])
  cos, sin = scale * np.cos(angle), scale * np.sin(angle)
  linear = np.array([[cos, -sin], [sin, cos]])
  shift = np.asarray(CANONICAL_RIGHT_EYE) * crop_size - linear @ right
  return np.concatenate([linear, shift[:, None]], axis=1)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  points = np.asarray(points, np.float64)
  return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
  linear_inv = np.linalg.inv(matrix[:, :2])
  return np.concatenate([linear_inv, (-linear_inv @ matrix[:, 2])[:, None]], axis=1)


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
  """Resample `image` (H, W, 3) uint8 through the 2x3 image->crop `matrix` (bilinear)."""
  inverse = invert_affine(matrix)
  # PIL's AFFINE maps each output pixel centre back into the input with the same
  # continuous convention as ours (checked in tests/test_face_geometry.py).
  pil = Image.fromarray(np.ascontiguousarray(image))
  out = pil.transform(
    (size, size), Image.Transform.AFFINE, tuple(inverse.reshape(-1)), resample=Image.BILINEAR
  )
  return np.asarray(out)


def align_face(
  image: np.ndarray, landmarks: np.ndarray, crop_size: int = CROP_SIZE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Eye-aligned crop of one face.

  Args:
    image: (H, W, 3) uint8 frame.
    landmarks: (68, 2) continuous image coordinates of that face.
    crop_size: side of the square crop.

  Returns:
    crop (crop_size, crop_size, 3) uint8, the landmarks in crop coordinates
    divided by crop_size (float32, ~[0, 1]), and the 2x3 image->crop matrix.
  """
  matrix = similarity_from_eyes(landmarks, crop_size)
  crop = warp_image(image, matrix, crop_size)
  crop_landmarks = apply_affine(matrix, landmarks) / crop_size
  return crop, crop_landmarks.astype(np.float32), matrix


def mirror_landmarks(landmarks: np.ndarray) -> np.ndarray:
  """Landmarks (..., 68, 2) in [0, 1] crop units after a horizontal flip of the crop."""
  flipped = np.asarray(landmarks)[..., MIRROR_PERMUTATION, :].copy()
  flipped[..., 0] = 1.0 - flipped[..., 0]
  return flipped
