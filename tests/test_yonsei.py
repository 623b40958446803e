"""yonsei_stress: scanning, validation, clip rules, task labels, build report, Beam == local.

The test database has the released layout and naming, a subject without one stage, a
time gap, and every kind of bad input the builder is meant to survive.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from stress_jax.configs import yonsei as yonsei_config
from stress_jax.faces import records
from stress_jax.featuredb import clips, layout, npy, yonsei
from tests import featuredb_fixtures as fixtures
from tfds_builders.yonsei_stress import REPORT_NAME, YonseiStress, load_build_report

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NLSR, NLI, NNLSR, NNLI = yonsei.STAGE_NAMES
FRAME_MS = 1000.0 / 30.0


def _rel(path, root):
  return os.path.relpath(path, root).replace(os.sep, "/")


def _write_database(root: str):
  """Returns (expected clips, expected problems as {(kind, path)}).

  Expected clips: {(video, start_frame): (paths per real slot, masked slots)}.
  """
  rng = np.random.default_rng(7)
  start = layout.parse_timestamp_ms("20210305_235958_990")  # crosses midnight
  clips, problems = {}, set()

  def recording(subject_dir, folder, count, gaps=None, offset=0):
    stamp = start + offset * 600_000
    return fixtures.write_recording(
      os.path.join(root, subject_dir, folder), count, rng=rng, start_ms=stamp, gaps=gaps
    )

  def expect(video, start_frame, paths, masked=()):
    clips[video, start_frame] = (list(paths), set(masked))

  # Subject 01: canonical folder names.
  p = recording("01", NLSR, 10)
  expect(f"s01/{NLSR}", 0, p[0:4])
  expect(f"s01/{NLSR}", 4, p[4:8])
  expect(f"s01/{NLSR}", 8, p[8:10])  # tail of 2 >= ceil(0.5 * 4): padded
  p = recording("01", NLI, 11, gaps={6: 2.0}, offset=1)  # 2 s pause before frame 6
  expect(f"s01/{NLI}", 0, p[0:4])
  expect(f"s01/{NLI}", 4, p[4:6])
  expect(f"s01/{NLI}", 6, p[6:10])  # frame 10 alone is a dropped tail
  p = recording("01", NNLSR, 9, offset=2)
  with open(p[2], "r+b") as handle:
    handle.truncate(1000)
  problems.add(("truncated", _rel(p[2], root)))
  expect(f"s01/{NNLSR}", 0, [p[0], p[1], p[3], p[4]])  # the bad frame acts as a lost frame
  expect(f"s01/{NNLSR}", 5, p[5:9])
  p = recording("01", NNLI, 8, offset=3)
  np.save(p[5], np.zeros((7, 7, 128), np.float32))
  problems.add(("wrong_shape", _rel(p[5], root)))
  expect(f"s01/{NNLI}", 0, p[0:4])
  expect(f"s01/{NNLI}", 4, [p[4], p[6], p[7]])
  stray = os.path.join(root, "01", NNLI, "notes.txt")
  with open(stray, "w") as handle:
    handle.write("operator notes")
  problems.add(("stray_file", _rel(stray, root)))
  os.makedirs(os.path.join(root, "01", NNLI, "thumbs"))
  problems.add(("unexpected_folder", f"01/{NNLI}/thumbs"))

  # Subject 02: underscores and odd case.
  p = recording("02", "native_language_script_reading", 8)
  np.save(p[3], np.ones((7, 7, 256), np.float64))
  problems.add(("wrong_dtype", _rel(p[3], root)))
  expect(f"s02/{NLSR}", 0, [p[0], p[1], p[2], p[4]])
  expect(f"s02/{NLSR}", 5, p[5:8])
  p = recording("02", "NATIVE_LANGUAGE_INTERVIEW", 8, offset=1)
  frame = np.load(p[1])
  frame[3, 3, 7] = np.nan
  np.save(p[1], frame)
  problems.add(("nonfinite", _rel(p[1], root)))
  expect(f"s02/{NLI}", 0, p[0:4], masked={1})
  expect(f"s02/{NLI}", 4, p[4:8])
  p = recording("02", "non_native_language_script_reading", 8, offset=2)
  frame = np.load(p[6])
  frame[0, 0, 0] = 1.0e5
  np.save(p[6], frame)
  problems.add(("float16_overflow", _rel(p[6], root)))
  expect(f"s02/{NNLSR}", 0, p[0:4])
  expect(f"s02/{NNLSR}", 4, p[4:8], masked={2})
  p = recording("02", "Non-native_Language_Interview", 8, offset=3)
  last = layout.parse_timestamp_ms(os.path.basename(p[-1])[:-4])
  garbage = os.path.join(os.path.dirname(p[0]), layout.format_timestamp(last + 33) + ".npy")
  with open(garbage, "wb") as handle:
    handle.write(b"this is not an npy file" * 10)
  problems.add(("unreadable", _rel(garbage, root)))
  bad_name = os.path.join(os.path.dirname(p[0]), "frame_0001.npy")
  np.save(bad_name, np.zeros((7, 7, 256), np.float32))
  problems.add(("bad_name", _rel(bad_name, root)))
  expect(f"s02/{NNLI}", 0, p[0:4])
  expect(f"s02/{NNLI}", 4, p[4:8])
  os.makedirs(os.path.join(root, "02", "Calibration"))
  problems.add(("unexpected_folder", "02/Calibration"))

  # Subject 26 has no Non-native Language Interview, as in the released database.
  for offset, stage in enumerate((NLSR, NLI, NNLSR)):
    p = recording("26", stage, 5, offset=offset)
    expect(f"s26/{stage}", 0, p[0:4])
  problems.add(("missing_stage", "s26"))

  # Subject 03: one frame in total, so no clip and no split.
  recording("03", NLI, 1)
  problems.update({("missing_stage", "s03"), ("no_clips", "s03")})

  with open(os.path.join(root, "README.txt"), "w") as handle:
    handle.write("database readme")
  problems.add(("stray_file", "README.txt"))
  os.makedirs(os.path.join(root, "extras"))
  problems.add(("unexpected_folder", "extras"))
  return clips, problems


def _build(data_dir, manual_dir, **kwargs):
  beam_options = kwargs.pop("beam_options", None)
  builder = YonseiStress(data_dir=data_dir, config="clips4", **kwargs)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, beam_options=beam_options)
  )
  return builder


def _read_all(data_dir):
  """{split: {(video, start_frame): record}} read through tfds.data_source (no TensorFlow)."""
  sources = tfds.data_source("yonsei_stress/clips4", data_dir=data_dir)
  out = {}
  for split, source in sources.items():
    out[split] = {}
    for index in range(len(source)):
      record = source[index]
      key = (records.as_text(record["video"]), int(record["start_frame"]))
      assert key not in out[split]
      out[split][key] = record
  return out


@pytest.fixture(scope="module")
def database(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("yonsei_db"))
  clips, problems = _write_database(root)
  return root, clips, problems


@pytest.fixture(scope="module")
def local_build(database, tmp_path_factory):
  root = database[0]
  data_dir = str(tmp_path_factory.mktemp("yonsei_local"))
  builder = _build(data_dir, root, num_workers=0)
  return builder, _read_all(data_dir)


# ----------------------------------------------------------------------------- units


def test_timestamps_parse_and_order():
  a = layout.parse_timestamp_ms("20210305_235959_999")
  b = layout.parse_timestamp_ms("20210306_000000_005")
  assert b - a == 6  # midnight crossing
  assert layout.parse_timestamp_ms("20210306_000000_5") == b  # unpadded milliseconds
  assert layout.format_timestamp(b) == "20210306_000000_005"
  for bad in ("20211305_120000_000", "20210305_126000_000", "20210305_120000", "x_1_2"):
    assert layout.parse_timestamp_ms(bad) is None


def test_folder_names():
  assert yonsei.canonical_stage("Non-native Language Interview") == NNLI
  assert yonsei.canonical_stage("non_native_language_interview") == NNLI
  assert yonsei.canonical_stage("NATIVE_LANGUAGE_SCRIPT_READING") == NLSR
  assert yonsei.canonical_stage("Native Language  Interview ") == NLI
  assert yonsei.canonical_stage("Native Language Interview 2") is None
  assert yonsei.canonical_stage("Interview") is None
  assert [yonsei.subject_id(n) for n in ("01", "7", "S26", "subject_05")] == [
    "s01",
    "s07",
    "s26",
    "s05",
  ]
  assert yonsei.subject_id("extras") is None and yonsei.subject_id("00") is None


def test_clip_starts_and_thresholds():
  spec = clips.ClipSpec(num_frames=4)
  assert list(clips._clip_starts(10, spec)) == [(0, 4), (4, 4), (8, 2)]
  assert list(clips._clip_starts(9, spec)) == [(0, 4), (4, 4)]  # 1-frame tail dropped
  assert list(clips._clip_starts(1, spec)) == []
  overlap = clips.ClipSpec(num_frames=4, stride=2)
  assert list(clips._clip_starts(8, overlap)) == [(0, 4), (2, 4), (4, 4)]
  assert list(clips._clip_starts(7, overlap)) == [(0, 4), (2, 4), (4, 3)]
  assert clips.ClipSpec(num_frames=48).min_frames == 24
  assert clips.ClipSpec(num_frames=48, min_valid=0.9).min_frames == 44
  with pytest.raises(ValueError):
    clips.ClipSpec(min_valid=0.0)


def test_npy_checks(tmp_path):
  frame = np.arange(7 * 7 * 256, dtype=np.float32).reshape(7, 7, 256) / 100
  for name, array in [
    ("c.npy", frame),
    ("f.npy", np.asfortranarray(frame)),
    ("be.npy", frame.astype(">f4")),
  ]:
    np.save(tmp_path / name, array)
    npy.check_npy(str(tmp_path / name))
    loaded = npy.load_frame(str(tmp_path / name))
    assert loaded.dtype == np.float32 and loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, frame)
  # float16 files are read too (a writer may halve the database), as float32.
  np.save(tmp_path / "half.npy", frame.astype(np.float16))
  npy.check_npy(str(tmp_path / "half.npy"))
  half = npy.load_frame(str(tmp_path / "half.npy"))
  assert half.dtype == np.float32
  np.testing.assert_array_equal(half, frame.astype(np.float16).astype(np.float32))
  cases = {
    "shape.npy": np.zeros((7, 7, 255), np.float32),
    "dtype.npy": np.zeros((7, 7, 256), np.float64),
    "object.npy": np.array([{"a": 1}], dtype=object),
  }
  expected = {"shape.npy": "wrong_shape", "dtype.npy": "wrong_dtype", "object.npy": "wrong_dtype"}
  for name, array in cases.items():
    np.save(tmp_path / name, array, allow_pickle=True)
    for check in (npy.check_npy, npy.load_frame):
      with pytest.raises(npy.NpyError) as error:
        check(str(tmp_path / name))
      assert error.value.kind == expected[name]
  raw = (tmp_path / "c.npy").read_bytes()
  (tmp_path / "short.npy").write_bytes(raw[:-4])
  (tmp_path / "long.npy").write_bytes(raw + b"\0")
  (tmp_path / "header.npy").write_bytes(raw[:40])
  for name, kind in [
    ("short.npy", "truncated"),
    ("long.npy", "bad_size"),
    ("header.npy", "unreadable"),
  ]:
    with pytest.raises(npy.NpyError) as error:
      npy.check_npy(str(tmp_path / name))
    assert error.value.kind == kind


def test_float16_errors_and_overflow_detection():
  rng = np.random.default_rng(0)
  values = fixtures.random_feature_maps(rng, 8)
  values[0, 0, 0, :4] = [1e-6, 3e-5, 2.0**-14, 1.0]
  stats = clips.float16_errors(values, values.astype(np.float16))
  assert 0.0 < stats["max_rel_error"] <= 2.0**-11
  assert stats["max_abs_value"] == float(values.max())
  # Values whose float16 rounding is known by hand: float16's step above 1 is 2**-10, so
  # 1 + 2**-12 (a quarter step) rounds to 1, a relative error of 2**-12 / (1 + 2**-12).
  near_one = np.array([1.0 + 2.0**-12], np.float32)
  stats = clips.float16_errors(near_one, near_one.astype(np.float16))
  assert stats["max_rel_error"] == pytest.approx(2.0**-12 / (1 + 2.0**-12), rel=1e-6)
  # Below float16's normal range the error is measured against 2**-14, not |x|:
  # 3 * 2**-26 rounds to the subnormal 2**-24, off by 2**-26, which is 2**-12 of 2**-14
  # (against |x| it would be a third).
  tiny = np.array([3 * 2.0**-26], np.float32)
  assert float(tiny.astype(np.float16)[0]) == 2.0**-24
  stats = clips.float16_errors(tiny, tiny.astype(np.float16))
  assert stats["max_rel_error"] == pytest.approx(2.0**-12, rel=1e-6)


def test_task_labels():
  assert yonsei.TASKS == ("4class", "3class", "binary")
  assert yonsei.task_label_names("4class") == list(yonsei.STAGE_NAMES)
  np.testing.assert_array_equal(yonsei.task_label_map("4class"), [0, 1, 2, 3])
  np.testing.assert_array_equal(yonsei.task_label_map("3class"), [0, 1, 0, 2])
  np.testing.assert_array_equal(yonsei.task_label_map("binary"), [0, 1, 0, 1])
  assert yonsei.task_label_names("binary") == ["No Stress", "Stress"]
  assert [yonsei.num_classes_for_task(t) for t in yonsei.TASKS] == [4, 3, 2]
  assert yonsei.task_label_map("3class").dtype == np.int32
  with pytest.raises(ValueError):
    yonsei.task_label_map("5class")


def test_config_follows_task():
  config = yonsei_config.get_config()
  assert config.data.name == "yonsei_stress/clips48"
  assert config.data.num_frames == 48 and config.data.task == "4class"
  assert config.model.input_mode == "features" and not config.model.landmark_stream
  assert config.model.num_classes == 4
  assert config.protocol.kind == "kfold" and config.protocol.num_folds == 10
  binary = yonsei_config.get_config("binary")
  assert binary.data.task == "binary" and binary.model.num_classes == 2
  assert yonsei_config.get_config("3class").model.num_classes == 3


# ------------------------------------------------------------------------- the build


def test_splits_one_per_subject(local_build):
  builder, data = local_build
  assert sorted(data) == ["s01", "s02", "s26"]
  assert sorted(builder.info.splits.keys()) == ["s01", "s02", "s26"]
  for split, split_clips in data.items():
    assert {records.as_text(r["subject"]) for r in split_clips.values()} == {split}
    assert all(video.startswith(split + "/") for video, _ in split_clips)


def test_exact_clips(database, local_build):
  _, expected, _ = database
  _, data = local_build
  got = {key: record for split in data.values() for key, record in split.items()}
  assert sorted(got) == sorted(expected)
  assert len(got) == 21
  for key, (paths, masked) in expected.items():
    record = got[key]
    want = np.zeros((4, 7, 7, 256), np.float16)
    mask = np.zeros(4, bool)
    for slot, path in enumerate(paths):
      if slot not in masked:
        want[slot] = np.load(path, allow_pickle=False).astype(np.float16)
        mask[slot] = True
    assert record["features"].dtype == np.float16
    np.testing.assert_array_equal(record["frame_mask"], mask, err_msg=str(key))
    np.testing.assert_array_equal(record["features"], want, err_msg=str(key))
    assert np.isfinite(record["features"]).all()
    video = key[0]
    assert record["label"] == yonsei.STAGE_NAMES.index(video.split("/", 1)[1])


def test_task_mapping_of_records(local_build):
  _, data = local_build
  for task in yonsei.TASKS:
    names = yonsei.task_label_names(task)
    mapping = yonsei.task_label_map(task)
    seen = set()
    for split in data.values():
      for (video, _), record in split.items():
        stage = video.split("/", 1)[1]
        name = names[mapping[record["label"]]]
        if task == "4class":
          assert name == stage
        elif task == "3class":
          assert name == ("Script Reading" if "Reading" in stage else stage)
        else:
          assert name == ("Stress" if "Interview" in stage else "No Stress")
        seen.add(name)
    assert seen == set(names)


def test_build_report(database, local_build):
  root, _, expected_problems = database
  builder, _ = local_build
  path = os.path.join(builder.data_dir, REPORT_NAME)
  assert os.path.exists(path)
  assert not os.path.exists(os.path.join(builder.data_dir, "_build_report_parts"))
  report = load_build_report(builder.data_dir)
  got = {(p["kind"], p["path"]) for p in report["problems"]}
  assert got == expected_problems
  assert report["counts"] == {
    "bad_name": 1,
    "float16_overflow": 1,
    "missing_stage": 4,
    "no_clips": 1,
    "nonfinite": 1,
    "stray_file": 2,
    "truncated": 1,
    "unexpected_folder": 3,
    "unreadable": 1,
    "wrong_dtype": 1,
    "wrong_shape": 1,
  }
  missing = {p["path"]: p["detail"] for p in report["problems"] if p["kind"] == "missing_stage"}
  assert missing["s26"] == NNLI
  totals = report["totals"]
  assert totals["clips"] == 21 and totals["clips_padded"] == 4
  assert totals["recordings"] == 12 and totals["runs"] == 13
  assert totals["frames_named"] == 87 and totals["frames_valid"] == 83
  assert totals["frames_masked"] == 2 and totals["frames_in_clips"] == 76
  assert totals["tails_dropped"] == 5 and totals["frames_uncovered"] == 5
  assert report["splits"]["s26"]["clips"] == 3
  assert report["manual_dir"] == root and report["generated_with"] == "local"
  overflow = [p for p in report["problems"] if p["kind"] == "float16_overflow"]
  assert "100000" in overflow[0]["detail"]


def test_float16_error_in_report(database, local_build):
  _, expected, _ = database
  builder, _ = local_build
  worst = 0.0
  for paths, masked in expected.values():
    for slot, path in enumerate(paths):
      if slot in masked:
        continue
      x = np.load(path).astype(np.float64)
      err = np.abs(x.astype(np.float32).astype(np.float16).astype(np.float64) - x)
      worst = max(worst, float((err / np.maximum(np.abs(x), 2.0**-14)).max()))
  f16 = load_build_report(builder.data_dir)["float16"]
  assert 0.0 < f16["max_rel_error"] <= f16["rel_error_bound"] == 2.0**-11
  assert f16["max_rel_error"] == pytest.approx(worst, rel=1e-6)
  assert f16["overflow_frames"] == 1
  assert f16["max_abs_value"] < 65504.0  # the 1e5 frame never entered a record


def _assert_same(data_a, data_b):
  assert sorted(data_a) == sorted(data_b)
  for split in data_a:
    assert sorted(data_a[split]) == sorted(data_b[split])
    for key, record in data_a[split].items():
      other = data_b[split][key]
      assert sorted(record) == sorted(other)
      for name in record:
        np.testing.assert_array_equal(record[name], other[name], err_msg=f"{key} {name}")


def _comparable(report):
  return {k: v for k, v in report.items() if k not in ("generated_with", "build_seconds")}


def test_process_pool_and_beam_match_in_process_build(database, local_build, tmp_path):
  from apache_beam.options.pipeline_options import PipelineOptions

  root = database[0]
  builder, data = local_build
  report = load_build_report(builder.data_dir)

  pool_dir = str(tmp_path / "pool")
  pool_builder = _build(pool_dir, root, num_workers=2, clips_per_task=3)
  assert _comparable(load_build_report(pool_builder.data_dir)) == _comparable(report)
  _assert_same(_read_all(pool_dir), data)

  # Beam's worker processes import the project by module name.
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("PYTHONPATH", os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    options = PipelineOptions.from_dictionary(
      dict(runner="DirectRunner", direct_num_workers=2, direct_running_mode="multi_processing")
    )
    beam_dir = str(tmp_path / "beam")
    beam_builder = _build(beam_dir, root, beam_options=options, clips_per_task=3)
  beam_report = load_build_report(beam_builder.data_dir)
  assert beam_report["generated_with"] == "beam"
  assert _comparable(beam_report) == _comparable(report)
  _assert_same(_read_all(beam_dir), data)


def test_report_is_json_with_problem_list(local_build):
  builder, _ = local_build
  with open(os.path.join(builder.data_dir, REPORT_NAME)) as handle:
    report = json.load(handle)
  assert set(report) >= {"counts", "problems", "totals", "float16", "splits", "clip_spec"}
  assert report["clip_spec"] == dict(num_frames=4, stride=0, max_gap_s=0.5, min_valid=0.5)
  for entry in report["problems"]:
    assert set(entry) == {"kind", "path", "detail"} and entry["kind"] in layout.PROBLEM_KINDS
