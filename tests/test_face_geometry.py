"""The eye-based alignment, the warp and the mirror symmetry of the 68-point face."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest

from stress_jax.datasets import synthetic
from stress_jax.faces import geometry as fg
from stress_jax.faces import landmarks as landmarks_lib

CANONICAL = np.array([fg.CANONICAL_RIGHT_EYE, fg.CANONICAL_LEFT_EYE]) * fg.CROP_SIZE


def random_face(rng: np.random.Generator) -> np.ndarray:
  """68 points around two eyes at an arbitrary place, size and tilt in a camera frame."""
  points = rng.uniform(-1, 1, (68, 2))
  points[fg.RIGHT_EYE] = [-0.5, 0] + rng.normal(0, 0.05, (6, 2))
  points[fg.LEFT_EYE] = [0.5, 0] + rng.normal(0, 0.05, (6, 2))
  angle = rng.uniform(-np.pi / 3, np.pi / 3)
  rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  return points @ rotation.T * rng.uniform(20, 80) + rng.uniform(50, 150, 2)


def gaussian_dot(shape: tuple[int, int], centre, sigma: float = 1.5) -> np.ndarray:
  ys, xs = np.arange(shape[0]) + 0.5, np.arange(shape[1]) + 0.5
  blob = np.exp(-((ys[:, None] - centre[1]) ** 2 + (xs[None] - centre[0]) ** 2) / (2 * sigma**2))
  return np.repeat((blob * 255)[..., None], 3, axis=-1).round().astype(np.uint8)


def centroid(image: np.ndarray) -> np.ndarray:
  """Intensity-weighted centre, continuous coordinates (pixel centres at +0.5)."""
  weight = image[..., 0].astype(np.float64)
  ys, xs = np.indices(weight.shape) + 0.5
  return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


@pytest.mark.parametrize("seed", range(5))
def test_alignment_puts_eye_centres_at_canonical_positions(seed):
  face = random_face(np.random.default_rng(seed))
  matrix = fg.similarity_from_eyes(face)
  right, left = fg.eye_centres(fg.apply_affine(matrix, face))
  np.testing.assert_allclose(np.stack([right, left]), CANONICAL, atol=1e-9)
  assert right[1] == pytest.approx(left[1], abs=1e-9)  # eyes level
  # A similarity: equal singular values (no shear, uniform scale).
  singular = np.linalg.svd(matrix[:, :2], compute_uv=False)
  assert singular[0] == pytest.approx(singular[1], rel=1e-9)


def test_align_face_returns_crop_units():
  face = random_face(np.random.default_rng(7))
  image = np.zeros((200, 200, 3), np.uint8)
  crop, landmarks, matrix = fg.align_face(image, face)
  assert crop.shape == (fg.CROP_SIZE, fg.CROP_SIZE, 3) and landmarks.dtype == np.float32
  np.testing.assert_allclose(landmarks * fg.CROP_SIZE, fg.apply_affine(matrix, face), atol=1e-3)
  np.testing.assert_allclose(
    np.stack(fg.eye_centres(landmarks)), CANONICAL / fg.CROP_SIZE, atol=1e-6
  )


def test_coincident_eyes_are_refused():
  face = np.zeros((68, 2))
  with pytest.raises(ValueError, match="inter-ocular"):
    fg.similarity_from_eyes(face)


def test_from_dlib_points_moves_to_pixel_centres():
  np.testing.assert_array_equal(
    fg.from_dlib_points(np.array([[0, 0], [3, 4]])), [[0.5, 0.5], [3.5, 4.5]]
  )


@pytest.mark.parametrize(
  "centre, angle, scale, shift",
  [
    ((60.3, 40.7), 0.0, 1.0, (0.0, 0.0)),
    ((80.2, 95.6), 0.4, 0.8, (-20.0, 5.0)),
    ((100.5, 70.25), -0.9, 1.3, (-100.0, 100.0)),
  ],
)
def test_warp_moves_a_dot_where_apply_affine_says(centre, angle, scale, shift):
  image = gaussian_dot((160, 160), centre)
  linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  matrix = np.concatenate([linear, np.array(shift)[:, None]], axis=1)
  warped = fg.warp_image(image, matrix)
  expected = fg.apply_affine(matrix, np.array(centre))
  # Sub-pixel agreement: a half-pixel convention error would show as ~0.5 px.
  np.testing.assert_allclose(centroid(warped), expected, atol=0.08)


def test_identity_warp_keeps_pixels():
  image = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
  identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
  np.testing.assert_array_equal(fg.warp_image(image, identity), image)


def test_invert_affine():
  matrix = np.array([[0.8, -0.3, 12.0], [0.3, 0.8, -4.0]])
  points = np.random.default_rng(1).uniform(0, 100, (10, 2))
  back = fg.apply_affine(fg.invert_affine(matrix), fg.apply_affine(matrix, points))
  np.testing.assert_allclose(back, points, atol=1e-9)


def test_mirror_permutation_is_an_involution_that_swaps_sides():
  perm = fg.MIRROR_PERMUTATION
  np.testing.assert_array_equal(perm[perm], np.arange(fg.NUM_LANDMARKS))
  np.testing.assert_array_equal(np.sort(perm), np.arange(fg.NUM_LANDMARKS))
  np.testing.assert_array_equal(perm[fg.RIGHT_EYE], [45, 44, 43, 42, 47, 46])
  np.testing.assert_array_equal(perm[fg.RIGHT_BROW], fg.LEFT_BROW[::-1])
  np.testing.assert_array_equal(perm[fg.JAW], fg.JAW[::-1])
  np.testing.assert_array_equal(perm[[48, 54, 60, 64]], [54, 48, 64, 60])
  # The midline stays: nose bridge, nose tip, lip centres.
  for k in [*fg.NOSE_BRIDGE, 33, 51, 57, 62, 66]:
    assert perm[k] == k


def test_mirror_landmarks_twice_is_identity():
  points = np.random.default_rng(3).uniform(0, 1, (4, 68, 2))
  np.testing.assert_allclose(fg.mirror_landmarks(fg.mirror_landmarks(points)), points, atol=1e-12)


def test_mirror_landmarks_match_the_flipped_face():
  """Flip a rendered camera frame, realign it: crop and landmarks are the mirrored ones."""
  config = synthetic.SimulatorConfig(num_subjects=1, clips_per_class_per_subject=1, num_frames=2)
  clip = synthetic.simulate_clip(config, 0, 0, 0, keep_camera=True)
  image, points = clip.camera_frames[1], clip.camera_landmarks[1]
  assert (
    np.abs(points[fg.RIGHT_EYE].mean(0)[1] - points[fg.LEFT_EYE].mean(0)[1]) > 0.01
  )  # not level

  flipped = image[:, ::-1]
  flipped_points = points[fg.MIRROR_PERMUTATION].copy()
  flipped_points[:, 0] = image.shape[1] - flipped_points[:, 0]
  crop, landmarks, _ = fg.align_face(image, points)
  flipped_crop, flipped_landmarks, _ = fg.align_face(flipped, flipped_points)

  np.testing.assert_allclose(fg.mirror_landmarks(landmarks), flipped_landmarks, atol=1e-5)
  difference = np.abs(crop[:, ::-1].astype(int) - flipped_crop.astype(int))
  assert np.median(difference) <= 1 and difference.mean() < 2.5


def test_fill_missing_landmarks_takes_nearest_valid_frame():
  landmarks = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 68, 2), np.float32)
  has_face = np.array([False, True, False, False, True, False])
  filled = landmarks_lib.fill_missing_landmarks(landmarks, has_face)
  np.testing.assert_array_equal(filled[:, 0, 0], [1, 1, 1, 4, 4, 4])
  none = landmarks_lib.fill_missing_landmarks(np.zeros((3, 68, 2)), np.zeros(3, bool))
  assert np.isfinite(none).all()


def _project_modules_after_import(*modules: str) -> set[str]:
  code = (
    f"import sys, {', '.join(modules)}\n"
    "print([m for m in sys.modules if m.startswith(('stress_jax', 'tfds_builders'))])"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  return set(ast.literal_eval(out.stdout.strip().splitlines()[-1]))


def test_face_primitives_and_models_stand_on_nothing_above_them():
  # The floors: stress_jax.faces and stress_jax.errors import nothing else of the
  # project, and the models import only those, never a dataset, the preprocessing or a
  # builder.
  package = {"stress_jax", "stress_jax.xla_cpu"}
  faces = _project_modules_after_import(
    "stress_jax.faces.geometry", "stress_jax.faces.landmarks", "stress_jax.faces.records"
  )
  assert faces == package | {
    "stress_jax.faces",
    "stress_jax.faces.geometry",
    "stress_jax.faces.landmarks",
    "stress_jax.faces.records",
  }
  models = _project_modules_after_import("stress_jax.models")
  outside = {m for m in models if not m.startswith("stress_jax.models")} - package
  assert outside == {"stress_jax.errors", "stress_jax.faces", "stress_jax.faces.geometry"}
  assert _project_modules_after_import("stress_jax.errors") == package | {"stress_jax.errors"}
  # A feature-database build worker reads .npy files: no video decoding or dlib for it.
  worker = _project_modules_after_import("stress_jax.featuredb.clips")
  assert "stress_jax.faces.landmarks" in worker
  assert not {m for m in worker if m.startswith("stress_jax.preprocess")}
