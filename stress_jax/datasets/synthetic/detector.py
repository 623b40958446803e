"""The landmarks a real video would give: dlib's 68-point predictor fitted on each rendered frame.

The video pipeline (`stress_jax.preprocess.tracker`) fits dlib's shape predictor in
a detector-like box and aligns the crop on the fitted points; the simulator does the
same on every drawn camera frame, with the box placed where dlib's HOG detector puts
it on these renderings (`DETECTOR_BOX`, measured below), so the stored landmarks
carry a detector's error and jitter instead of the renderer's exact points.

Measured on the demo population (`synthetic`, 160 px camera frames): on 72 frames
(12 subjects x 3 sessions x 2 frames) dlib's HOG detector, run on the frame upsampled
2x as the video path does for small faces, found the face in 66; its box sat at
(left, top, right, bottom) = the 68 points' box + DETECTOR_BOX x that box's size (sd
about 0.055). The predictor's error against the renderer's points, normalised by the
outer eye corners' distance (NME), is `measure_nme`'s figure: 0.060 mean, 0.071 at
the 95th percentile, no misses, over 480 frames (docs/method.md). dlib fits these
renderings, so its own output is stored and no separate error model is added.

dlib sees the frame as drawn (with motion blur), before the lighting gradient and the
sensor noise, which the simulator applies after alignment in crop pixels (`camera`),
so that noise does not enter its fit.

A fit that does not look like a face (the tracker's own test) is a miss: the frame is
masked, as the video path masks a frame where the tracker loses the face.
"""

from __future__ import annotations

import numpy as np

from stress_jax.faces import geometry as fg

# (left, top, right, bottom) offset of dlib's detector box from the 68 points'
# bounding box, in units of that box's width / height (see the module docstring).
DETECTOR_BOX = np.array([-0.054, -0.106, 0.05, -0.003])


def detector_box(points: np.ndarray) -> np.ndarray:
  """(4,) continuous box where dlib's detector frames the face with these true points."""
  low, high = points.min(0), points.max(0)
  size = np.concatenate([high - low, high - low])
  return np.concatenate([low, high]) + DETECTOR_BOX * size


def load_predictor():
  from stress_jax.preprocess import models  # dlib: loaded by the processes that fit

  return models.load_models()[1]


def fit_landmarks(gray: np.ndarray, true_points: np.ndarray) -> np.ndarray | None:
  """dlib's 68 points (continuous pixel coordinates) in `gray` (H, W) uint8, or None
  where the fit fails the tracker's face test."""
  from stress_jax.preprocess import boxes

  box = detector_box(true_points)
  shape = load_predictor()(np.ascontiguousarray(gray), boxes.rect(box))
  points = fg.from_dlib_points([(p.x, p.y) for p in shape.parts()]).astype(np.float64)
  right, left = fg.eye_centres(points)
  eye_gap = float(np.hypot(*(left - right)))
  width = boxes.box_width(box)
  if not 0.2 * width <= eye_gap <= 0.7 * width:
    return None
  if np.any(np.abs(points.mean(0) - boxes.centre(box)) > 0.5 * width):
    return None
  return points


def nme(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """Mean point error / outer-eye-corner distance (points 36 and 45), per frame."""
  scale = np.linalg.norm(truth[..., 45, :] - truth[..., 36, :], axis=-1)
  return np.linalg.norm(found - truth, axis=-1).mean(-1) / scale


def measure_nme(config, subjects: int = 10, clip: int = 2) -> dict:
  """dlib's NME against the renderer's points over clip `clip` of every session of the
  first `subjects` subjects (the figure docs/method.md quotes), and its misses."""
  from stress_jax.datasets.synthetic.clip import simulate_clip

  errors, misses, frames = [], 0, 0
  for subject in range(min(subjects, config.num_subjects)):
    for session in range(config.num_classes):
      rendered = simulate_clip(config, subject, session, clip)
      found = rendered.frame_mask
      errors.append(nme(rendered.landmarks, rendered.true_landmarks)[found])
      misses += int((~found).sum())
      frames += len(found)
  errors = np.concatenate(errors)
  return dict(
    frames=frames,
    misses=misses,
    mean=float(errors.mean()),
    median=float(np.median(errors)),
    p95=float(np.percentile(errors, 95)),
    max=float(errors.max()),
  )
