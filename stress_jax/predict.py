"""Stress over time in a video (or a camera) with an exported model.

  python -m stress_jax.predict --model=exported/demo --video=talk.mp4 [--output=DIR]
  python -m stress_jax.predict --model=exported/demo --video=talk.mp4 --stream
  python -m stress_jax.predict --model=exported/demo --video=0 --stream   # camera 0

The video goes through the face pipeline the training data went through
(stress_jax.preprocess: decoding at the export's fps, dlib landmarks, eye-aligned
112x112 crops), then the model scores windows of T frames (T = the export's clip
length) starting every --stride frames (default T/2). Writes into --output:

  <stem>.jsonl          one line per window: window, start_s, end_s, start_frame (source
                        frame index), face_frames, probabilities {label: p} and the
                        predicted label (both null when no frame of the window has a face)
  <stem>_timeline.png   the class probabilities against time
  <stem>_attention/     for each class, the window where it is most probable: crops with
                        the spatial attention, temporal weights beneath

Frames without a face are masked (the model ignores them), so a window with a few
missing faces is still scored; only a window without any face is not. A video shorter
than T frames gives one window, padded with masked frames.

--stream runs frame by frame, as on a live camera: each new frame's crop goes through
the image half of the model once (encode_frames), its vector joins a rolling window
of the last T frame vectors and landmarks, and the cheap classify_clip half scores the
window every --stride frames. Per frame that is one frame's CNN instead of T. It
prints frames/s (face pipeline included, and the model alone). On the same frames it
gives the same windows and probabilities as the default mode. A camera (an integer
--video) needs --stream and runs until Ctrl-C or --max_frames.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
import sys
import time

import numpy as np

from stress_jax import storage

# Windows per call of the whole model: bounds memory on long videos.
BATCH_WINDOWS = 8


class PredictError(Exception):
  """A problem with the inputs; the message is one line naming it."""


def window_starts(num_frames: int, window: int, stride: int) -> np.ndarray:
  """First frame of each scored window; one (padded) window for a short video."""
  if num_frames == 0:
    return np.zeros((0,), np.int64)
  if num_frames < window:
    return np.zeros((1,), np.int64)
  return np.arange(0, num_frames - window + 1, stride, dtype=np.int64)


def _gather(values: np.ndarray, index: np.ndarray, fill) -> np.ndarray:
  """values[index] with positions past the end (padding of a short video) set to fill."""
  inside = index < values.shape[0]
  out = values[np.minimum(index, values.shape[0] - 1)]
  out[~inside] = fill
  return out


@dataclasses.dataclass
class Window:
  """One scored window and what its pictures need."""

  row: dict  # the JSON line
  frame_index: np.ndarray  # (T,) indices into the processed frames (clipped)
  frame_mask: np.ndarray  # (T,)
  times: np.ndarray  # (T,) seconds
  crops: np.ndarray | None = None  # (T,112,112,3) uint8 (streaming keeps its own)
  attention: dict = dataclasses.field(default_factory=dict)  # per-window aux arrays


def _row(index, start_s, end_s, start_frame, mask, probabilities, label_names) -> dict:
  faces = int(np.sum(mask))
  row = {
    "window": int(index),
    "start_s": round(float(start_s), 4),
    "end_s": round(float(end_s), 4),
    "start_frame": int(start_frame),
    "face_frames": faces,
    "probabilities": None,
    "prediction": None,
  }
  if faces:
    row["probabilities"] = {n: float(p) for n, p in zip(label_names, probabilities, strict=True)}
    row["prediction"] = label_names[int(np.argmax(probabilities))]
  return row


def frame_period(faces, preprocess) -> float:
  rate = preprocess.fps or faces.native_fps or preprocess.image_fps
  return 1.0 / float(rate)


def predict_windows(model, faces, stride: int, period: float) -> list[Window]:
  """Every window of a processed video (`preprocess.VideoFaces`) through the whole model."""
  from stress_jax.preprocess.clips import fill_missing_landmarks

  window = model.num_frames
  starts = window_starts(faces.num_frames, window, stride)
  if not len(starts):
    return []
  landmarks = fill_missing_landmarks(faces.landmarks, faces.has_face)
  results = []
  for chunk in range(0, len(starts), BATCH_WINDOWS):
    index = starts[chunk : chunk + BATCH_WINDOWS, None] + np.arange(window)[None, :]
    mask = _gather(np.asarray(faces.has_face, bool), index, False)
    crops = _gather(faces.crops, index, 0)
    inputs = crops.astype(np.float32) / 255.0
    out = model(inputs, _gather(landmarks, index, 0.0), mask)
    for k in range(index.shape[0]):
      clipped = np.minimum(index[k], faces.num_frames - 1)
      times = faces.timestamps[clipped]
      last = clipped[mask[k]].max() if mask[k].any() else clipped[-1]
      row = _row(
        chunk + k,
        times[0],
        faces.timestamps[last] + period,
        faces.source_index[clipped[0]],
        mask[k],
        out["probabilities"][k],
        model.label_names,
      )
      attention = {key: out[key][k] for key in out if key != "probabilities"}
      results.append(Window(row, clipped, mask[k], times, attention=attention))
  return results


class StreamPredictor:
  """Rolling window over per-frame vectors: push `FaceFrame`s, get a `Window` every stride."""

  def __init__(self, model, stride: int, period: float):
    self.model = model
    self.stride = stride
    self.period = period
    self.window = model.num_frames
    self.buffer = collections.deque(maxlen=self.window)
    self.seen = 0
    self.emitted = 0
    self.model_seconds = 0.0
    self.last_landmarks = np.zeros((68, 2), np.float32)
    self.empty_vector = np.zeros((model.frame_vector_size,), np.float32)
    self.empty_map = None

  def warm_up(self) -> None:
    """Compiles both halves for their streaming shapes, so timings count steady work."""
    frame_shape = tuple(self.model.config["frame_shape"])
    if self.model.image_stream:
      out = self.model.encode_frames(np.zeros((1, *frame_shape), np.float32), np.ones(1, bool))
      self.empty_map = np.zeros_like(out["spatial_attention"][0])
    t = self.window
    self.model.classify_clip(
      np.zeros((1, t, self.model.frame_vector_size), np.float32),
      np.zeros((1, t, 68, 2), np.float32),
      np.ones((1, t), bool),
    )

  def push(self, face) -> Window | None:
    started = time.perf_counter()
    spatial = None
    if face.has_face and self.model.image_stream:
      out = self.model.encode_frames(
        face.crop[None].astype(np.float32) / 255.0, np.ones((1,), bool)
      )
      vector, spatial = out["frame_vectors"][0], out["spatial_attention"][0]
    else:
      vector = self.empty_vector
      if self.model.image_stream:
        spatial = self.empty_map
    if face.has_face:
      self.last_landmarks = np.asarray(face.landmarks, np.float32)
    # A faceless frame is masked, so its landmarks never reach the output; the last
    # face's keep the input plausible.
    self.buffer.append((vector, spatial, self.last_landmarks, bool(face.has_face), face))
    self.seen += 1
    result = None
    if self.seen >= self.window and (self.seen - self.window) % self.stride == 0:
      result = self._score()
    self.model_seconds += time.perf_counter() - started
    return result

  def finish(self) -> Window | None:
    """A stream shorter than one window still gets one, padded with masked frames."""
    if self.emitted or not self.buffer:
      return None
    return self._score()

  def _score(self) -> Window:
    entries = list(self.buffer)
    pad = self.window - len(entries)
    vectors = np.stack([e[0] for e in entries] + [self.empty_vector] * pad)
    landmarks = np.stack([e[2] for e in entries] + [np.zeros((68, 2), np.float32)] * pad)
    mask = np.array([e[3] for e in entries] + [False] * pad)
    out = self.model.classify_clip(vectors[None], landmarks[None], mask[None])
    faces = [e[4] for e in entries] + [entries[-1][4]] * pad
    times = np.array([f.time for f in faces])
    last = max((f.time for f, m in zip(faces, mask, strict=True) if m), default=faces[-1].time)
    row = _row(
      self.emitted,
      times[0],
      last + self.period,
      faces[0].source_index,
      mask,
      out["probabilities"][0],
      self.model.label_names,
    )
    attention = {k: v[0] for k, v in out.items() if k != "probabilities"}
    if self.model.image_stream:
      attention["spatial_attention"] = np.stack([e[1] for e in entries] + [self.empty_map] * pad)
    frame_index = np.arange(self.seen - len(entries), self.seen - len(entries) + self.window)
    crops = np.stack([f.crop for f in faces])
    self.emitted += 1
    return Window(row, frame_index, mask, times, crops=crops, attention=attention)


class BestPerClass:
  """Keeps, for each class, the window where it is most probable (for the pictures)."""

  def __init__(self, label_names, limit: int):
    self.label_names = tuple(label_names)
    self.limit = limit
    self.best: dict[str, Window] = {}

  def offer(self, window: Window) -> None:
    probabilities = window.row["probabilities"]
    if probabilities is None:
      return
    for name in self.label_names[: self.limit]:
      held = self.best.get(name)
      if held is None or probabilities[name] > held.row["probabilities"][name]:
        self.best[name] = window


def write_outputs(output, stem, windows, label_names, crops_of, picks, title) -> dict:
  """The JSONL, the timeline and the attention pictures; returns their paths."""
  # matplotlib writes local files only: a bucket --output gets them uploaded on exit.
  with storage.staged_directory(output) as local:
    paths = _write_outputs(local, stem, windows, label_names, crops_of, picks, title)
  return storage.rebase(paths, local, output)


def _write_outputs(output, stem, windows, label_names, crops_of, picks, title) -> dict:
  from stress_jax import plots

  jsonl = output / f"{stem}.jsonl"
  jsonl.write_text("".join(json.dumps(w.row) + "\n" for w in windows))
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


def _preprocess(model, fps: float | None):
  from stress_jax.preprocess import PreprocessConfig

  settings = dict(model.config.get("preprocess") or {})
  settings = {k: v for k, v in settings.items() if k in PreprocessConfig.__dataclass_fields__}
  config = PreprocessConfig.from_mapping(settings)
  return config.replace(fps=fps) if fps is not None else config


def _load_model(path):
  from stress_jax import export

  if storage.is_remote(path):
    try:
      path = storage.local_copy(path)  # the exported programs load from local files
    except FileNotFoundError as error:
      raise PredictError(f"{path} is not an export folder: {error}") from None
  path = pathlib.Path(path)
  if not (path / "config.json").is_file() or not (path / export.MODEL_FILE).is_file():
    raise PredictError(f"{path} is not an export folder (run python -m stress_jax.export first)")
  return export.load_exported(path)


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


def run(
  model_dir,
  video,
  output="predictions",
  stride: int = 0,
  stream: bool = False,
  num_pictures: int = 3,
  fps: float | None = None,
  max_frames: int = 0,
) -> dict:
  """The CLI's work; returns a summary (counts, paths, frames/s in streaming)."""
  from stress_jax.preprocess import DecodeError, FacePipeline

  model = _load_model(model_dir)
  camera = isinstance(video, int) or (isinstance(video, str) and video.strip().isdigit())
  if camera and not stream:
    raise PredictError("a camera (integer --video) needs --stream")
  if not camera and not pathlib.Path(video).is_file():
    raise PredictError(f"video {video} does not exist")
  if stride < 0 or num_pictures < 0 or max_frames < 0:
    raise PredictError("--stride, --num_pictures and --max_frames must be >= 0")
  preprocess = _preprocess(model, fps)
  stride = stride or preprocess.stride or max(1, model.num_frames // 2)
  pipeline = FacePipeline(preprocess)
  stem = f"camera{int(video)}" if camera else pathlib.Path(video).stem
  picks = BestPerClass(model.label_names, num_pictures)
  summary = {"stem": stem, "stride": stride, "window_frames": model.num_frames}
  try:
    if stream:
      windows, crops_of, timing = _stream(
        model, pipeline, video, camera, stride, preprocess, picks, max_frames
      )
      summary.update(timing)
    else:
      faces = pipeline.process_video(video)
      if max_frames:
        faces = _head(faces, max_frames)
      windows = predict_windows(model, faces, stride, frame_period(faces, preprocess))
      for window in windows:
        picks.offer(window)

      def crops_of(index):
        return faces.crops[index]

      summary["frames"] = faces.num_frames
  except DecodeError as error:
    raise PredictError(f"cannot read {video}: {str(error).splitlines()[0]}") from None
  paths = write_outputs(output, stem, windows, model.label_names, crops_of, picks.best, stem)
  scored = [w.row for w in windows if w.row["probabilities"] is not None]
  summary.update(
    windows=len(windows),
    windows_without_face=len(windows) - len(scored),
    mean_probabilities={
      n: float(np.mean([r["probabilities"][n] for r in scored])) if scored else None
      for n in model.label_names
    },
    paths={k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in paths.items()},
  )
  return summary


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


def format_summary(summary: dict) -> str:
  lines = [
    f"{summary['stem']}: {summary['frames']} frames, {summary['windows']} windows of "
    f"{summary['window_frames']} frames every {summary['stride']} "
    f"({summary['windows_without_face']} without a face)"
  ]
  means = summary["mean_probabilities"]
  if any(v is not None for v in means.values()):
    lines.append("  mean probability: " + "  ".join(f"{k} {v:.3f}" for k, v in means.items()))
  if "frames_per_s" in summary:
    model_rate = summary["model_frames_per_s"]
    lines.append(
      f"  stream: {summary['frames_per_s']:.1f} frames/s with the face pipeline"
      + (f", {model_rate:.1f} frames/s for the model alone" if model_rate else "")
    )
  lines.append(f"  wrote {summary['paths']['jsonl']}")
  return "\n".join(lines)


def main(argv):
  from absl import flags, logging

  if len(argv) > 1:
    raise SystemExit(f"predict: unexpected arguments {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)
  try:
    summary = run(
      _MODEL.value,
      _VIDEO.value,
      _OUTPUT.value,
      _STRIDE.value,
      _STREAM.value,
      _NUM_PICTURES.value,
      _FPS.value,
      _MAX_FRAMES.value,
    )
  except PredictError as error:
    raise SystemExit(f"predict: {error}") from None
  print(format_summary(summary), flush=True)


if __name__ == "__main__":
  from absl import app, flags

  _MODEL = flags.DEFINE_string("model", None, "An export folder (python -m stress_jax.export).")
  _VIDEO = flags.DEFINE_string("video", None, "A video file, or a camera index with --stream.")
  _OUTPUT = flags.DEFINE_string("output", "predictions", "Where the results go.")
  _STRIDE = flags.DEFINE_integer("stride", 0, "Frames between window starts; 0 = T/2.")
  _STREAM = flags.DEFINE_boolean("stream", False, "Frame-by-frame with cached frame vectors.")
  _NUM_PICTURES = flags.DEFINE_integer("num_pictures", 3, "Attention pictures (one per class).")
  _FPS = flags.DEFINE_float("fps", None, "Decode rate; default: the export's preprocess.fps.")
  _MAX_FRAMES = flags.DEFINE_integer("max_frames", 0, "Stop after this many frames; 0 = all.")
  flags.mark_flags_as_required(["model", "video"])
  app.run(main)
