"""The ubfc_phys builder on a generated miniature of UBFC-Phys's layout, local and on Beam,
and a few training steps on what it built."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from stress_jax.faces import records
from stress_jax.preprocess import ingest, ubfc_phys
from stress_jax.preprocess.config import PreprocessConfig
from tests import real_media
from tfds_builders.ubfc_phys import UbfcPhys, UbfcPhysConfig

# 10 fps, 4-frame clips: each 1.2 s video gives 12 frames, 3 clips.
TEST_PREPROCESS = PreprocessConfig(fps=10, num_frames=4, stride=4, workers=0)
CLIPS_PER_VIDEO = 3


def small_config(scheme: str = "tasks") -> UbfcPhysConfig:
  return UbfcPhysConfig(name=f"{scheme}_test", scheme=scheme, preprocess=TEST_PREPROCESS)


def write_info(folder: Path, name: str, sex: str, group: str):
  (folder / f"info_{name}.txt").write_text(f"{name}\n{sex}\n{group}\n2019-03-05\n10:12:03\n")


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
  """s1 (test) and s2 (ctrl) complete; s3 (test) without its T3 video, like s40 in some
  copies; s4 with an empty video only. Videos: MJPEG .avi at 35 fps, 256x256 with a real
  talking face (two different people), 1.2 s each."""
  root = tmp_path_factory.mktemp("ubfc") / "UBFC-Phys"
  people = {
    "s1": ("single_face.mp4", "m", "test"),
    "s2": ("WolfgangLanger_Pexels.mp4", "f", "ctrl"),
    "s3": ("single_face.mp4", "m", "test"),
  }
  for name, (source, sex, group) in people.items():
    folder = root / name
    folder.mkdir(parents=True)
    write_info(folder, name, sex, group)
    frames = real_media.sized_face_frames(256, 256, 110, 42, name=source)
    for task in ubfc_phys.TASKS:
      if (name, task) == ("s3", "T3"):
        continue
      real_media.write(folder / f"vid_{name}_{task}.avi", frames, fps=35)
      (folder / f"bvp_{name}_{task}.csv").write_text("0.1\n0.2\n")
  (root / "s4").mkdir()
  write_info(root / "s4", "s4", "f", "ctrl")
  (root / "s4" / "vid_s4_T1.avi").write_bytes(b"")
  return root


def prepare(config, data_dir, manual, **download):
  builder = UbfcPhys(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual), **download)
  )
  return builder


@pytest.fixture(scope="module")
def local_build(database, tmp_path_factory):
  return prepare(small_config(), tmp_path_factory.mktemp("tfds_local"), database)


def read_all(builder) -> dict[str, list[dict]]:
  out = {}
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    out[split] = [source[i] for i in range(len(source))]
  return out


def test_scan_reports_defects_and_reads_groups(database):
  subjects, problems = ubfc_phys.scan(database.parent)  # the extra folder level is found
  assert [s.name for s in subjects] == ["s1", "s2", "s3"]
  assert {s.name: s.group for s in subjects} == {"s1": "test", "s2": "ctrl", "s3": "test"}
  assert [task for task, _ in subjects[2].videos] == ["T1", "T2"]
  kinds = {(p["kind"], p["path"]) for p in problems}
  assert ("missing_video", "UBFC-Phys/s3/vid_s3_T3.avi") in kinds
  assert ("empty_video", "UBFC-Phys/s4/vid_s4_T1.avi") in kinds
  assert ("no_video", "UBFC-Phys/s4") in kinds


def test_builds_one_split_per_subject_with_task_labels(local_build):
  info = local_build.info
  assert info.features["label"].names == ["T1_rest", "T2_speech", "T3_arithmetic"]
  assert {k: v.num_examples for k, v in info.splits.items()} == {
    "s1": 3 * CLIPS_PER_VIDEO,
    "s2": 3 * CLIPS_PER_VIDEO,
    "s3": 2 * CLIPS_PER_VIDEO,
  }
  assert dict(info.metadata["groups"]) == {"s1": "test", "s2": "ctrl", "s3": "test"}
  # A later reader gets the groups back from the saved metadata.
  reader = UbfcPhys(config=small_config(), data_dir=str(Path(local_build.data_dir).parents[2]))
  assert reader.is_prepared()
  assert dict(reader.info.metadata["groups"]) == {"s1": "test", "s2": "ctrl", "s3": "test"}
  for split, examples in read_all(local_build).items():
    for example in examples:
      assert records.as_text(example["subject"]) == split
      video = records.as_text(example["video"])
      task = video.rsplit("_", 1)[1].removesuffix(".avi")
      assert info.features["label"].names[int(example["label"])].startswith(task)
      assert np.stack(example["frames"]).shape == (4, 112, 112, 3)
      assert example["frame_mask"].all()


def test_report_lists_sources_groups_and_defects(local_build):
  report = json.loads((Path(local_build.data_dir) / ingest.REPORT_NAME).read_text())
  assert report["groups"] == {"s1": "test", "s2": "ctrl", "s3": "test"}
  assert {p["kind"] for p in report["problems"]} == {"missing_video", "empty_video", "no_video"}
  assert len(report["sources"]) == 8 and all(s["status"] == "ok" for s in report["sources"])
  # 256x256 frames are searched at 360 / 256 (the short side brought to 360 px).
  assert {s["detect_scale"] for s in report["sources"]} == {round(360 / 256, 4)}
  assert report["totals"]["clips_written"] == 8 * CLIPS_PER_VIDEO


def test_binary_config_maps_t2_and_t3_to_stress(database, tmp_path):
  builder = prepare(small_config("binary"), tmp_path, database)
  assert builder.info.features["label"].names == ["rest", "stress"]
  for examples in read_all(builder).values():
    for example in examples:
      stressed = not records.as_text(example["video"]).endswith("_T1.avi")
      assert int(example["label"]) == int(stressed)


def test_beam_build_equals_local_build(database, local_build, tmp_path):
  from apache_beam.options.pipeline_options import PipelineOptions

  options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1"])
  beam_builder = prepare(small_config(), tmp_path, database, beam_options=options)
  local, beam = read_all(local_build), read_all(beam_builder)
  assert set(local) == set(beam)
  for split in local:
    key = lambda e: (records.as_text(e["video"]), int(e["start_frame"]))  # noqa: E731
    a, b = sorted(local[split], key=key), sorted(beam[split], key=key)
    assert [key(e) for e in a] == [key(e) for e in b]
    for x, y in zip(a, b, strict=True):
      np.testing.assert_array_equal(x["landmarks"], y["landmarks"])
      assert int(x["label"]) == int(y["label"])
  report = json.loads((Path(beam_builder.data_dir) / ingest.REPORT_NAME).read_text())
  assert report["generated_with"] == "beam"
  assert report["totals"]["clips_written"] == 8 * CLIPS_PER_VIDEO
  assert report["groups"]["s2"] == "ctrl"


def test_model_trains_on_the_built_miniature(local_build, tmp_path):
  from tests.conftest import train_in_process

  data_dir = Path(local_build.data_dir).parents[2]
  summary = train_in_process(
    tmp_path / "run", data_dir, **{"data.name": "ubfc_phys/tasks_test", "train.num_epochs": 1}
  )
  rows = [
    json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  ]
  assert np.isfinite([r["train/loss"] for r in rows if "train/loss" in r]).all()
  assert summary["label_names"] == local_build.info.features["label"].names
  # Every clip of the held-out subject was scored once, under its stored task label:
  # the confusion matrix's rows are the split's label counts, read here from the build.
  stored = [
    int(example["label"])
    for subject in summary["test_subjects"]
    for example in local_build.as_data_source(subject)
  ]
  matrix = np.asarray(summary["test"]["confusion_matrix"])
  np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(stored, minlength=3))
  subjects = {*summary["test_subjects"], *summary["val_subjects"]}
  assert subjects <= {"s1", "s2", "s3"} and not set(summary["test_subjects"]) & set(
    summary["val_subjects"]
  )


def test_no_subject_is_one_clear_error(tmp_path):
  # A folder holding something, but no subject folders (e.g. the archives still zipped).
  (tmp_path / "wrong").mkdir()
  (tmp_path / "wrong" / "s1.zip").write_bytes(b"PK")
  with pytest.raises(ValueError, match="no UBFC-Phys subject folder"):
    prepare(small_config(), tmp_path / "tfds", tmp_path / "wrong")


def test_config_matches_the_builder():
  from stress_jax.configs import ubfc_phys as ubfc_config

  for scheme, classes in (("tasks", 3), ("binary", 2)):
    config = ubfc_config.get_config(scheme)
    builder_config = UbfcPhys.builder_configs[scheme]
    assert config.data.name == f"ubfc_phys/{scheme}" and config.model.num_classes == classes
    assert config.data.num_frames == builder_config.preprocess.num_frames
    assert PreprocessConfig.from_mapping(config.preprocess) == builder_config.preprocess
  with pytest.raises(ValueError, match="unknown UBFC-Phys config"):
    ubfc_config.get_config("multilevel")
