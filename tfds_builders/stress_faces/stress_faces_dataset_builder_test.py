"""The stress_faces builder (synthetic configs), checked as DatasetBuilderTestCase would.

DatasetBuilderTestCase itself cannot run here: it imports `dill` and checks the
built dataset through `tf.data` (tf.executing_eagerly, tf.data.DatasetSpec), and
this project has no TensorFlow. The same checks run on the TF-free path instead:
registration, DatasetInfo, download_and_prepare of `synthetic_tiny` into a fresh
data_dir as array_record, split sizes, valid keys, no overlap between splits, and
reading every example back with tfds.data_source and grain.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import tempfile
import types
import unittest

import grain
import numpy as np
import tensorflow_datasets as tfds

from stress_jax.data import build
from stress_jax.datasets import synthetic
from stress_jax.faces import records
from tests.tensorflow_sentinel import tensorflow_imports
from tfds_builders.stress_faces import stress_faces_dataset_builder as builder_module
from tfds_builders.stress_faces.stress_faces_dataset_builder import StressFaces

CONFIG = "synthetic_tiny"
SIM = StressFaces.builder_configs[CONFIG].simulator
SPLITS = {synthetic.split_name(s, SIM.num_subjects): SIM.num_classes * 2 for s in range(3)}


class StressFacesSyntheticTest(unittest.TestCase):
  @classmethod
  def setUpClass(cls):
    cls._tmp = tempfile.TemporaryDirectory()
    cls.data_dir = pathlib.Path(cls._tmp.name)
    cls.builder = StressFaces(config=CONFIG, data_dir=str(cls.data_dir), file_format="array_record")
    cls.builder.download_and_prepare()

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()

  def test_baseclass_and_registration(self):
    self.assertIsInstance(self.builder, tfds.core.GeneratorBasedBuilder)
    self.assertIn("stress_faces", tfds.list_builders(with_community_datasets=False))
    self.assertIs(tfds.builder_cls("stress_faces"), StressFaces)
    self.assertIs(builder_module.Builder, StressFaces)
    self.assertEqual(StressFaces.DEFAULT_CONFIG_NAME, "synthetic")
    for name in ("synthetic", "synthetic_binary", CONFIG):
      self.assertEqual(StressFaces.builder_configs[name].kind, "synthetic")

  def test_info(self):
    info = self.builder.info
    self.assertIn("one split per subject", info.description)
    self.assertIn("jeon2021stress", info.citation)
    features = info.features
    expected = records.clip_features(SIM.num_frames, SIM.label_names, synthetic=True)
    self.assertEqual(set(features.keys()), set(expected.keys()))
    self.assertEqual(features["label"].names, list(SIM.label_names))
    self.assertEqual(features["landmarks"].shape, (SIM.num_frames, 68, 2))
    self.assertEqual(info.metadata["simulator"]["seed"], SIM.seed)
    self.assertEqual(info.metadata["cue_kinds"], list(synthetic.EVENT_KINDS))
    # Each subject's own cue families and gains are part of the dataset's description.
    profiles = info.metadata["subjects"]
    self.assertEqual(sorted(profiles), sorted(SPLITS))
    for split, profile in profiles.items():
      expected_profile = synthetic.subject_profile(SIM, int(split[1:]))
      self.assertEqual(profile["families"], list(expected_profile.families))
    self.assertEqual(str(info.version), "2.0.0")
    self.assertIn("2.0.0", StressFaces.RELEASE_NOTES)
    default = StressFaces(data_dir=str(self.data_dir)).info
    self.assertEqual(default.features["label"].names, ["no_stress", "weak_stress", "strong_stress"])
    binary = StressFaces(config="synthetic_binary", data_dir=str(self.data_dir)).info
    self.assertEqual(binary.features["label"].names, ["no_stress", "stress"])

  def test_splits_one_per_subject_as_array_record(self):
    splits = self.builder.info.splits
    self.assertEqual({name: s.num_examples for name, s in splits.items()}, SPLITS)
    self.assertEqual(self.builder.info.file_format, tfds.core.FileFormat.ARRAY_RECORD)
    shards = sorted(p.name for p in pathlib.Path(self.builder.data_dir).glob("*.array_record*"))
    self.assertEqual(len(shards), len(SPLITS))
    self.assertTrue(all(name.replace("_", "").isalnum() for name in splits))

  def test_read_back_with_data_source(self):
    sources = tfds.data_source(f"stress_faces/{CONFIG}", data_dir=str(self.data_dir))
    self.assertEqual(set(sources), set(SPLITS))
    subjects_per_split, labels = {}, []
    for split, source in sources.items():
      self.assertEqual(len(source), SPLITS[split])
      subjects_per_split[split] = set()
      for i in range(len(source)):
        example = source[i]
        frames = np.stack(example["frames"])
        self.assertEqual(frames.shape, (SIM.num_frames, 112, 112, 3))
        self.assertEqual(frames.dtype, np.uint8)
        self.assertEqual(example["landmarks"].dtype, np.float32)
        # dlib fits every frame of these renderings; a miss would be masked.
        self.assertTrue(np.all(example["frame_mask"]))
        region = example["cue_region"]
        self.assertEqual((region.shape, region.dtype), ((SIM.num_frames, 28, 28), np.uint8))
        # Each frame's region marks the events active on it, and only those frames.
        self.assertEqual(region.any(axis=(1, 2)).tolist(), example["cue_frames"].tolist())
        events = example["cue_events"]
        self.assertEqual(events.shape, (4, 4))
        used = events[events[:, 0] >= 0]
        self.assertEqual(len(used) > 0, bool(example["cue_frames"].any()))
        # A stressed clip carries its cue frames; a calm one none (label noise aside).
        video = records.as_text(example["video"])
        session = int(video.rsplit("session", 1)[1])
        self.assertEqual(bool(example["cue_frames"].any()), session > 0)
        subjects_per_split[split].add(records.as_text(example["subject"]))
        labels.append(int(example["label"]))
    # Subject-independent: each split holds one subject, named like the split.
    for split, subjects in subjects_per_split.items():
      self.assertEqual(subjects, {split})
    self.assertEqual(sorted(set(labels)), list(range(SIM.num_classes)))

  def test_records_match_the_simulator(self):
    source = tfds.data_source(f"stress_faces/{CONFIG}", data_dir=str(self.data_dir), split="s01")
    by_start = {}
    for i in range(len(source)):
      example = source[i]
      by_start[(records.as_text(example["video"]), int(example["start_frame"]))] = example
    clip = synthetic.simulate_clip(SIM, 1, 2, 1)
    stored = by_start[(clip.video, clip.start_frame)]
    np.testing.assert_array_equal(stored["landmarks"], clip.landmarks)
    np.testing.assert_array_equal(stored["cue_frames"], clip.cue_frames)
    np.testing.assert_array_equal(stored["cue_region"], clip.cue_region)
    np.testing.assert_array_equal(stored["cue_events"], synthetic.event_rows(clip.events))
    self.assertEqual(int(stored["label"]), clip.label)
    # Frames went through JPEG: close to the rendered crops, not equal.
    error = np.abs(np.stack(stored["frames"]).astype(int) - clip.frames.astype(int))
    self.assertLess(error.mean(), 3.0)

  def test_grain_reads_the_shards(self):
    source = tfds.data_source(f"stress_faces/{CONFIG}", data_dir=str(self.data_dir), split="s00")
    dataset = grain.MapDataset.source(source).map(lambda ex: (int(ex["label"]), len(ex["frames"])))
    got = list(dataset)
    self.assertEqual(len(got), SPLITS["s00"])
    self.assertTrue(all(length == SIM.num_frames for _, length in got))

  def test_build_function_reuses_and_rebuilds(self):
    shard = next(pathlib.Path(self.builder.data_dir).glob("*s00.array_record*"))
    before = shard.stat().st_mtime_ns
    again = build.build_dataset("stress_faces", config=CONFIG, data_dir=str(self.data_dir))
    self.assertEqual(shard.stat().st_mtime_ns, before)  # prepared already: reused
    self.assertEqual(again.info.splits["s02"].num_examples, SPLITS["s02"])
    content = shard.read_bytes()
    build.build_dataset("stress_faces", config=CONFIG, data_dir=str(self.data_dir), overwrite=True)
    self.assertGreater(shard.stat().st_mtime_ns, before)  # rebuilt, to the same bytes
    self.assertEqual(shard.read_bytes(), content)

  def test_worker_count_does_not_change_the_shards(self):
    with tempfile.TemporaryDirectory() as other:
      previous = os.environ.get(builder_module.WORKERS_ENV)
      os.environ[builder_module.WORKERS_ENV] = "1"
      try:
        serial = build.build_dataset(f"stress_faces/{CONFIG}", data_dir=other)
      finally:
        if previous is None:
          del os.environ[builder_module.WORKERS_ENV]
        else:
          os.environ[builder_module.WORKERS_ENV] = previous
      for split in SPLITS:
        ours = next(pathlib.Path(self.builder.data_dir).glob(f"*{split}.array_record*"))
        theirs = next(pathlib.Path(serial.data_dir).glob(f"*{split}.array_record*"))
        self.assertEqual(ours.read_bytes(), theirs.read_bytes(), split)

  def test_cli_builds_another_population(self):
    # main() works imported, once the module's flags are parsed. Another seed and
    # fewer subjects: a population of its own, in its own folder, told apart by provenance.
    from stress_jax import provenance

    with tempfile.TemporaryDirectory() as other:
      argv = ["build", f"stress_faces/{CONFIG}", f"--data_dir={other}"]
      build.main(build.FLAGS([*argv, "--simulator=seed=5,num_subjects=2"]))
      name = f"{CONFIG}-num_subjects2-seed5"
      folder = pathlib.Path(other) / "stress_faces" / name / "2.0.0"
      self.assertTrue(any(folder.glob("*.array_record*")))
      built = tfds.builder(f"stress_faces/{name}", data_dir=other)
      self.assertTrue(built.is_prepared())
      self.assertEqual(built.info.metadata["simulator"]["seed"], 5)
      self.assertEqual(sorted(built.info.splits), ["s00", "s01"])
      ours, theirs = (
        provenance.dataset_fingerprint(
          types.SimpleNamespace(builder=b, label_names=b.info.features["label"].names)
        )
        for b in (self.builder, built)
      )
      self.assertNotEqual(ours, theirs)
      self.assertEqual(theirs["config"], name)
      build.FLAGS.unparse_flags()
    with self.assertRaisesRegex(build.BuildError, "not field=value"):
      build.build_dataset(f"stress_faces/{CONFIG}", data_dir=other, simulator="seed")
    with self.assertRaisesRegex(build.BuildError, "no simulator|synthetic configs only"):
      build.with_simulator("stress_faces/video", "seed=1")
    with self.assertRaisesRegex(build.BuildError, "unknown dataset 'no_such_dataset'"):
      build.main(["build", "no_such_dataset"])
    with self.assertRaisesRegex(ValueError, "names config"):
      build.build_dataset("stress_faces/synthetic", config="synthetic_tiny")

  def test_beam_options(self):
    self.assertIsNone(build.beam_options(None))
    options = build.beam_options("runner=DirectRunner,direct_num_workers=2").get_all_options()
    self.assertEqual((options["runner"], options["direct_num_workers"]), ("DirectRunner", 2))
    options = build.beam_options({"direct_num_workers": 3}).get_all_options()
    self.assertEqual(options["direct_num_workers"], 3)

  def test_contact_sheet_reads_the_shards_without_the_builder_code(self):
    # The contact sheet sits below the builders: prepared files are all it needs.
    code = (
      "import sys\n"
      "from stress_jax.datasets.synthetic import contact_sheet\n"
      f"clips, names = contact_sheet.stored_clips({str(self.data_dir)!r}, {CONFIG!r}, 1)\n"
      "print([c['label'] for c in clips], names, 'tfds_builders' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    last = out.stdout.strip().splitlines()[-1]
    self.assertEqual(last, f"[0, 1, 2] {list(SIM.label_names)} False")

  def test_no_tensorflow(self):
    """Build, read back with data_source + grain, and import the entry points, without TF."""
    code = f"""
