"""The `stress_faces/video` TFDS builder config end to end: build, read back, fail cleanly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from stress_jax.faces import records
from stress_jax.preprocess import examples, ingest
from stress_jax.preprocess.manifest import ManifestError
from tests.conftest import one_line_error
from tests.test_ingest import CONFIG, write_manifest
from tests.test_preprocess import face_frames, write_garbage, write_video
from tfds_builders.stress_faces import StressFaces, StressFacesConfig


def small_video_config(**changes) -> StressFacesConfig:
  """The `video` config with test-sized clips and an in-process pipeline."""
  changes = {"labels": ("calm", "stress"), **changes}
  return StressFacesConfig(
    name="video_test", kind="video", preprocess=CONFIG.replace(workers=0), **changes
  )


def manual_dir(root: Path) -> Path:
  manual = root / "manual"
  manual.mkdir()
  write_video(manual / "p1.mp4", face_frames(12, blank={1}), fps=10)
  write_video(manual / "p2.avi", face_frames(8), fps=10)
  write_garbage(manual / "broken.mp4")
  write_manifest(
    manual, ["p1.mp4,person 1,stress,,,", "p2.avi,person 2,calm,,,", "broken.mp4,person 2,calm,,,"]
  )
  return manual


def prepare(builder, manual):
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual)),
    file_format="array_record",
  )


def test_registered_video_config():
  builder = StressFaces(config="video", data_dir="/nonexistent-not-built")
  assert builder.builder_config.preprocess.num_frames == 16
  features = builder.info.features
  assert features["frame_mask"].shape == (16,)
  assert "cue_frames" not in features and "frames" in features and "landmarks" in features
  assert "manifest.csv" in StressFaces.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_video_builder_builds_and_reads_back(tmp_path):
  manual = manual_dir(tmp_path)
  data_dir = tmp_path / "tfds"
  builder = StressFaces(config=small_video_config(), data_dir=str(data_dir))
  prepare(builder, manual)

  # Read back by a fresh builder: label names come back from the saved metadata.
  reader = StressFaces(config=small_video_config(), data_dir=str(data_dir))
  assert reader.is_prepared()
  assert reader.info.features["label"].names == ["calm", "stress"]
  assert sorted(reader.info.splits.keys()) == ["s_person_1", "s_person_2"]
  assert reader.info.splits["s_person_1"].num_examples == 3
  assert reader.info.splits["s_person_2"].num_examples == 2

  report = json.loads((Path(reader.data_dir) / ingest.REPORT_NAME).read_text())
  assert report["totals"]["clips_written"] == 5
  assert [s["status"] for s in report["sources"]] == ["ok", "ok", "corrupt"]
  assert not (Path(reader.data_dir) / ingest.SCRATCH_NAME).exists()

  source = reader.as_data_source("s_person_1")
  examples = sorted((source[i] for i in range(len(source))), key=lambda e: e["start_frame"])
  assert [int(e["start_frame"]) for e in examples] == [0, 4, 8]
  first = examples[0]
  assert records.as_text(first["subject"]) == "person 1"
  assert records.as_text(first["video"]) == "p1.mp4"
  assert first["label"] == 1  # "stress"
  np.testing.assert_array_equal(first["frame_mask"], [True, False, True, True])
  frames = np.stack([np.asarray(f) for f in first["frames"]])
  assert frames.shape == (4, 112, 112, 3) and frames[1].max() < 10 and frames[0].mean() > 40
  assert np.isfinite(first["landmarks"]).all()
  # The crops are the eye-aligned ones: eye centres where face_geometry puts them.
  eyes = first["landmarks"][0, 36:48].reshape(2, 6, 2).mean(1)
  np.testing.assert_allclose(eyes, [[0.33, 0.38], [0.67, 0.38]], atol=1e-4)


class _SmallVideoFaces(StressFaces, skip_registration=True):
  """stress_faces with the test-sized video config, for `build.build_dataset`."""

  name = "stress_faces"
  BUILDER_CONFIGS = [small_video_config()]


def test_fixed_labels_are_checked_against_the_manifest(tmp_path, monkeypatch):
  from stress_jax.data import build

  monkeypatch.setattr(build, "builder_class", lambda dataset: _SmallVideoFaces)
  manual = manual_dir(tmp_path)
  write_manifest(manual, ["p1.mp4,person 1,b,,,", "p2.avi,person 2,a,,,"])
  data_dir = str(tmp_path / "tfds")
  # data.labels holds them as one string; the CLI's --labels gives a list.
  built = build.build_dataset(
    "stress_faces/video_test", data_dir=data_dir, manual_dir=manual, labels=" a, b"
  )
  assert built.info.features["label"].names == ["a", "b"]
  stored = [int(e["label"]) for split in built.as_data_source().values() for e in split]
  assert sorted(set(stored)) == [0, 1]
  # Opened without the labels, as training opens it, it still reports the stored ones.
  reopened = _SmallVideoFaces(config="video_test", data_dir=data_dir)
  assert reopened.info.features["label"].names == ["a", "b"]
  with pytest.raises(build.BuildError, match="was built with labels a,b, not a,c"):
    build.build_dataset("stress_faces/video_test", data_dir=data_dir, labels=["a", "c"])

  write_manifest(manual, ["p1.mp4,person 1,a,,,", "p2.avi,person 2,panic,,,"])
  with pytest.raises(ManifestError, match="line 3: unknown label 'panic' .known: a, b."):
    build.build_dataset(
      "stress_faces/video_test", data_dir=str(tmp_path / "b"), manual_dir=manual, labels="a,b"
    )
  assert not list((tmp_path / "b").rglob("*.array_record*"))


def _leftovers(data_dir: Path) -> list[str]:
  return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file())


def test_bad_manifest_stops_before_any_work(tmp_path):
  manual = manual_dir(tmp_path)
  write_manifest(manual, ["p1.mp4,a,calm,,,", "nope.mp4,a,calm,,,", "p1.mp4,b,calm,,,"])
  data_dir = tmp_path / "tfds"
  builder = StressFaces(config=small_video_config(), data_dir=str(data_dir))
  with pytest.raises(ManifestError) as caught:
    prepare(builder, manual)
  assert [line for line, _ in caught.value.problems] == [3, 4]
  assert not builder.is_prepared()
  version_dirs = list(data_dir.rglob("1.0.0")) + list(data_dir.rglob("*incomplete*"))
  assert version_dirs == []
  assert not [p for p in _leftovers(data_dir) if p.endswith(ingest.REPORT_NAME)]


def test_failed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
  manual = manual_dir(tmp_path)
  data_dir = tmp_path / "tfds"
  real = examples.iter_examples

  def failing(result, num_frames):
    yield from real(result, num_frames)
    raise OSError("disk full (simulated)")

  monkeypatch.setattr(examples, "iter_examples", failing)
  builder = StressFaces(config=small_video_config(), data_dir=str(data_dir))
  with pytest.raises(OSError, match="simulated"):
    prepare(builder, manual)
  assert not builder.is_prepared()
  assert not list(data_dir.rglob("dataset_info.json"))
  assert not list(data_dir.rglob(ingest.REPORT_NAME))
  assert not list(data_dir.rglob("*incomplete*"))


def test_build_cli_reports_a_bad_manifest(tmp_path):
  manual = manual_dir(tmp_path)
  write_manifest(manual, ["../p1.mp4,a,calm,,,", "p1.mp4,a,stres,,,"])
  line = one_line_error(
    [
      "-m",
      "stress_jax.data.build",
      "stress_faces/video",
      "--labels=calm,stress",
      f"--manual_dir={manual}",
      f"--data_dir={tmp_path / 'tfds'}",
    ]
  )
  assert "line 2: path '../p1.mp4' leaves the manual dir" in line
  # A misspelt label stops the build, naming its line, instead of becoming a class.
  assert "line 3: unknown label 'stres' (known: calm, stress)" in line
  assert not list((tmp_path / "tfds").rglob("*.array_record*"))


def test_jpeg_frames_decode_to_the_stored_crops(tmp_path):
  # The JPEG bytes the worker writes are encode_jpeg's for the crop the face pipeline
  # makes of each frame (run here again, in this process), and they decode to it.
  from stress_jax.preprocess.faces import FacePipeline

  video = write_video(tmp_path / "v.mp4", face_frames(4), fps=10)
  summary = ingest.process_source(video, CONFIG, tmp_path / "s.npz")
  with np.load(tmp_path / "s.npz") as data:
    offsets, blob = data["jpeg_offsets"], data["jpeg_data"].tobytes()
    stored_landmarks = data["landmarks"]
  stored = [blob[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
  faces = list(FacePipeline(CONFIG).iter_video(video))
  assert summary["clips_written"] == 1 and len(stored) == len(faces) == 4
  for data, face in zip(stored, faces, strict=True):
    assert face.has_face
    assert data == records.encode_jpeg(face.crop)
    decoded = np.asarray(Image.open(io.BytesIO(data))).astype(float)
    assert decoded.shape == (112, 112, 3)
    assert np.abs(decoded - face.crop).mean() < 3.0  # JPEG's loss at the stored quality
  np.testing.assert_allclose(stored_landmarks, [f.landmarks for f in faces], atol=1e-6)


def test_video_configs_declare_their_labels(tmp_path):
  default = StressFaces(config="video", data_dir=str(tmp_path))
  assert default.info.features["label"].names == ["no_stress", "stress"]
  declared = StressFaces(config="video", labels=("calm", "mild", "stress"), data_dir=str(tmp_path))
  assert declared.info.features["label"].names == ["calm", "mild", "stress"]
  with pytest.raises(ValueError, match="video configs only"):
    _ = StressFaces(config="synthetic_tiny", labels=("a", "b"), data_dir=str(tmp_path)).info
