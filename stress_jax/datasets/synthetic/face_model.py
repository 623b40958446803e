"""The parametric face in 3D and its projection into one camera frame.

`face_points` places the 68 iBUG landmarks (and the outline, hair, ears, irises
and brow creases that only the renderer needs) in face units, where the eye-centre
distance is about 1, y points down and z towards the camera. `frame_geometry` turns
one frame's head pose and expression into camera pixels for `render.draw_face`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stress_jax.datasets.synthetic.identity import Identity

# Where the head turns about, in face units: roughly the centre of the skull.
_PIVOT = np.array([0.0, 0.5, -1.0])


@dataclasses.dataclass
class Expression:
  """One frame's face state: eyelid openings (right, left), brows, lips and gaze."""

  eye_open: tuple[float, float]
  brow_drop: float
  brow_raise: float
  mouth_open: float
  lip_press: float
  gaze: np.ndarray
  pupil: float = 0.42  # pupil radius / iris radius
  flush: float = 0.0
  sweat: float = 0.0


def _superellipse(a: float, b: float, power: float, theta: np.ndarray):
  c, s = np.cos(theta), np.sin(theta)
  return -a * np.sign(c) * np.abs(c) ** (2 / power), b * np.sign(s) * np.abs(s) ** (2 / power)


_JAW_THETA = np.linspace(0, np.pi, 17)
_TOP_THETA = np.linspace(np.pi, 2 * np.pi, 15)
_BROW_U = np.linspace(0, 1, 5)  # outer end (0) to inner end (1)
_BROW_PROFILE = np.array([0.1, 0.8, 1.0, 0.75, 0.3])