import grain, tensorflow_datasets as tfds
import stress_jax.crossval, stress_jax.evaluate, stress_jax.export, stress_jax.predict
import stress_jax.input_pipeline, stress_jax.train
import stress_jax.featuredb.builder, tfds_builders.yonsei_stress  # the feature-map builds
from tfds_builders.stress_faces.stress_faces_dataset_builder import StressFaces
StressFaces(config={CONFIG!r}, data_dir="data", file_format="array_record").download_and_prepare()
source = tfds.data_source("stress_faces/{CONFIG}", data_dir="data")
split = sorted(source)[0]
labels = list(grain.MapDataset.source(source[split]).map(lambda example: int(example["label"])))
assert len(labels) == len(source[split]) > 0
"""
    with tempfile.TemporaryDirectory() as workdir:
      imports = tensorflow_imports(code, pathlib.Path(workdir))
    self.assertEqual(imports, "")

  def test_tensorflow_sentinel_records_an_import(self):
    # A try-import, as libraries do: it must still be caught.
    code = "try:\n  import tensorflow\nexcept ImportError:\n  pass\n"
    with tempfile.TemporaryDirectory() as workdir:
      self.assertIn("<string>", tensorflow_imports(code, pathlib.Path(workdir)))


def test_config_fields_are_frozen_simulator_configs():
  config = StressFaces.builder_configs["synthetic"]
  assert dataclasses.is_dataclass(config.simulator)
  assert config.simulator == synthetic.SimulatorConfig(difficulty=builder_module.DEMO_DIFFICULTY)
  assert config.num_frames == 16


if __name__ == "__main__":
  unittest.main()
