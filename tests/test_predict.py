"""Prediction on a real face video with the exported tiny model; streaming == whole windows."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from stress_jax import export, predict
from stress_jax.preprocess import FacePipeline, PreprocessConfig, VideoFaces
from tests.conftest import in_process_error
from tests.trained_model import exported_dir, feat_video, trained_workdir  # noqa: F401

LABELS = ["low", "mid", "high"]
FPS = 15.0


def read_jsonl(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_predict_video_writes_windows_timeline_and_pictures(exported_dir, tmp_path):  # noqa: F811
  summary = predict.run(exported_dir, str(feat_video()), tmp_path / "out", num_pictures=3)
  rows = read_jsonl(tmp_path / "out" / "single_face.jsonl")
  # 2.4 s at the export's 15 fps: 36 frames, windows of 4 every 2 frames.
  assert summary["frames"] == 36 and summary["stride"] == 2
  assert len(rows) == (36 - 4) // 2 + 1 == summary["windows"]
  starts = np.array([r["start_s"] for r in rows])
  np.testing.assert_allclose(np.diff(starts), 2 / FPS, atol=1e-3)
  for row in rows:
    assert row["face_frames"] == 4
    assert row["end_s"] == pytest.approx(row["start_s"] + 4 / FPS, abs=1e-3)
    probabilities = row["probabilities"]
    assert list(probabilities) == LABELS
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert row["prediction"] == max(probabilities, key=probabilities.get)
  with Image.open(tmp_path / "out" / "single_face_timeline.png") as image:
    assert image.width > 500
  pictures = sorted((tmp_path / "out" / "single_face_attention").glob("*.png"))
  assert sorted(p.stem.split("_")[1] for p in pictures) == sorted(LABELS)
  # Each class's picture shows the window where that class is most probable.
  for path in pictures:
    index, label = int(path.stem.split("_")[0].removeprefix("window")), path.stem.split("_")[1]
    assert rows[index]["probabilities"][label] == max(r["probabilities"][label] for r in rows)


def without_face(face):
  return dataclasses.replace(
    face,
    crop=np.zeros_like(face.crop),
    landmarks=np.zeros_like(face.landmarks),
    has_face=False,
    box=np.full(4, np.nan, np.float32),
    image_landmarks=np.full((68, 2), np.nan, np.float32),
  )


def both_modes(model, frames, stride):
  whole = predict.predict_windows(model, VideoFaces.stack(frames), stride, 1 / FPS)
  streamer = predict.StreamPredictor(model, stride, 1 / FPS)
  streamer.warm_up()
  stream = [w for w in map(streamer.push, frames) if w is not None]
  tail = streamer.finish()
  return whole, stream + ([tail] if tail is not None else [])


def assert_same_windows(whole, stream):
  assert len(whole) == len(stream) > 0
  for a, b in zip(whole, stream, strict=True):
    for key in ("window", "start_s", "end_s", "start_frame", "face_frames", "prediction"):
      assert a.row[key] == b.row[key], key
    if a.row["probabilities"] is None:
      assert b.row["probabilities"] is None
    else:
      np.testing.assert_allclose(
        list(a.row["probabilities"].values()), list(b.row["probabilities"].values()), atol=1e-5
      )
    np.testing.assert_array_equal(a.frame_mask, b.frame_mask)
    assert set(a.attention) == set(b.attention)
    for key in a.attention:
      np.testing.assert_allclose(a.attention[key], b.attention[key], atol=1e-5, err_msg=key)


def test_streaming_agrees_with_whole_windows(exported_dir):  # noqa: F811
  model = export.load_exported(exported_dir)
  pipeline = FacePipeline(PreprocessConfig(fps=FPS))
  frames = list(pipeline.iter_video(feat_video(), end_s=1.2))
  assert len(frames) >= 16 and all(f.has_face for f in frames)
  # Frames 5-9 lose the face: the window of frames 6-9 has none at all, others lose some.
  frames = [without_face(f) if 5 <= i <= 9 else f for i, f in enumerate(frames)]
  whole, stream = both_modes(model, frames, stride=2)
  assert_same_windows(whole, stream)
  faces = [w.row["face_frames"] for w in whole]
  assert 0 in faces and any(0 < n < 4 for n in faces) and 4 in faces
  assert all((w.row["probabilities"] is None) == (w.row["face_frames"] == 0) for w in whole)

  # A clip shorter than one window: one window, padded with masked frames.
  whole, stream = both_modes(model, frames[:3], stride=2)
  assert_same_windows(whole, stream)
  assert len(whole) == 1 and whole[0].row["face_frames"] == 3


def test_stream_mode_reports_frames_per_second(exported_dir, tmp_path, monkeypatch):  # noqa: F811
  import types

  from stress_jax import predict_io

  # A clock that reads 2 s later at each look: the stream's start and end are two looks.
  ticks = iter(range(0, 1000, 2))
  monkeypatch.setattr(predict_io, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
  summary = predict.run(
    exported_dir, str(feat_video()), tmp_path, stream=True, max_frames=12, num_pictures=1
  )
  assert summary["frames"] == 12 and summary["frames_per_s"] == 12 / 2
  assert isinstance(summary["model_frames_per_s"], float)  # the model's own share, timed apart
  assert "frames/s" in predict.format_summary(summary)
  rows = read_jsonl(tmp_path / "single_face.jsonl")
  assert len(rows) == (12 - 4) // 2 + 1
  assert len(list((tmp_path / "single_face_attention").glob("*.png"))) == 1


def test_bad_inputs_are_one_line(exported_dir, tmp_path):  # noqa: F811
  with pytest.raises(predict.PredictError, match="needs --stream"):
    predict.run(exported_dir, "0")
  with pytest.raises(predict.PredictError, match="does not exist"):
    predict.run(exported_dir, str(tmp_path / "missing.mp4"))
  with pytest.raises(predict.PredictError, match="not an export folder"):
    predict.run(tmp_path, str(feat_video()))
  broken = tmp_path / "broken.mp4"
  broken.write_bytes(b"not a video at all")
  with pytest.raises(predict.PredictError, match="cannot read") as error:
    predict.run(exported_dir, str(broken), tmp_path / "out")
  assert "\n" not in str(error.value)

  line = in_process_error("stress_jax.predict", f"--model={exported_dir}", "--video=0")
  assert line == "predict: error: a camera (integer --video) needs --stream"
