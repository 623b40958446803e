"""predict on a folder of frames gives what the video gives; an empty folder says what it needs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from stress_jax import predict
from stress_jax.preprocess import decode
from tests.trained_model import exported_dir, feat_video, trained_workdir  # noqa: F401


def _probabilities(path):
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  return np.array([list(r["probabilities"].values()) for r in rows])


def test_a_frame_folder_predicts_like_its_video(exported_dir, tmp_path):  # noqa: F811
  frames = tmp_path / "frames"
  frames.mkdir()
  # The frames the video run sees (decoded at the export's 15 fps), stored losslessly.
  for i, frame in enumerate(decode.read_frames(feat_video(), fps=15.0)):
    Image.fromarray(frame.rgb).save(frames / f"frame{i}.png")
  video = predict.run(exported_dir, str(feat_video()), tmp_path / "video", num_pictures=0)
  folder = predict.run(exported_dir, str(frames), tmp_path / "folder", num_pictures=0, fps=0)
  assert folder["frames"] == video["frames"] == 36
  assert folder["windows"] == video["windows"]
  np.testing.assert_allclose(
    _probabilities(tmp_path / "folder" / "frames.jsonl"),
    _probabilities(tmp_path / "video" / "single_face.jsonl"),
    atol=1e-5,
  )


def test_an_empty_folder_says_what_it_expects(exported_dir, tmp_path):  # noqa: F811
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "notes.txt").write_text("no frames here")
  with pytest.raises(predict.PredictError, match=r"holds no frames: expected image files \("):
    predict.run(exported_dir, str(tmp_path / "empty"), tmp_path / "out")
