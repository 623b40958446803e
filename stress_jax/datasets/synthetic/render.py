"""Draws one camera frame of the parametric face (PIL polygons, 2x supersampled).

Kept apart from the simulator so the drawing can change without touching the
geometry: everything here takes already-projected 2D points in continuous
camera coordinates (pixel centres at +0.5, see `stress_jax.faces.geometry`) and colours.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageDraw

from stress_jax.datasets.synthetic.face_model import FrameGeometry
from stress_jax.datasets.synthetic.identity import Palette

# Drawing at twice the resolution and averaging 2x2 blocks gives anti-aliased
# edges, which PIL's polygon fill lacks; without it the crop shows stair-steps
# that move with the head and would be an artefact no real camera has.
SUPERSAMPLE = 2


@dataclasses.dataclass
class FrameLook:
  """Per-frame appearance state that is not geometry."""

  eye_open: tuple[float, float]
  mouth_open: float
  lip_press: float
  furrow: float


def _pts(points: np.ndarray) -> list[float]:
  # Continuous coordinate p covers supersampled pixel index SS*p - 0.5 at its centre.
  return (np.asarray(points, np.float64) * SUPERSAMPLE - 0.5).ravel().tolist()


def _ellipse(draw: ImageDraw.ImageDraw, centre, rx: float, ry: float, fill) -> None:
  cx, cy = _pts(centre)
  rx, ry = rx * SUPERSAMPLE, ry * SUPERSAMPLE
  if rx < 0.5 or ry < 0.5:
    return
  draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill)


def _mix(a, b, t: float) -> tuple[int, int, int]:
  # Plain floats: numpy's per-call overhead dominated for three channels.
  return tuple(min(255, max(0, int(round(x + (y - x) * t)))) for x, y in zip(a, b, strict=True))


def background_canvas(
  size: int, base, shapes: np.ndarray, shape_colours: np.ndarray
) -> Image.Image:
  """A static supersampled room: a wall colour and a few flat rectangles (doors, shelves)."""
  big = size * SUPERSAMPLE
  canvas = Image.new("RGB", (big, big), tuple(int(v) for v in base))
  draw = ImageDraw.Draw(canvas)
  for (x0, y0, x1, y1), colour in zip(shapes, shape_colours, strict=True):
    draw.rectangle([x0 * big, y0 * big, x1 * big, y1 * big], fill=tuple(int(v) for v in colour))
  return canvas


def draw_face(
  background: Image.Image, geo: FrameGeometry, look: FrameLook, palette: Palette
) -> np.ndarray:
  """Paints the person over `background`; returns (H, W, 3) uint8."""
  canvas = background.copy()
  draw = ImageDraw.Draw(canvas)
  unit = geo.px_per_unit
  lw = lambda units: max(1, int(round(units * unit * SUPERSAMPLE)))  # line width

  draw.polygon(_pts(geo.shoulders), fill=palette.shirt)
  draw.polygon(_pts(geo.neck), fill=palette.skin_shadow)
  draw.polygon(_pts(geo.hair_back), fill=palette.hair)
  for centre in geo.ears:
    _ellipse(draw, centre, *geo.ear_radii, fill=palette.skin_shadow)
  draw.polygon(_pts(geo.head), fill=palette.skin)
  draw.polygon(_pts(geo.fringe), fill=palette.hair)

  lm = geo.landmarks
  # Glabella furrows: short dark creases between the inner brows (corrugator).
  if look.furrow > 0.02:
    crease = _mix(palette.skin, (40, 20, 15), 0.55 * min(1.0, look.furrow))
    for segment in geo.furrow_lines:
      draw.line(_pts(segment), fill=crease, width=lw(0.035))
  for polygon in geo.brow_polygons:
    draw.polygon(_pts(polygon), fill=palette.brow)

  # Eyes: sclera, iris clipped to the lid opening, then the upper lid line.
  for k, (eye, opening) in enumerate(
    ((lm[36:42], look.eye_open[0]), (lm[42:48], look.eye_open[1]))
  ):
    lid = _pts(eye[[0, 1, 2, 3]])
    if opening > 0.12:
      draw.polygon(_pts(eye), fill=(236, 232, 226))
      half_open = 0.5 * float(np.mean(eye[[4, 5], 1]) - np.mean(eye[[1, 2], 1]))
      ry = min(geo.iris_radius, max(half_open, 0.0) * 1.05)
      _ellipse(draw, geo.irises[k], geo.iris_radius, ry, fill=palette.iris)
      _ellipse(draw, geo.irises[k], geo.iris_radius * 0.45, ry * 0.45, fill=(15, 12, 12))
      draw.line(_pts(eye[[3, 4, 5, 0]]), fill=palette.skin_shadow, width=lw(0.02))
    draw.line(lid, fill=(35, 25, 22), width=lw(0.045 if opening > 0.12 else 0.06), joint="curve")

  # Nose: a bridge shadow, the base curve and two nostrils.
  bridge_shadow = _mix(palette.skin, palette.skin_shadow, 0.5)
  draw.line(_pts(lm[[28, 29, 30]] + np.array([0.06 * unit, 0])), fill=bridge_shadow, width=lw(0.05))
  draw.line(_pts(lm[31:36]), fill=palette.skin_shadow, width=lw(0.04), joint="curve")
  for a, b in ((31, 32), (34, 35)):
    centre = 0.5 * (lm[a] + lm[b]) - np.array([0, 0.03 * unit])
    _ellipse(
      draw, centre, 0.05 * unit, 0.028 * unit, fill=_mix(palette.skin_shadow, (30, 15, 10), 0.5)
    )

  # Mouth: pressed lips pale (blanch) towards the skin colour.
  lip = _mix(palette.lip, palette.skin, 0.6 * look.lip_press)
  draw.polygon(_pts(lm[48:60]), fill=lip)
  if look.mouth_open > 0.012:
    draw.polygon(_pts(lm[60:68]), fill=(70, 25, 30))
  draw.line(_pts(lm[[60, 61, 62, 63, 64]]), fill=_mix(lip, (40, 10, 15), 0.55), width=lw(0.025))

  out = canvas.reduce(SUPERSAMPLE)
  return np.asarray(out)


def paint_dots(image: np.ndarray, points: np.ndarray, colour=(0, 255, 0), sigma: float = 1.2):
  """Anti-aliased Gaussian dots at continuous coordinates (for checking the alignment)."""
  size_y, size_x = image.shape[:2]
  xs, ys = np.arange(size_x) + 0.5, np.arange(size_y) + 0.5
  weight = np.zeros((size_y, size_x))
  for x, y in points:
    weight = np.maximum(
      weight, np.exp(-((ys[:, None] - y) ** 2 + (xs[None] - x) ** 2) / (2 * sigma**2))
    )
  return image * (1 - weight[..., None]) + np.asarray(colour, np.float64) * weight[..., None]
