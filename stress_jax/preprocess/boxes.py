"""Boxes and scales for face detection: where dlib looks, at what size, which face stands out."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from stress_jax.preprocess.config import parse_follow

if TYPE_CHECKING:
  import dlib

# dlib's frontal detector scans an 80x80 window; faces must be at least that big
# in the image it sees.
DETECTOR_WINDOW = 80
# The first full-frame search sees the frame with about this short side: people
# filmed on purpose fill a good part of the frame, and 1080p is then searched at a
# third of its size.
BASE_SHORT_SIDE = 360
# The smallest face searched for when the coarse scale finds nothing.
SMALLEST_FACE_PX = 40
# Finer scales stop where the searched image would exceed this many pixels.
MAX_SEARCH_PIXELS = 1_000_000


def detection_scales(width: int, height: int, min_face_px: int = 0) -> list[float]:
  """Resampling factors for full-frame detection, coarse to fine.

  A face of w source pixels is found at scale s when w * s >= 80. With
  min_face_px set the scale is fixed at 80 / min_face_px.
  """
  if min_face_px:
    return [DETECTOR_WINDOW / float(min_face_px)]
  finest = min(
    DETECTOR_WINDOW / SMALLEST_FACE_PX, math.sqrt(MAX_SEARCH_PIXELS / max(1, width * height))
  )
  scales = [min(finest, BASE_SHORT_SIDE / max(1, min(width, height)))]
  while scales[-1] * 2 < finest:
    scales.append(scales[-1] * 2)
  # A last step under 15 % finer is not worth another search.
  if scales[-1] * 1.15 < finest:
    scales.append(finest)
  return scales


def box_of(rect: dlib.rectangle, scale: float = 1.0, offset=(0.0, 0.0)) -> np.ndarray:
  # dlib rectangles are inclusive pixel indices; as continuous coordinates the box
  # spans [left, right + 1). Scaling back from a resampled image happens on those.
  return np.array(
    [
      rect.left() * scale + offset[0],
      rect.top() * scale + offset[1],
      (rect.right() + 1) * scale + offset[0],
      (rect.bottom() + 1) * scale + offset[1],
    ],
    np.float64,
  )


def centre(box: np.ndarray) -> np.ndarray:
  return 0.5 * (box[:2] + box[2:])


def box_width(box: np.ndarray) -> float:
  return float(box[2] - box[0])


def distance(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.linalg.norm(centre(a) - centre(b)))


def prominence(box: np.ndarray, width: int, height: int) -> float:
  """Area, discounted by up to half for a face at the frame's corner: largest, most central."""
  half_diagonal = 0.5 * math.hypot(width, height)
  off_centre = distance(box, np.array([0, 0, width, height], np.float64)) / half_diagonal
  return box_width(box) * float(box[3] - box[1]) * (1.0 - 0.5 * min(1.0, off_centre))


def ranked(boxes: list[np.ndarray], width: int, height: int, follow: str) -> list[np.ndarray]:
  """Faces in the order `follow` (PreprocessConfig.follow) prefers them; a region rule
  leaves out faces centred outside the region."""
  rule, region = parse_follow(follow)
  frame = np.array([0, 0, width, height], np.float64)
  if rule == "largest":
    return sorted(boxes, key=lambda b: -box_width(b) * float(b[3] - b[1]))
  if rule == "central":
    return sorted(boxes, key=lambda b: distance(b, frame))
  if rule == "region":
    x0, y0, x1, y1 = np.asarray(region) * np.array([width, height, width, height])
    inside = [b for b in boxes if x0 <= centre(b)[0] <= x1 and y0 <= centre(b)[1] <= y1]
    return sorted(inside, key=lambda b: -box_width(b) * float(b[3] - b[1]))
  return sorted(boxes, key=lambda b: -prominence(b, width, height))


def rect(box: np.ndarray, origin=(0, 0)) -> dlib.rectangle:
  import dlib  # only where faces are searched for: see models.py

  x0, y0 = origin
  return dlib.rectangle(
    int(round(box[0])) - x0,
    int(round(box[1])) - y0,
    int(round(box[2])) - 1 - x0,
    int(round(box[3])) - 1 - y0,
  )


def patch(gray: Image.Image, box: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
  """The frame around `box` (a quarter face width each side) and its top-left corner.

  dlib copies the whole image it is handed; on a 1024x1024 frame that copy costs
  more than the landmark fit itself, and the fit reads only pixels near the box.
  """
  margin = 0.25 * box_width(box)
  x0 = max(0, int(math.floor(box[0] - margin)))
  y0 = max(0, int(math.floor(box[1] - margin)))
  x1 = min(gray.width, int(math.ceil(box[2] + margin)))
  y1 = min(gray.height, int(math.ceil(box[3] + margin)))
  if x1 <= x0 or y1 <= y0:
    x0, y0, x1, y1 = 0, 0, gray.width, gray.height
  return np.asarray(gray.crop((x0, y0, x1, y1))), (x0, y0)
