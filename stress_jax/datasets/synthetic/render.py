"""Draws one camera frame of the parametric face (PIL polygons, 2x supersampled).

Kept apart from the simulator so the drawing can change without touching the
geometry: everything here takes already-projected 2D points in continuous
camera coordinates (pixel centres at +0.5, see `stress_jax.faces.geometry`) and colours.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from stress_jax.datasets.synthetic import cue_effects
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
  pupil: float = 0.42  # pupil radius / iris radius
  flush: float = 0.0  # 0..~1.2: cheeks and forehead redden (or pale, with `pallor`)
  sweat: float = 0.0  # 0..~1.2: specular spots on forehead, nose and upper lip
  pallor: bool = False


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
  lm = geo.landmarks
  if look.flush > 0.02:
    canvas = _flush(canvas, lm, unit, look.flush, palette.skin, look.pallor)
    draw = ImageDraw.Draw(canvas)
  if look.sweat > 0.02:
    _sweat(draw, lm, unit, look.sweat, palette.skin)
  draw.polygon(_pts(geo.fringe), fill=palette.hair)

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
      r = geo.iris_radius
      _inside(
        canvas,
        eye,
        [
          (geo.irises[k], r, ry, palette.iris),
          (geo.irises[k], r * look.pupil, ry * look.pupil, (15, 12, 12)),
        ],
      )
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


def _inside(canvas: Image.Image, outline: np.ndarray, ellipses) -> None:
  """Paints ellipses (centre, rx, ry, colour) clipped to the polygon `outline`: an iris
  that looks aside is hidden by the lids, as a real one is."""
  pts = np.asarray(_pts(outline)).reshape(-1, 2)
  x0, y0 = np.floor(pts.min(0)).astype(int) - 1
  x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
  size = (int(x1 - x0), int(y1 - y0))
  lid = Image.new("L", size, 0)
  ImageDraw.Draw(lid).polygon((pts - [x0, y0]).ravel().tolist(), fill=255)
  for centre, rx, ry, colour in ellipses:
    cx, cy = _pts(centre)
    rx, ry = rx * SUPERSAMPLE, ry * SUPERSAMPLE
    if rx < 0.5 or ry < 0.5:
      continue
    disc = Image.new("L", size, 0)
    ImageDraw.Draw(disc).ellipse([cx - rx - x0, cy - ry - y0, cx + rx - x0, cy + ry - y0], fill=255)
    canvas.paste(colour, (int(x0), int(y0)), ImageChops.multiply(disc, lid))


def _flush(canvas: Image.Image, lm: np.ndarray, unit: float, amount: float, skin, pallor: bool):
  """Cheeks and forehead blended towards a redder (or, for pallor, paler) skin colour."""
  skin = np.asarray(skin, np.float64)
  if pallor:
    target = np.full(3, skin.mean() * 1.12) + np.array([-4.0, 0.0, 6.0])
  else:
    target = skin * np.array([1.08, 0.7, 0.72])
  spots = cue_effects.face_frame_points(lm, cue_effects.CHEEKS_AND_FOREHEAD)
  radii = np.array([[0.2, 0.16], [0.2, 0.16], [0.32, 0.14]]) * unit
  blur = 0.07 * unit * SUPERSAMPLE
  # Drawn and blurred in a window around the patches only: a whole-canvas blur cost
  # more than drawing the face.
  pad = 3 * blur
  x0, y0 = np.floor((spots - radii).min(0) * SUPERSAMPLE - pad).astype(int)
  x1, y1 = np.ceil((spots + radii).max(0) * SUPERSAMPLE + pad).astype(int)
  mask = Image.new("L", (int(x1 - x0), int(y1 - y0)), 0)
  draw = ImageDraw.Draw(mask)
  offset = np.array([x0, y0]) / SUPERSAMPLE
  for centre, (rx, ry) in zip(spots - offset, radii, strict=True):
    _ellipse(draw, centre, rx, ry, fill=255)
  alpha = min(1.0, amount)
  mask = mask.filter(ImageFilter.GaussianBlur(float(blur)))
  mask = mask.point(lambda v: int(round(v * alpha)))
  canvas.paste(_mix(target, target, 0), (int(x0), int(y0)), mask)
  return canvas


def _sweat(draw: ImageDraw.ImageDraw, lm: np.ndarray, unit: float, amount: float, skin) -> None:
  """Specular highlights of perspiration: more and brighter spots as `amount` grows."""
  spots = cue_effects.face_frame_points(lm, cue_effects.SWEAT_SPOTS)
  count = int(np.clip(round(4 + 6 * amount), 1, len(spots)))
  shine = _mix(skin, (255, 255, 250), min(1.0, 0.3 + 0.4 * amount))
  for centre in spots[:count]:
    _ellipse(draw, centre, 0.05 * unit, 0.035 * unit, fill=shine)


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
