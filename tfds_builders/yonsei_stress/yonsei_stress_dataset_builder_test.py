"""yonsei_stress builder: configs, manual-dir errors, a clean build of another clip length.

The full behaviour (bad input, report, task labels, Beam == local) is in tests/test_yonsei.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from stress_jax.featuredb import clips, yonsei
from tests.featuredb_fixtures import write_database
from tfds_builders.yonsei_stress import YonseiStress, config_name, load_build_report


def test_configs():
  names = [config.name for config in YonseiStress.BUILDER_CONFIGS]
  assert names == ["clips48", "clips32", "clips16", "clips8", "clips4"]
  assert YonseiStress.DEFAULT_CONFIG_NAME == config_name(48) == "clips48"
  spec = YonseiStress.BUILDER_CONFIGS[0].spec
  assert spec == clips.ClipSpec(num_frames=48, stride=0, max_gap_s=0.5, min_valid=0.5)
  assert spec.step == 48 and spec.min_frames == 24


def test_features_follow_the_config(tmp_path):
  builder = YonseiStress(data_dir=str(tmp_path), config="clips16")
  features = builder.info.features
  assert features["features"].shape == (16, 7, 7, 256)
  assert features["frame_mask"].shape == (16,)
  assert features["label"].names == list(yonsei.STAGE_NAMES)
  assert "frames" not in features
  # Since 1.1.0: landmarks from _landmarks.npz where a folder has them, else zeros.
  assert features["landmarks"].shape == (16, 68, 2)
  assert builder.info.file_format.value == "array_record"


def test_missing_manual_dir_or_not_the_database(tmp_path):
  builder = YonseiStress(data_dir=str(tmp_path / "out"), config="clips4", num_workers=0)
  with pytest.raises(AssertionError, match="Manual directory"):
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "nowhere"))
    )
  (tmp_path / "other" / "images").mkdir(parents=True)
  (tmp_path / "other" / "readme.txt").write_text("not the database")
  with pytest.raises(ValueError, match="No <subject>/<stage> folders"):
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "other"))
    )


def test_clean_build(tmp_path):
  root = str(tmp_path / "db")
  assert write_database(root, 2, 13, folder_style="underscore") == 2 * 4 * 13
  # Landmarks for s01's first stage only: its clips carry them, every other clip zeros.
  folder = f"{root}/01/Native_Language_Script_Reading"
  stems = sorted(name[:-4] for name in os.listdir(folder))
  points = {stem: np.full((68, 2), i / 100, np.float32) for i, stem in enumerate(stems)}
  np.savez(f"{folder}/_landmarks.npz", **points)
  builder = YonseiStress(data_dir=str(tmp_path / "out"), config="clips8", num_workers=0)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  # 13 frames per stage: one full clip and a 5-frame tail (>= 4) padded to 8.
  assert {name: split.num_examples for name, split in builder.info.splits.items()} == {
    "s01": 8,
    "s02": 8,
  }
  report = load_build_report(builder.data_dir)
  assert report["counts"] == {} and report["problems"] == []
  assert report["totals"]["clips_padded"] == 8
  assert report["totals"]["frames_in_clips"] == 104
  source = tfds.data_source("yonsei_stress/clips8", data_dir=str(tmp_path / "out"), split="s02")
  masks = sorted(int(source[i]["frame_mask"].sum()) for i in range(len(source)))
  assert masks == [5] * 4 + [8] * 4
  first = tfds.data_source("yonsei_stress/clips8", data_dir=str(tmp_path / "out"), split="s01")
  for index in range(len(first)):
    record = first[index]
    has_points = record["video"].decode() == "s01/Native Language Script Reading"
    assert record["landmarks"].any() == has_points
    if has_points and record["start_frame"] == 0:
      np.testing.assert_array_equal(
        record["landmarks"][:, 0, 0], np.arange(8, dtype=np.float32) / 100
      )
