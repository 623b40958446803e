"""Awkward real files: phone rotation, variable frame rate, odd sizes, non-square pixels."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from PIL import Image

from stress_jax.preprocess import decode
from stress_jax.preprocess.config import PreprocessConfig
from stress_jax.preprocess.faces import FacePipeline
from tests import real_media

CONFIG = PreprocessConfig(fps=15, workers=0)


def upright(count: int) -> list[np.ndarray]:
  return real_media.sized_face_frames(320, 240, 80, count)


def assert_same_pictures(decoded: list[decode.Frame], expected: list[np.ndarray]):
  assert len(decoded) == len(expected)
  for frame, reference in zip(decoded, expected, strict=True):
    assert frame.rgb.shape == reference.shape
    assert np.abs(frame.rgb.astype(int) - reference).mean() < 4


@pytest.mark.parametrize("clockwise", [90, 180, 270])
def test_phone_display_matrix_gives_upright_frames(tmp_path, clockwise):
  frames = upright(8)
  # The sensor's frames: what the phone stores before asking for a clockwise turn.
  stored = [np.ascontiguousarray(np.rot90(f, clockwise // 90)) for f in frames]
  path = real_media.write(tmp_path / "phone.mp4", stored, fps=30)
  real_media.set_display_rotation(path, clockwise)
  with av.open(str(path)) as container:
    # FFmpeg reports the display matrix counter-clockwise.
    assert (next(container.decode(video=0)).rotation + clockwise) % 360 == 0
  assert_same_pictures(list(decode.read_frames(path)), frames)
  assert FacePipeline(CONFIG).process_video(path).has_face.all()


def test_rotate_tag_gives_upright_frames(tmp_path):
  frames = upright(6)
  stored = [np.ascontiguousarray(np.rot90(f, 1)) for f in frames]
  path = real_media.write(tmp_path / "tagged.mkv", stored, fps=30, rotate=90)
  with av.open(str(path)) as container:
    # FFmpeg leaves this tag to players: the frames carry no rotation of their own.
    assert next(container.decode(video=0)).rotation == 0
  assert_same_pictures(list(decode.read_frames(path)), frames)


def test_variable_frame_rate_decodes_on_the_configured_grid(tmp_path):
  # 40 frames, gaps of 20, 20 and 60 ms in turn (a phone dropping its rate in dim light).
  gaps = [0.02 if i % 3 else 0.06 for i in range(39)]
  times = np.concatenate([[0.0], np.cumsum(gaps)])
  # Each frame its own grey level, so the picked source frame can be read back.
  levels = np.linspace(20, 235, len(times)).round().astype(np.uint8)
  frames = [np.full((96, 128, 3), level, np.uint8) for level in levels]
  path = real_media.write(tmp_path / "vfr.mkv", frames, fps=30, times=times)
  with av.open(str(path)) as container:
    stamps = [float(f.pts * f.time_base) for f in container.decode(video=0)]
  np.testing.assert_allclose(stamps, times, atol=2e-3)

  out = list(decode.read_frames(path, fps=10))
  last = times[-1] + 0.5 * gaps[-1]
  assert len(out) == int(np.floor(last * 10 + 1e-6)) + 1
  # Every tick k / 10 falls on a frame here; the frame's own time is kept.
  np.testing.assert_allclose([f.time for f in out], np.arange(len(out)) / 10, atol=2e-3)
  for frame in out:
    nearest = int(np.argmin(np.abs(times - frame.time)))
    assert abs(int(frame.rgb.mean()) - int(levels[nearest])) <= 3


def test_variable_frame_rate_face_video_gives_the_configured_rate(tmp_path):
  frames = upright(45)
  gaps = [1 / 60 if i % 2 else 1 / 20 for i in range(44)]
  times = np.concatenate([[0.0], np.cumsum(gaps)])
  path = real_media.write(tmp_path / "vfr_face.mkv", frames, fps=30, times=times)
  faces = FacePipeline(CONFIG).process_video(path)
  duration = times[-1] + 0.5 * gaps[-1]
  assert faces.num_frames == int(np.floor(duration * 15 + 1e-6)) + 1
  # Each output frame is the source frame nearest its tick k / 15 (times are the source's).
  grid = np.arange(faces.num_frames) / 15
  assert np.all(np.abs(faces.timestamps - grid) <= 0.5 * max(gaps) + 1e-6)
  assert faces.has_face.mean() >= 0.95


def test_odd_frame_size(tmp_path):
  frames = [np.ascontiguousarray(f[:239, :317]) for f in upright(12)]
  path = real_media.write(tmp_path / "odd.avi", frames, fps=30)
  decoded = list(decode.read_frames(path))
  assert_same_pictures(decoded, frames)
  faces = FacePipeline(CONFIG).process_video(path)
  assert faces.num_frames == 6 and faces.has_face.all()


def test_non_square_pixels_are_made_square(tmp_path):
  frames = upright(6)
  path = tmp_path / "anamorphic.avi"
  with av.open(str(path), "w") as container:
    stream = container.add_stream("mjpeg", rate=30)
    stream.width, stream.height, stream.pix_fmt = 240, 240, "yuvj420p"
    stream.codec_context.sample_aspect_ratio = fractions.Fraction(4, 3)
    for rgb in frames:
      squeezed = np.asarray(Image.fromarray(rgb).resize((240, 240), Image.BILINEAR))
      for packet in stream.encode(av.VideoFrame.from_ndarray(squeezed, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  decoded = list(decode.read_frames(path))
  assert decoded[0].rgb.shape == (240, 320, 3)
  assert_same_pictures(decoded, frames)
