"""Manifest checks, per-source statuses and exact report counts of the video ingest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stress_jax.preprocess import ingest
from stress_jax.preprocess.config import PreprocessConfig
from stress_jax.preprocess.manifest import ManifestError, read_manifest, split_name
from tests.test_preprocess import (
  EVERY_FRAME,
  face_frames,
  write_frame_folder,
  write_garbage,
  write_truncated,
  write_video,
)

# One detector run per frame (exact counts), 4-frame clips every 4 frames.
CONFIG = EVERY_FRAME.replace(num_frames=4, stride=4, min_valid_fraction=0.75, image_fps=10.0)


def write_manifest(
  manual_dir: Path, rows: list[str], header="path,subject,label,session,start_s,end_s"
):
  (manual_dir / "manifest.csv").write_text("\n".join([header, *rows]) + "\n")


# ---------------------------------------------------------------- manifest


def test_bad_manifest_names_every_bad_row_and_does_no_work(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  write_video(manual / "good.mp4", face_frames(8))
  write_manifest(
    manual,
    [
      "good.mp4,A,calm,,,",  # 2 fine
      "missing.mp4,A,calm,,,",  # 3 missing file
      "good.mp4,B,calm,,,",  # 4 duplicate of 2
      "../good.mp4,A,calm,,,",  # 5 leaves the manual dir
      f"{manual / 'good.mp4'},A,calm,,,",  # 6 absolute
      "good.mp4,A,happy,,1,2",  # 7 unknown label
      "good.mp4,C/1,calm,,2,3",  # 8 fine
      "good.mp4,C_1,calm,,3,4",  # 9 same split name as line 8
      "good.mp4,D,stress,,5,4",  # 10 ends before it starts
      "good.mp4,E,stress,x",  # 11 too few fields
      "good.mp4,,stress,,6,7",  # 12 no subject
    ],
  )
  with pytest.raises(ManifestError) as caught:
    read_manifest(manual, label_names=("calm", "stress"))
  problems = dict(caught.value.problems)
  assert sorted(problems) == [3, 4, 5, 6, 7, 9, 10, 11, 12]
  assert "does not exist" in problems[3]
  assert "duplicate of line 2" in problems[4]
  assert "leaves the manual dir" in problems[5]
  assert "absolute" in problems[6]
  assert "unknown label 'happy'" in problems[7]
  assert "'C/1'" in problems[9] and "line 8" in problems[9]
  assert "not after start_s" in problems[10]
  assert "fields" in problems[11]
  assert "empty subject" in problems[12]
  message = str(caught.value)
  for line in problems:
    assert f"line {line}:" in message
  assert "nothing was processed" in message

  # The whole ingest stops at the manifest: no scratch, no report, nothing written.
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  with pytest.raises(ManifestError):
    ingest.split_generators(manual, data_dir, config=CONFIG, label_names=("calm", "stress"))
  assert list(data_dir.iterdir()) == []


def test_manifest_labels_and_splits(tmp_path):
  write_video(tmp_path / "v.mp4", face_frames(4))
  write_manifest(
    tmp_path,
    ["v.mp4,P 01,stress,,0,0.2", "./v.mp4,P 01,calm,,0.2,", "v.mp4,p-2,calm,,,"],
  )
  manifest = read_manifest(tmp_path)
  assert manifest.label_names == ("calm", "stress")
  assert [r.split for r in manifest.rows] == ["s_P_01", "s_P_01", "s_p_2"]
  assert [r.video_id for r in manifest.rows] == ["v.mp4@0-0.2", "v.mp4@0.2-", "v.mp4"]
  assert split_name("ü") == "s__"
  with pytest.raises(ManifestError, match="missing column"):
    write_manifest(tmp_path, ["v.mp4,A"], header="path,subject")
    read_manifest(tmp_path)
  with pytest.raises(ManifestError, match="no manifest.csv"):
    read_manifest(tmp_path / "nowhere")


# ---------------------------------------------------------------- sources and report


def build_manual_dir(root: Path) -> Path:
  manual = root / "manual"
  (manual / "a").mkdir(parents=True)
  (manual / "b").mkdir()
  write_video(manual / "a" / "face.mp4", face_frames(20, blank={3, 4, 5}), fps=10)
  write_video(manual / "a" / "face.avi", face_frames(12), fps=10)
  write_frame_folder(manual / "b" / "frames", face_frames(8))
  write_video(manual / "b" / "noface.mkv", face_frames(10, blank=set(range(10))), fps=10)
  write_garbage(manual / "b" / "corrupt.mp4")
  write_truncated(manual / "b" / "truncated.avi", face_frames(20))
  (manual / "b" / "zero.mp4").write_bytes(b"")
  (manual / "b" / "empty").mkdir()
  write_manifest(
    manual,
    [
      "a/face.mp4,a,calm,reading,,",
      "a/face.avi,a,stress,interview,,",
      "b/frames,b,calm,,,",
      "b/noface.mkv,b,stress,,,",
      "b/corrupt.mp4,b,stress,,,",
      "b/truncated.avi,b,stress,,,",
      "b/zero.mp4,b,calm,,,",
      "b/empty,b,calm,,,",
      "a/face.mp4,c,stress,,1.0,2.0",
      "b/zero.mp4,d,calm,,1.0,2.0",
    ],
  )
  return manual


EXPECTED = {
  # path (video id): status, frames decoded, frames, frames with a face, written, dropped
  "a/face.mp4": ("ok", 20, 20, 17, 4, 1),  # window 4-7 has 2 of 4 faces
  "a/face.avi": ("ok", 12, 12, 12, 3, 0),
  "b/frames": ("ok", 8, 8, 8, 2, 0),
  "b/noface.mkv": ("no_face", 10, 10, 0, 0, 2),
  "b/corrupt.mp4": ("corrupt", 0, 0, 0, 0, 0),
  "b/zero.mp4": ("empty", 0, 0, 0, 0, 0),
  "b/empty": ("empty", 0, 0, 0, 0, 0),
  "a/face.mp4@1-2": ("ok", 10, 10, 10, 2, 0),
  "b/zero.mp4@1-2": ("empty", 0, 0, 0, 0, 0),
}


def test_ingest_report_counts_are_exact(tmp_path):
  manual = build_manual_dir(tmp_path)
  data_dir = tmp_path / "data"
  generators = ingest.split_generators(manual, data_dir, config=CONFIG, progress=False)

  report = json.loads((data_dir / ingest.REPORT_NAME).read_text())
  assert report["label_names"] == ["calm", "stress"]
  by_video = {entry["video"]: entry for entry in report["sources"]}
  assert [e["line"] for e in report["sources"]] == list(range(2, 12))
  for video, (status, decoded, frames, with_face, written, dropped) in EXPECTED.items():
    entry = by_video[video]
    got = (
      entry["status"],
      entry["frames_decoded"],
      entry["frames"],
      entry["frames_with_face"],
      entry["clips_written"],
      entry["clips_dropped"],
    )
    assert got == (status, decoded, frames, with_face, written, dropped), video
    assert (entry["detail"] == "") == (status == "ok"), video
  truncated = by_video["b/truncated.avi"]
  assert truncated["status"] == "corrupt" and "truncated" in truncated["detail"]
  assert truncated["clips_written"] == 0
  assert "0 bytes" in by_video["b/zero.mp4"]["detail"]
  totals = report["totals"]
  assert totals["clips_written"] == 11 and totals["ok"] == 4 and totals["corrupt"] == 2
  assert totals["empty"] == 3 and totals["no_face"] == 1
  assert report["splits"] == {"s_a": 7, "s_b": 2, "s_c": 2}
  assert report["subjects_without_clips"] == ["d"]

  # The generators yield exactly the reported clips, in the shared record layout.
  assert sorted(generators) == ["s_a", "s_b", "s_c"]
  examples = {split: dict(gen) for split, gen in generators.items()}
  assert {k: len(v) for k, v in examples.items()} == report["splits"]
  assert not (data_dir / ingest.SCRATCH_NAME).exists()  # scratch gone once consumed

  face_mp4 = {k: v for k, v in examples["s_a"].items() if k.startswith("a/face.mp4#")}
  assert sorted(face_mp4) == ["a/face.mp4#0", "a/face.mp4#12", "a/face.mp4#16", "a/face.mp4#8"]
  first = face_mp4["a/face.mp4#0"]
  np.testing.assert_array_equal(first["frame_mask"], [True, True, True, False])
  assert first["label"] == "calm" and first["subject"] == "a" and first["video"] == "a/face.mp4"
  assert first["start_frame"] == 0
  assert first["landmarks"].shape == (4, 68, 2) and np.isfinite(first["landmarks"]).all()
  # The masked frame takes the landmarks of its nearest face frame.
  np.testing.assert_array_equal(first["landmarks"][3], first["landmarks"][2])
  crops = [np.asarray(Image.open(io.BytesIO(jpeg))) for jpeg in first["frames"]]
  assert all(c.shape == (112, 112, 3) for c in crops)
  assert crops[0].mean() > 40 and crops[3].max() < 10  # a face, then the blank crop
  segment = sorted(examples["s_c"].values(), key=lambda e: e["start_frame"])
  assert [e["start_frame"] for e in segment] == [10, 14]
  assert all(e["video"] == "a/face.mp4@1-2" for e in segment)


def test_no_clip_anywhere_is_an_error_not_an_empty_dataset(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  write_garbage(manual / "bad.mp4")
  write_manifest(manual, ["bad.mp4,a,calm,,,"])
  with pytest.raises(ingest.IngestError, match="line 2 bad.mp4: corrupt"):
    ingest.split_generators(manual, tmp_path / "data", config=CONFIG, progress=False)


def test_worker_processes_give_the_same_result(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  write_video(manual / "one.mp4", face_frames(8, blank={2}), fps=10)
  write_video(manual / "two.avi", face_frames(8), fps=10)
  write_garbage(manual / "three.mp4")
  write_manifest(manual, ["one.mp4,a,calm,,,", "two.avi,b,stress,,,", "three.mp4,b,calm,,,"])
  manifest = read_manifest(manual)
  serial = ingest.process_manifest(manifest, CONFIG, tmp_path / "serial", progress=False)
  parallel = ingest.process_manifest(
    manifest, CONFIG.replace(workers=2), tmp_path / "parallel", progress=False
  )
  for a, b in zip(serial, parallel, strict=True):
    entry_a, entry_b = a.report_entry(), b.report_entry()
    entry_a.pop("seconds"), entry_b.pop("seconds")
    assert entry_a == entry_b
    if a.scratch:
      with np.load(a.scratch) as da, np.load(b.scratch) as db:
        for key in da.files:
          np.testing.assert_array_equal(da[key], db[key])
  assert [r.status for r in parallel] == ["ok", "ok", "corrupt"]


def test_report_is_replaced_atomically(tmp_path):
  path = ingest.write_report(tmp_path / "r" / "ingest_report.json", {"a": 1})
  assert json.loads(path.read_text()) == {"a": 1}
  assert [p.name for p in path.parent.iterdir()] == ["ingest_report.json"]


def test_process_source_without_scratch(tmp_path):
  path = write_video(tmp_path / "v.mp4", face_frames(8), fps=10)
  summary = ingest.process_source(path, CONFIG, None)
  assert summary["status"] == "ok" and summary["clips_written"] == 2 and summary["scratch"] == ""
  assert PreprocessConfig.from_mapping(CONFIG.to_dict()) == CONFIG