def face_points(idn: Identity, e: Expression) -> dict[str, np.ndarray]:
  """3D points of the face in face units; 'landmarks' are the 68 in iBUG order."""
  lm = np.zeros((68, 3))
  press = float(np.clip(e.lip_press, 0, 1))
  opening = e.mouth_open

  # Jaw 0..16: the lower half of a superellipse from the subject's right ear to the left.
  theta = _JAW_THETA
  x, y = _superellipse(idn.jaw_width, idn.chin_y - idn.jaw_top, idn.jaw_power, theta)
  y = y + idn.jaw_top + 0.8 * opening * np.sin(theta) ** 2  # the jaw drops as the mouth opens
  lm[0:17] = np.stack([x, y, 0.1 - 0.7 * np.abs(np.cos(theta))], axis=1)

  # Brows: u runs from the outer end (0) to the inner end (1).
  u, profile = _BROW_U, _BROW_PROFILE
  height = -idn.brow_height - idn.brow_arch * (profile - profile.mean())
  height = height + e.brow_drop * (0.07 + 0.09 * u) - e.brow_raise * (0.09 + 0.03 * u)
  inner = idn.brow_gap / 2 - e.brow_drop * 0.08 * u
  brow_x = inner + idn.brow_length * (1 - u)  # distance from the midline
  brow_z = 0.12 - 0.2 * (1 - u)
  half_thick = 0.5 * idn.brow_thickness * (0.55 + 0.45 * u)
  brows = []
  for side, order in ((-1, slice(None)), (1, slice(None, None, -1))):
    centre = np.stack([side * brow_x, height, brow_z], axis=1)[order]
    brows.append(centre)
  lm[17:22], lm[22:27] = brows
  brow_polygons = []
  for centre, order in ((brows[0], slice(None)), (brows[1], slice(None, None, -1))):
    thick = half_thick[order][:, None] * np.array([0, 1, 0])
    brow_polygons.append(np.concatenate([centre - thick, (centre + thick)[::-1]]))

  # Eyes: both listed corner, upper lid, corner, lower lid, left to right in the image.
  # The closed lid line sits where the six-point mean stays put, so blinks do not
  # move the eye centre (and with it the whole aligned crop).
  h = idn.eye_height
  closed = -h / 8
  xs = idn.eye_width * np.array([-0.5, -1 / 6, 1 / 6, 0.5, 1 / 6, -1 / 6])
  for start, side, opening_eye in ((36, -1, e.eye_open[0]), (42, 1, e.eye_open[1])):
    up = closed + (-h - closed) * opening_eye
    down = closed + (0.75 * h - closed) * opening_eye
    ys = np.array([0, up, up, 0, down, down]) - idn.eye_tilt * xs * side
    cx = side * idn.eye_spacing / 2
    lm[start : start + 6] = np.stack([cx + xs, ys, 0.03 - 0.1 * np.abs(xs) / idn.eye_width], axis=1)

  # Nose.
  lm[27:31] = np.stack(
    [np.zeros(4), np.linspace(-0.08, idn.nose_length, 4), [0.1, 0.2, 0.3, 0.42]], axis=1
  )
  lm[31:36] = np.stack(
    [
      idn.nose_width / 2 * np.array([-1, -0.5, 0, 0.5, 1]),
      idn.nose_length + np.array([0.06, 0.1, 0.12, 0.1, 0.06]),
      [0.18, 0.25, 0.3, 0.25, 0.18],
    ],
    axis=1,
  )

  # Mouth: pressing thins and narrows the lips and shuts the mouth.
  w = idn.mouth_width / 2 * (1 - 0.08 * press)
  ul = idn.upper_lip * (1 - 0.72 * press)
  ll = idn.lower_lip * (1 - 0.72 * press)
  o = opening
  outer = [
    (-w, 0), (-0.62 * w, -0.8 * ul), (-0.24 * w, -1.05 * ul), (0, -0.85 * ul),
    (0.24 * w, -1.05 * ul), (0.62 * w, -0.8 * ul), (w, 0), (0.62 * w, 0.8 * ll + o),
    (0.26 * w, ll + o), (0, 1.05 * ll + o), (-0.26 * w, ll + o), (-0.62 * w, 0.8 * ll + o),
  ]  # fmt: skip
  inner = [
    (-0.85 * w, 0), (-0.3 * w, -0.05 * ul), (0, -0.04 * ul), (0.3 * w, -0.05 * ul),
    (0.85 * w, 0), (0.3 * w, 0.9 * o), (0, o), (-0.3 * w, 0.9 * o),
  ]  # fmt: skip
  mouth = np.array(outer + inner)
  mouth_z = 0.22 - 0.2 * (mouth[:, 0] / (idn.mouth_width / 2)) ** 2
  lm[48:68] = np.column_stack([mouth[:, 0], mouth[:, 1] + idn.mouth_y, mouth_z])

  # Render-only points: the top of the head, hair, ears, irises, furrow creases.
  theta = _TOP_THETA
  top = idn.forehead + idn.jaw_top
  x, y = _superellipse(idn.jaw_width, top, 2.3, theta)
  head_top = np.stack([x, y + idn.jaw_top, -0.1 - 0.6 * np.abs(np.cos(theta))], axis=1)
  head = np.concatenate([lm[0:17], head_top[1:-1]])

  hair_a = idn.jaw_width + 0.1 + 0.2 * idn.hair_volume
  x, y = _superellipse(hair_a, top + 0.12 + 0.3 * idn.hair_volume, 2.3, theta)
  hair_back = np.concatenate(
    [
      [[0.95 * hair_a, idn.hair_length, -0.4]],
      np.stack([x, y + idn.jaw_top, np.full_like(x, -0.4)], axis=1),
      [[-0.95 * hair_a, idn.hair_length, -0.4]],
    ]
  )
  hairline = -idn.forehead * idn.hairline
  x, y = _superellipse(idn.jaw_width * 1.02, top * 1.02, 2.3, theta)
  bx = np.linspace(-0.99, 0.99, 11) * idn.jaw_width
  rel = bx / idn.jaw_width
  by = hairline + idn.hair_part * rel + (idn.jaw_top - 0.2 - hairline) * np.abs(rel) ** 4
  fringe = np.concatenate(
    [
      np.stack([x, y + idn.jaw_top, -0.1 - 0.6 * np.abs(np.cos(theta))], axis=1),
      np.stack([bx, by, 0.1 - 0.6 * rel**2], axis=1),
    ]
  )
  ears = np.array([[-0.97, 0.3, -0.55], [0.97, 0.3, -0.55]]) * np.array([idn.jaw_width, 1, 1])
  irises = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)]) + np.array([e.gaze[0], e.gaze[1], 0.04])

  glabella_y = 0.5 * (lm[21, 1] + lm[22, 1])
  furrow_lines = np.zeros((0, 2, 3))
  if e.brow_drop > 0.02:
    length = 0.05 + 0.1 * min(e.brow_drop, 1.2)
    segments = []
    for side in (-1, 1):
      top_point = [side * 0.07, glabella_y - 0.02, 0.14]
      bottom_point = [side * 0.045, glabella_y - 0.02 + length, 0.15]
      segments.append([top_point, bottom_point])
    furrow_lines = np.array(segments)
  return dict(
    landmarks=lm,
    head=head,
    hair_back=hair_back,
    fringe=fringe,
    ears=ears,
    irises=irises,
    brow_polygons=np.stack(brow_polygons),
    furrow_lines=furrow_lines,
  )


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
  y, p, r = np.deg2rad([yaw, pitch, roll])
  ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
  rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
  rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
  return rz @ rx @ ry


