"""predict's input and output: camera capture, streaming a video through the face
pipeline, and the files it writes (JSONL rows, timeline, attention pictures).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from stress_jax import jsonio, storage
from stress_jax.cli import UserError
from stress_jax.predict_windows import StreamPredictor


class PredictError(UserError):
  """A problem with the inputs; the message is one line naming it."""


def write_outputs(output, stem, windows, label_names, crops_of, picks, title) -> dict:
  """The JSONL, the timeline and the attention pictures; returns their paths."""
  # matplotlib writes local files only: a bucket --output gets them uploaded on exit.
  with storage.staged_directory(output) as local:
    paths = _write_outputs(local, stem, windows, label_names, crops_of, picks, title)
  return storage.rebase(paths, local, output)


def _write_outputs(output, stem, windows, label_names, crops_of, picks, title) -> dict:
  from stress_jax import plots

  jsonl = output / f"{stem}.jsonl"
  jsonl.write_text("".join(jsonio.dumps(w.row) + "\n" for w in windows))
  paths = {"jsonl": jsonl, "pictures": []}
  if windows:
    paths["timeline"] = plots.timeline_figure(
      output / f"{stem}_timeline.png", [w.row for w in windows], label_names, title
    )
  for name, window in picks.items():
    row = window.row
    crops = window.crops if window.crops is not None else crops_of(window.frame_index)
    path = output / f"{stem}_attention" / f"window{row['window']:04d}_{name}.png"
    paths["pictures"].append(
      plots.attention_figure(
        path,
        frames=crops,
        spatial=window.attention.get("spatial_attention"),
        temporal=window.attention.get("temporal_attention"),
        landmark_temporal=window.attention.get("landmark_temporal_attention"),
        frame_mask=window.frame_mask,
        frame_times=window.times,
        title=(
          f"{title} {row['start_s']:.2f}-{row['end_s']:.2f} s: most {name} window "
          f"(p={row['probabilities'][name]:.2f}, predicted {row['prediction']})"
        ),
      )
    )
  return paths


def camera_frames(index: int, max_frames: int):
  """decode.Frame objects from a camera through FFmpeg's capture device of this platform."""
  import av

  from stress_jax.preprocess.decode import Frame

  if sys.platform.startswith("linux"):
    source, fmt = f"/dev/video{index}", "v4l2"
  elif sys.platform == "darwin":
    source, fmt = str(index), "avfoundation"
  else:
    source, fmt = f"video={index}", "dshow"
  try:
    container = av.open(source, format=fmt)
  except Exception as error:  # noqa: BLE001  (FFmpeg raises many kinds; all mean "no camera")
    raise PredictError(f"cannot open camera {index} ({source}): {error}") from None
  stream = container.streams.video[0]
  rate = float(stream.average_rate or 30)

  def frames():
    started = None
    try:
      for i, frame in enumerate(container.decode(stream)):
        if max_frames and i >= max_frames:
          break
        now = time.perf_counter()
        started = now if started is None else started
        yield Frame(rgb=frame.to_ndarray(format="rgb24"), time=now - started, source_index=i)
    finally:
      container.close()

  return frames(), rate


def _head(faces, count: int):
  """The first `count` frames of a VideoFaces."""
  arrays = {
    f.name: getattr(faces, f.name)[:count]
    for f in dataclasses.fields(faces)
    if isinstance(getattr(faces, f.name), np.ndarray)
  }
  return dataclasses.replace(faces, **arrays)


def _stream(model, pipeline, video, camera, stride, preprocess, picks, max_frames):
  if camera:
    frames, rate = camera_frames(int(video), max_frames)
    faces = pipeline.iter_frames(frames, rate)
    period = 1.0 / rate
  else:
    from stress_jax.preprocess.decode import DecodeStats

    stats = DecodeStats()
    faces = pipeline.iter_video(video, stats=stats)
    period = 1.0 / preprocess.fps if preprocess.fps else None
  predictor = StreamPredictor(model, stride, period)
  predictor.warm_up()
  windows = []
  started = time.perf_counter()
  count = 0
  try:
    for face in faces:
      count += 1
      if predictor.period is None:
        # Native-rate decoding: the rate is known once the first frame is out.
        predictor.period = 1.0 / (stats.native_fps or preprocess.image_fps)
      window = predictor.push(face)
      if window is not None:
        windows.append(window)
        picks.offer(window)
        row = window.row
        text = (
          "no face"
          if row["prediction"] is None
          else (f"{row['prediction']} ({row['probabilities'][row['prediction']]:.2f})")
        )
        print(f"  {row['start_s']:7.2f}-{row['end_s']:7.2f} s  {text}", flush=True)
      if max_frames and count >= max_frames:
        break
  except KeyboardInterrupt:
    pass
  tail = predictor.finish()
  if tail is not None:
    windows.append(tail)
    picks.offer(tail)
  elapsed = time.perf_counter() - started
  timing = {
    "frames": count,
    "frames_per_s": count / elapsed if elapsed > 0 else float("nan"),
    "model_frames_per_s": count / predictor.model_seconds if predictor.model_seconds else None,
  }

  def crops_of(index):
    raise AssertionError("streamed windows carry their crops")

  return windows, crops_of, timing
