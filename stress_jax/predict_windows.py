"""Windows of T frames over a video's faces, scored by an exported model: whole or streamed.

`predict_windows` scores every window of a processed video in batches through the
whole model; `StreamPredictor` takes one face at a time, runs the image half of the
model on that frame only and scores the rolling window of the last T frame vectors
with the cheap classify half. On the same frames both give the same windows.
"""

from __future__ import annotations

import collections
import dataclasses
import time

import numpy as np

from stress_jax.faces.landmarks import fill_missing_landmarks

# Windows per call of the whole model: bounds memory on long videos.
BATCH_WINDOWS = 8


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