@dataclasses.dataclass
class FrameGeometry:
  """Projected points of one frame, camera pixels (continuous coordinates)."""

  landmarks: np.ndarray  # (68, 2)
  head: np.ndarray  # (K, 2) outline: jaw then the top of the head
  hair_back: np.ndarray  # (M, 2)
  fringe: np.ndarray  # (F, 2)
  ears: np.ndarray  # (2, 2) centres
  ear_radii: tuple[float, float]
  brow_polygons: tuple[np.ndarray, np.ndarray]  # (10, 2) each
  irises: np.ndarray  # (2, 2) centres
  iris_radius: float
  furrow_lines: np.ndarray  # (L, 2, 2) segments, possibly empty
  neck: np.ndarray  # (4, 2)
  shoulders: np.ndarray  # (P, 2)
  px_per_unit: float


def _project(
  points: np.ndarray, rotation: np.ndarray, centre: np.ndarray, scale: float
) -> np.ndarray:
  rotated = (points - _PIVOT) @ rotation.T + _PIVOT
  return centre + scale * rotated[..., :2]


def frame_geometry(
  idn: Identity, state: dict[str, np.ndarray], f: int
) -> tuple[FrameGeometry, Expression]:
  """Frame `f` of a clip's per-frame `state`: its points in camera pixels and its expression."""
  expression = Expression(
    eye_open=(state["eye_open"][f], state["eye_open"][f]),
    brow_drop=state["brow_drop"][f],
    brow_raise=state["brow_raise"][f],
    mouth_open=state["mouth_open"][f],
    lip_press=state["lip_press"][f],
    gaze=state["gaze"][f],
    pupil=float(state["pupil"][f]) if "pupil" in state else 0.42,
    flush=float(state["flush"][f]) if "flush" in state else 0.0,
    sweat=float(state["sweat"][f]) if "sweat" in state else 0.0,
  )
  pts = face_points(idn, expression)
  rotation = rotation_matrix(state["yaw"][f], state["pitch"][f], state["roll"][f])
  centre = np.array([idn.head_x + state["tx"][f], idn.head_y + state["ty"][f]])
  scale = idn.px_per_unit * state["zoom"][f]
  flat = _project(np.concatenate([v.reshape(-1, 3) for v in pts.values()]), rotation, centre, scale)
  proj, used = {}, 0
  for name, points in pts.items():
    count = points.size // 3
    proj[name] = flat[used : used + count].reshape(*points.shape[:-1], 2)
    used += count
  body = centre + scale * np.array(
    [[-0.42 * idn.jaw_width, 0.9], [0.42 * idn.jaw_width, 0.9], [0.55, 3.5], [-0.55, 3.5]]
  )
  shoulders = centre + scale * np.array(
    [[-2.6, 4.5], [-2.3, 2.6], [-0.9, 2.15], [0.9, 2.15], [2.3, 2.6], [2.6, 4.5]]
  )
  geometry = FrameGeometry(
    landmarks=proj["landmarks"],
    head=proj["head"],
    hair_back=proj["hair_back"],
    fringe=proj["fringe"],
    ears=proj["ears"],
    ear_radii=(0.13 * scale, 0.26 * scale),
    brow_polygons=tuple(proj["brow_polygons"]),
    irises=proj["irises"],
    iris_radius=0.1 * scale,
    furrow_lines=proj["furrow_lines"],
    neck=body,
    shoulders=shoulders,
    px_per_unit=scale,
  )
  return geometry, expression
