"""Frames out of anything FFmpeg reads (through PyAV), or out of a folder of images.

`read_frames` yields RGB frames resampled onto a fixed-rate time grid, each with
its time and its index in the source, and counts what it decoded. Failures of
any kind (unreadable container, broken packets, bad image files) surface as
`DecodeError`, so callers need to know about one exception type only.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class DecodeError(RuntimeError):
  """The source could not be read (missing, corrupt, truncated, not a video)."""


class EmptySourceError(DecodeError):
  """The source holds nothing to decode (a zero-byte file)."""


@dataclasses.dataclass
class Frame:
  rgb: np.ndarray  # (H, W, 3) uint8
  time: float  # seconds since the start of the source
  source_index: int  # index of this frame in the source at its native rate


@dataclasses.dataclass
class DecodeStats:
  """Filled in while `read_frames` runs; final once the iterator is exhausted."""

  frames_decoded: int = 0  # source frames inside the requested segment
  frames_out: int = 0  # frames yielded after resampling
  native_fps: float = 0.0


def _natural_key(name: str):
  return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: str | os.PathLike) -> list[Path]:
  """The image files of a frame folder, in natural order (frame2 before frame10)."""
  folder = Path(folder)
  files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
  return sorted(files, key=lambda p: _natural_key(p.name))


class _Resampler:
  """Picks, for each tick k/fps of the output grid, the source frame nearest in time.

  Streaming: a source frame is emitted for every tick up to the midpoint between
  it and the next frame (a tick on the midpoint goes to the earlier frame), so at
  the native rate each frame comes out once, below it frames are dropped and above
  it they repeat. Frames never picked are never converted to RGB, which is where
  much of a decoder's per-frame cost goes.
  """

  # Ticks are k / fps in floating point; a tick this close to a midpoint is on it.
  TOLERANCE = 1e-7

  def __init__(self, fps: float, origin: float | None):
    self.fps = fps
    self.origin = origin
    self.tick = 0
    self.previous = None  # (time, payload)

  def _tick_time(self) -> float:
    return self.origin + self.tick / self.fps

  def push(self, time: float, payload):
    """Yields the (time, payload) pairs to emit now that a frame at `time` has arrived."""
    if self.fps <= 0:
      yield time, payload
      return
    if self.origin is None:
      self.origin = time
    if self.previous is not None:
      midpoint = 0.5 * (self.previous[0] + time)
      while self._tick_time() <= midpoint + self.TOLERANCE:
        yield self.previous
        self.tick += 1
    self.previous = (time, payload)

  def finish(self, last_duration: float):
    """The last frame lasts `last_duration`; it takes the ticks up to its midpoint."""
    if self.fps <= 0 or self.previous is None:
      return
    end = self.previous[0] + 0.5 * last_duration
    while self._tick_time() <= end + self.TOLERANCE:
      yield self.previous
      self.tick += 1


def _rotate(rgb: np.ndarray, rotation: float) -> np.ndarray:
  # Phones store portrait video sideways plus a display rotation (counter-clockwise
  # degrees); FFmpeg's player applies it, so we do too or faces lie on their side.
  quarter_turns = int(round(rotation / 90.0)) % 4
  return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def _tagged_rotation(stream) -> float:
  """Counter-clockwise degrees from a `rotate` tag (clockwise degrees), 0 without one.

  FFmpeg turns an MP4/MOV display matrix into frame side data (`frame.rotation`) but
  leaves the older tag, which Matroska files and some converters carry, to players.
  """
  tags = {key.lower(): value for key, value in (stream.metadata or {}).items()}
  try:
    return -float(tags.get("rotate", 0))
  except ValueError:
    return 0.0


def _square_pixels(stream) -> float:
  """Width factor that makes non-square pixels (anamorphic DV, some webcams) square; 1 if none."""
  sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
  return float(sar) if sar and float(sar) > 0 else 1.0


def _declared_duration(container, stream, native_fps: float) -> float:
  candidates = [0.0]
  if stream.duration and stream.time_base:
    candidates.append(float(stream.duration * stream.time_base))
  if container.duration:
    candidates.append(container.duration / 1e6)  # AV_TIME_BASE units
  if stream.frames and native_fps > 0:
    candidates.append(stream.frames / native_fps)
  return max(candidates)


def _check_complete(path, container, stream, native_fps, last_time, frame_duration, end_s):
  """Raises DecodeError if decoding ended well before the length the container declares.

  FFmpeg reads a cut-off AVI or Matroska file up to the cut without complaint; the
  header still says how long the recording was. Small shortfalls are normal (edit
  lists, rounding), so only a gap over max(0.5 s, 5 %) counts.
  """
  declared = _declared_duration(container, stream, native_fps)
  if end_s is not None:
    declared = min(declared, end_s)
  decoded_end = 0.0 if last_time is None else last_time + frame_duration
  if declared - decoded_end > max(0.5, 0.05 * declared):
    raise DecodeError(
      f"{path} is truncated: frames end at {decoded_end:.2f} s but the container declares "
      f"{declared:.2f} s"
    )


def _read_video(path, fps, start_s, end_s, threads, stats) -> Iterator[Frame]:
  # PyAV is imported here, where video is read, so that training and export run on
  # machines without it (a GPU host that cannot install it, say).
  import av

  try:
    container = av.open(str(path))
  except (av.FFmpegError, OSError, ValueError) as err:
    raise DecodeError(f"cannot open {path}: {err}") from err
  with container:
    if not container.streams.video:
      raise DecodeError(f"{path} has no video stream")
    stream = container.streams.video[0]
    # Frame threading decodes several frames at once; it is what keeps H.264 decoding
    # of a 640x360 stream near a millisecond a frame.
    stream.thread_type = "AUTO"
    if threads:
      stream.thread_count = threads
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    native_fps = float(rate) if rate else 0.0
    stats.native_fps = native_fps
    frame_duration = 1.0 / native_fps if native_fps > 0 else 0.0
    time_base = float(stream.time_base) if stream.time_base else 0.0
    stream_start = (stream.start_time or 0) * time_base
    if start_s:
      try:
        container.seek(int((stream_start + start_s) / time_base), stream=stream, backward=True)
      except (av.FFmpegError, ZeroDivisionError, OverflowError) as err:
        raise DecodeError(f"cannot seek to {start_s}s in {path}: {err}") from err
    resampler = _Resampler(fps, start_s if start_s else None)
    tag_rotation, widen = _tagged_rotation(stream), _square_pixels(stream)
    # The last converted frame, held (not its id) so a repeat is converted once.
    cache = [None, None]

    def convert(item):
      time, av_frame = item
      if cache[0] is av_frame:
        rgb = cache[1]
      else:
        if abs(widen - 1.0) > 1e-3:
          # Faces would be squashed or stretched, and the detector misses those.
          width = max(1, round(av_frame.width * widen))
          av_frame_rgb = av_frame.reformat(width=width, height=av_frame.height, format="rgb24")
        else:
          av_frame_rgb = av_frame
        rgb = _rotate(av_frame_rgb.to_ndarray(format="rgb24"), av_frame.rotation or tag_rotation)
        cache[:] = [av_frame, rgb]
      stats.frames_out += 1
      index = int(round(time * native_fps)) if native_fps else stats.frames_out - 1
      return Frame(rgb=rgb, time=time, source_index=index)

    decoded, last_time, reached_end = 0, None, False
    try:
      for av_frame in container.decode(stream):
        if av_frame.pts is not None and time_base:
          time = av_frame.pts * time_base - stream_start
        else:
          time = decoded * frame_duration
        decoded += 1
        if start_s and time < start_s - 1e-6:
          continue
        if end_s is not None and time >= end_s - 1e-6:
          reached_end = True
          break
        stats.frames_decoded += 1
        last_time = time
        for item in resampler.push(time, av_frame):
          yield convert(item)
    except av.FFmpegError as err:
      raise DecodeError(f"{path} is corrupt or truncated: {err}") from err
    if not reached_end:
      _check_complete(path, container, stream, native_fps, last_time, frame_duration, end_s)
    for item in resampler.finish(frame_duration):
      yield convert(item)


def _read_images(folder, fps, start_s, end_s, image_fps, stats) -> Iterator[Frame]:
  files = list_images(folder)
  stats.native_fps = image_fps
  resampler = _Resampler(fps, start_s if start_s else None)

  def convert(item):
    time, index = item
    try:
      with Image.open(files[index]) as image:
        rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
      raise DecodeError(f"cannot read frame image {files[index]}: {err}") from err
    stats.frames_out += 1
    return Frame(rgb=rgb, time=time, source_index=index)

  first = max(0, math.ceil((start_s or 0.0) * image_fps - 1e-6))
  for index in range(first, len(files)):
    time = index / image_fps
    if end_s is not None and time >= end_s - 1e-6:
      break
    stats.frames_decoded += 1
    for item in resampler.push(time, index):
      yield convert(item)
  for item in resampler.finish(1.0 / image_fps):
    yield convert(item)


def read_frames(
  path: str | os.PathLike,
  *,
  fps: float = 0.0,
  start_s: float | None = None,
  end_s: float | None = None,
  threads: int = 0,
  image_fps: float = 30.0,
  stats: DecodeStats | None = None,
) -> Iterator[Frame]:
  """RGB frames of a video file or a frame-image folder.

  Args:
    path: a video file in any container/codec FFmpeg reads, or a folder of images.
    fps: output rate; frames are picked nearest in time to k / fps after the start.
      0 yields every source frame.
    start_s, end_s: the segment to read, in seconds from the start of the source.
    threads: decoder threads (0 lets FFmpeg choose).
    image_fps: the rate a frame folder was recorded at.
    stats: filled in with counts as frames are read.
  """
  stats = stats if stats is not None else DecodeStats()
  path = Path(path)
  if path.is_dir():
    return _read_images(path, fps, start_s, end_s, image_fps, stats)
  if not path.exists():
    raise DecodeError(f"{path} does not exist")
  if path.stat().st_size == 0:
    # FFmpeg would call this "invalid data"; saying what it is helps more.
    raise EmptySourceError(f"{path} is empty (0 bytes)")
  return _read_video(path, fps, start_s, end_s, threads, stats)
