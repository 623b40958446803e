"""Face finding on video as people record it: tiny faces, huge frames, two people crossing.

Every video is made here from real faces (tests/real_media.py); defaults are used
throughout (no min_face_px), as a new user would run them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from stress_jax import predict
from stress_jax.preprocess import ingest
from stress_jax.preprocess.config import PreprocessConfig
from stress_jax.preprocess.faces import FacePipeline, load_models
from stress_jax.preprocess.tracker import detection_scales
from tests import real_media
from tests.trained_model import exported_dir, trained_workdir  # noqa: F401

DEFAULTS = PreprocessConfig(workers=0)


def test_detection_scales_follow_the_frame_size():
  # QCIF: searched at 2x straight away (faces from 40 px).
  assert detection_scales(176, 144) == [2.0]
  # QVGA: first 1.5x (short side 360), then 2x.
  assert detection_scales(320, 240) == [1.5, 2.0]
  # Large frames: first about a third, finer while nothing is found, never over 1 Mpixel.
  square = detection_scales(1024, 1024)
  assert square[0] == pytest.approx(360 / 1024) and square == sorted(square)
  assert 1024 * 1024 * square[-1] ** 2 <= 1_000_000 * 1.001
  full_hd = detection_scales(1920, 1080)
  assert full_hd[0] == pytest.approx(1 / 3) and len(full_hd) == 2
  # A fixed smallest face fixes the scale.
  assert detection_scales(1920, 1080, min_face_px=160) == [0.5]


@pytest.mark.parametrize(
  "width,height,face_px,scale",
  # dlib finds the 50 px face at 1.5x (75 px, a little under its 80 px window).
  [(176, 144, 54, 2.0), (176, 144, 42, 2.0), (320, 240, 50, 1.5)],
  ids=str,
)
def test_low_resolution_faces_are_found_without_flags(tmp_path, width, height, face_px, scale):
  frames = real_media.sized_face_frames(width, height, face_px, 45)
  path = real_media.write(tmp_path / "small.mp4", frames, fps=30)
  # The old fixed setting (faces from 100 px) saw nothing here: the video is a real test.
  fixed = FacePipeline(DEFAULTS.replace(min_face_px=100)).process_video(path)
  assert not fixed.has_face.any()
  faces = FacePipeline(DEFAULTS).process_video(path)
  assert faces.num_frames == 23
  assert faces.has_face.mean() >= 0.95
  assert faces.detect_scale == scale
  # The face sits at the frame centre; so do its landmarks.
  centre = np.nanmean(faces.image_landmarks[faces.has_face], axis=(0, 1))
  assert abs(centre[0] - width / 2) < face_px and abs(centre[1] - height / 2) < face_px


@pytest.mark.parametrize(
  "width,height,face_px,suffix", [(1024, 1024, 300, ".avi"), (1920, 1080, 400, ".mp4")], ids=str
)
def test_large_frames_are_searched_at_reduced_scale(tmp_path, width, height, face_px, suffix):
  frames = real_media.sized_face_frames(width, height, face_px, 12)
  path = real_media.write(tmp_path / f"big{suffix}", frames, fps=30)
  faces = FacePipeline(DEFAULTS.replace(fps=0)).process_video(path)
  assert faces.has_face.all()
  assert faces.detect_scale == pytest.approx(360 / height)
  widths = faces.boxes[:, 2] - faces.boxes[:, 0]
  assert np.all(np.abs(widths - face_px) < 0.2 * face_px)


def test_a_small_face_in_a_large_frame_is_found_at_a_finer_scale(tmp_path):
  # 120 px in a 1024x1024 frame: below the coarse scale's 230 px, so the first
  # search finds nothing and the next scale is tried on the same frame.
  frames = real_media.sized_face_frames(1024, 1024, 120, 10)
  path = real_media.write(tmp_path / "far.avi", frames, fps=35)
  faces = FacePipeline(DEFAULTS.replace(fps=0)).process_video(path)
  assert faces.has_face.all()
  assert faces.detect_scale == pytest.approx(2 * 360 / 1024)


def test_ingest_report_records_the_detection_scale(tmp_path):
  path = real_media.write(
    tmp_path / "qcif.mp4", real_media.sized_face_frames(176, 144, 54, 30), fps=30
  )
  summary = ingest.process_source(path, DEFAULTS.replace(num_frames=4, stride=4), None)
  assert summary["status"] == ingest.OK
  assert summary["detect_scale"] == 2.0
  assert summary["frames_with_face"] >= 0.95 * summary["frames"]


def test_the_followed_person_is_kept_when_another_walks_across(tmp_path):
  frames, a_centre, b_centres = real_media.crossing_frames()
  detector, _ = load_models()
  # B is a detectable face while it covers A (frame 52: B's centre 5 px from A's).
  hidden = int(np.nanargmin(np.abs(b_centres[:, 0] - a_centre[0])))
  found = [np.array([r.center().x, r.center().y]) for r in detector(frames[hidden], 1)]
  assert any(np.linalg.norm(c - b_centres[hidden]) < 25 for c in found)

  path = real_media.write(tmp_path / "cross.mp4", frames, fps=30)
  faces = FacePipeline(DEFAULTS.replace(fps=0)).process_video(path)
  centres = faces.image_landmarks.mean(1)
  offset = np.linalg.norm(centres - a_centre, axis=1)
  # Every frame with a face shows A, never B.
  assert (offset[faces.has_face] < 20).all()
  # A is masked while B hides it, and found in (almost) every other frame.
  distance = np.abs(b_centres[:, 0] - a_centre[0])
  assert not faces.has_face[distance < 20].any()
  clear = ~(distance < 110)  # NaN (B out of view) counts as clear
  assert faces.has_face[clear].mean() >= 0.95


def test_largest_most_central_face_is_chosen_at_the_start(tmp_path):
  # From the frame where B first stands fully in view, a full-frame search sees both
  # (A 100 px and central, B 90 px and off-centre): A is chosen.
  frames, a_centre, _ = real_media.crossing_frames(count=45)
  path = real_media.write(tmp_path / "two.mp4", frames[30:], fps=30)
  faces = FacePipeline(DEFAULTS.replace(fps=0)).process_video(path)
  assert faces.has_face[0]
  assert np.linalg.norm(faces.image_landmarks[0].mean(0) - a_centre) < 20


def test_predict_finds_the_face_in_qcif_video_without_flags(exported_dir, tmp_path):  # noqa: F811
  path = real_media.write(
    tmp_path / "qcif.mp4", real_media.sized_face_frames(176, 144, 54, 45), fps=30
  )
  summary = predict.run(exported_dir, str(path), tmp_path / "out", num_pictures=0)
  assert summary["frames"] == 23 and summary["windows"] > 0
  assert summary["windows_without_face"] == 0
  rows = [json.loads(line) for line in (tmp_path / "out" / "qcif.jsonl").read_text().splitlines()]
  face_frames = sum(r["face_frames"] for r in rows)
  assert face_frames >= 0.95 * len(rows) * summary["window_frames"]


def test_someone_else_in_the_seat_is_not_taken_for_the_followed_person(tmp_path):
  # A talks for 1 s, leaves; 0.8 s later B sits where A was (face centre 43 px from
  # A's, inside the re-detection reach) for 2.5 s, leaves; A comes back for 1 s.
  a = real_media.sized_face_frames(480, 270, 100, 30)
  b = real_media.sized_face_frames(480, 270, 100, 38, name="WolfgangLanger_Pexels.mp4")
  empty = [np.full((270, 480, 3), 80, np.uint8)] * 12
  frames = a[:15] + empty + b + empty + a[15:]
  detector, _ = load_models()
  assert len(detector(b[10], 0)) == 1, "B must be a detectable face"
  path = real_media.write(tmp_path / "seat.mp4", frames, fps=15)
  faces = FacePipeline(DEFAULTS.replace(fps=0)).process_video(path)
  b_frames = slice(27, 27 + 38)
  assert faces.has_face[:15].all()
  assert not faces.has_face[b_frames].any(), "B was taken for A"
  # A is found again within a full-frame search's period (detect_every frames).
  assert faces.has_face[-15 + DEFAULTS.detect_every :].all()
