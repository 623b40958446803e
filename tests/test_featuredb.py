"""Feature-map databases: the general layout's edge cases and the writer.

Layout: integer stems with gaps, float16 files, landmarks present / partly missing /
absent, label names from the folders or from database.json, stray files. Writer: an
existing output is refused in one line.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from stress_jax.featuredb import layout
from stress_jax.featuredb.builder import set_label_names
from tests import featuredb_fixtures as fixtures
from tests.conftest import in_process_error
from tfds_builders.feature_maps import FeatureMaps, load_build_report


def _build(manual_dir, data_dir, config="clips4"):
  builder = FeatureMaps(data_dir=str(data_dir), config=config, num_workers=0)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  )
  return builder


def _records(data_dir, config="clips4"):
  """{(video, start_frame): record} over every split."""
  sources = tfds.data_source(f"feature_maps/{config}", data_dir=str(data_dir))
  out = {}
  for source in sources.values():
    for index in range(len(source)):
      record = source[index]
      out[record["video"].decode(), int(record["start_frame"])] = record
  return out


@pytest.fixture(scope="module")
def general_db(tmp_path_factory):
  """alice/calm: indices 0-5 and 8-10 (a gap), float16; alice/tense: 0-3 with landmarks
  on 1 and 2 only; bob/tense: 0-2 float32 with landmarks everywhere; strays around."""
  root = tmp_path_factory.mktemp("general_db")
  rng = np.random.default_rng(3)
  maps = {}
  maps["alice/calm"] = fixtures.write_indexed(
    str(root / "alice" / "calm"), [0, 1, 2, 3, 4, 5, 8, 9, 10], rng=rng, dtype=np.float16
  )
  maps["alice/tense"] = fixtures.write_indexed(str(root / "alice" / "tense"), range(4), rng=rng)
  maps["bob/tense"] = fixtures.write_indexed(str(root / "bob" / "tense"), range(3), rng=rng)
  points = {k: rng.uniform(0.2, 0.8, (68, 2)).astype(np.float32) for k in ("000001", "000002")}
  np.savez(root / "alice" / "tense" / layout.LANDMARKS_NAME, **points)
  bob_points = {f"{k:06d}": np.full((68, 2), 0.1 * k, np.float32) for k in range(3)}
  np.savez(root / "bob" / "tense" / layout.LANDMARKS_NAME, **bob_points)
  (root / "alice" / "calm" / "notes.txt").write_text("stray")
  (root / "alice" / "calm" / "_sources.json").write_text("[]")  # private: not a stray
  (root / ".DS_Store").write_text("")
  (root / "9lives").mkdir()  # not a valid subject (split) name
  return root, maps, points


def test_integer_stems_float16_landmarks_and_folder_labels(general_db, tmp_path):
  root, maps, points = general_db
  builder = _build(root, tmp_path / "out")
  assert builder.info.features["label"].names == ["calm", "tense"]  # sorted folder names
  assert sorted(builder.info.splits.keys()) == ["alice", "bob"]
  got = _records(tmp_path / "out")
  # calm: run 0-5 gives [0-3] and a padded [4, 5]; run 8-10 gives a padded [8-10].
  assert sorted(got) == [
    ("alice/calm", 0),
    ("alice/calm", 4),
    ("alice/calm", 8),
    ("alice/tense", 0),
    ("bob/tense", 0),
  ]
  tail = got["alice/calm", 8]
  np.testing.assert_array_equal(tail["frame_mask"], [True, True, True, False])
  for slot, index in enumerate((8, 9, 10)):
    np.testing.assert_array_equal(tail["features"][slot], maps["alice/calm"][index])
  assert not tail["features"][3].any()
  assert tail["label"] == 0 and got["alice/tense", 0]["label"] == 1
  # float32 files are stored as float16 like every record.
  np.testing.assert_array_equal(
    got["bob/tense", 0]["features"][:3], np.stack(list(maps["bob/tense"].values())).astype("f2")
  )
  # Landmarks: frames without an entry take the nearest frame's; a folder without a
  # landmarks file stores zeros.
  lm = got["alice/tense", 0]["landmarks"]
  for slot, stem in ((0, "000001"), (1, "000001"), (2, "000002"), (3, "000002")):
    np.testing.assert_array_equal(lm[slot], points[stem])
  np.testing.assert_array_equal(
    got["bob/tense", 0]["landmarks"][3], np.full((68, 2), 0.2, np.float32)
  )
  assert not got["alice/calm", 0]["landmarks"].any()
  report = load_build_report(builder.data_dir)
  assert {(p["kind"], p["path"]) for p in report["problems"]} == {
    ("stray_file", "alice/calm/notes.txt"),
    ("unexpected_folder", "9lives"),
  }
  assert report["label_names"] == ["calm", "tense"]
  assert report["totals"]["frames_with_landmarks"] == 2 + 3
  assert report["totals"]["runs"] == 4


def test_label_names_from_database_json(general_db, tmp_path):
  root, _, _ = general_db
  copy = tmp_path / "db"
  copy.mkdir()
  os.symlink(root / "alice", copy / "alice")
  # The order (and a label no subject has) come from database.json.
  (copy / layout.METADATA_NAME).write_text(json.dumps({"label_names": ["tense", "calm", "x"]}))
  builder = _build(copy, tmp_path / "out")
  assert builder.info.features["label"].names == ["tense", "calm", "x"]
  labels = {key[0]: int(r["label"]) for key, r in _records(tmp_path / "out").items()}
  assert labels == {"alice/calm": 1, "alice/tense": 0}
  # Reading it back (a new builder) keeps the names TFDS stored.
  again = tfds.builder("feature_maps/clips4", data_dir=str(tmp_path / "out"))
  assert again.info.features["label"].names == ["tense", "calm", "x"]


def test_bad_database_json_and_label_name_mismatch(tmp_path):
  (tmp_path / layout.METADATA_NAME).write_text(json.dumps({"label_names": ["a", "a"]}))
  with pytest.raises(ValueError, match="distinct"):
    layout.read_metadata(str(tmp_path))
  (tmp_path / layout.METADATA_NAME).write_text("{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    layout.read_metadata(str(tmp_path))
  features = tfds.features.FeaturesDict({"label": tfds.features.ClassLabel(names=["a", "b"])})
  with pytest.raises(ValueError, match="differ"):
    set_label_names(features, ["b", "a"])


def test_writer_refuses_an_existing_output(tmp_path):
  (tmp_path / "db").mkdir()
  line = in_process_error(
    "stress_jax.featuredb.write",
    "--source=fake_clips",
    f"--output={tmp_path / 'db'}",
    f"--workdir={tmp_path / 'run'}",
  )
  assert line == (
    f"featuredb.write: error: {tmp_path / 'db'} already exists; pass --overwrite to replace it"
  )
  line = in_process_error(
    "stress_jax.featuredb.write", "--source=fake_clips", f"--output={tmp_path / 'new'}"
  )
  assert line == "featuredb.write: error: give exactly one trunk: --workdir=W or --pretrained=PATH"


# --------------------------------------------------------------- writer parity


def _pixel_workdir(path, fake_data_dir):
  """A workdir as train.py leaves it: the tiny config with a 256-wide stage 3, and one
  checkpoint of a randomly initialised model whose BatchNorm statistics are random too
  (so eval-mode normalisation is not the identity)."""
  import jax

  from stress_jax.checkpointing import CheckpointManager
  from stress_jax.models import build_model, init_variables
  from tests import tiny_config

  config = tiny_config.get_config()
  config.data.data_dir = str(fake_data_dir)
  config.model.stage_widths = (8, 8, 256)
  config.train.async_checkpoints = False
  path.mkdir(parents=True)
  (path / "config.json").write_text(config.to_json_best_effort(indent=2))
  model = build_model(config.model)
  init_key, stats_key = jax.random.split(jax.random.key(11))
  variables = init_variables(model, init_key)
  leaves, tree = jax.tree_util.tree_flatten_with_path(variables["batch_stats"])
  rng = np.random.default_rng(int(jax.random.randint(stats_key, (), 0, 2**31 - 1)))
  # Small shifts of the means, scales of the variances: activations stay alive.
  stats = tree.unflatten(
    [
      leaf + rng.normal(0, 0.1, leaf.shape)
      if path[-1].key == "mean"
      else leaf * rng.uniform(0.5, 1.5, leaf.shape)
      for path, leaf in leaves
    ]
  )
  # A smaller classifier keeps the probabilities away from 0 and 1, where they would
  # hide differences in the maps.
  params = dict(variables["params"])
  params["classifier"] = jax.tree_util.tree_map(lambda w: w * 0.1, params["classifier"])
  state = {"step": np.int32(1), "params": params, "batch_stats": stats}
  manager = CheckpointManager(path, config.train)
  manager.save(1, state, {})
  manager.wait()
  manager.close()
  return config, model, {"params": params, "batch_stats": stats}


def _probabilities(model, variables, handle, scale=1.0):
  """{(video, start_frame): (clip probabilities, label name)}; inputs times `scale`."""
  import jax

  from stress_jax import input_pipeline

  apply = jax.jit(lambda v, x, lm, m: jax.nn.softmax(model.apply(v, x, lm, m)[0]))
  out = {}
  for batch in input_pipeline.eval_batches(
    handle, handle.subjects, 8, keep_metadata=True, process_index=0, process_count=1
  ):
    inputs = input_pipeline.device_preprocess(batch)["inputs"] * scale
    probs = np.asarray(apply(variables, inputs, batch["landmarks"], batch["frame_mask"]))
    for row in np.flatnonzero(batch["valid"]):
      key = (str(batch["video"][row]), int(batch["start_frame"][row]))
      out[key] = (probs[row], handle.label_names[int(batch["label"][row])])
  return out


@pytest.fixture(scope="module")
def written(fake_data_dir, tmp_path_factory):
  """(pixel config, model, variables, database folder, database.json) of one write."""
  import tests.fake_clips  # noqa: F401  (registers fake_clips)
  from stress_jax.featuredb import write

  tmp_path = tmp_path_factory.mktemp("written")
  config, model, variables = _pixel_workdir(tmp_path / "run", fake_data_dir)
  output = tmp_path / "features"
  metadata = write.write_database(
    str(output),
    "fake_clips",
    data_dir=str(fake_data_dir),
    workdir=str(tmp_path / "run"),
    checkpoint="latest",
    dtype="float16",
  )
  return config, model, variables, output, metadata


def test_features_model_matches_pixel_model_on_written_database(written, fake_data_dir, tmp_path):
  from stress_jax import input_pipeline
  from stress_jax.configs import common
  from stress_jax.data import build
  from stress_jax.models import build_model

  config, model, variables, output, metadata = written
  assert not output.with_name("features.incomplete").exists()
  assert metadata["label_names"] == ["low", "mid", "high"] and metadata["landmarks"]
  assert metadata["trunk"]["checkpoint"] == "latest" and metadata["feature_dtype"] == "float16"
  assert json.loads((output / layout.METADATA_NAME).read_text()) == metadata
  # 6 subjects x 9 clips x 4 frames, less the last frame of every odd clip.
  assert metadata["frames"] == len(list(output.glob("*/*/*.npy"))) == 6 * (9 * 4 - 4)
  assert np.load(next(output.glob("s00/low/*.npy"))).dtype == np.float16

  data = common.base_config().data
  data.name, data.data_dir, data.num_frames = "fake_clips", str(fake_data_dir), 4
  data.build_if_missing = False
  pixel = _probabilities(model, variables, input_pipeline.open_dataset(data))

  data.name, data.data_dir = "feature_maps/clips4", str(tmp_path / "built")
  data.manual_dir, data.build_if_missing = str(output), True
  build.ensure_built(data)
  feature_handle = input_pipeline.open_dataset(data)
  assert feature_handle.label_names == ("low", "mid", "high")
  assert feature_handle.input_key == "features" and feature_handle.has_landmarks
  features_config = config.model.copy_and_resolve_references()
  features_config.input_mode = "features"
  strip = lambda tree: {k: v for k, v in tree.items() if k != "trunk"}  # noqa: E731
  head_only = {name: strip(tree) for name, tree in variables.items()}
  features = _probabilities(build_model(features_config), head_only, feature_handle)

  # A feature clip starts at a stem; _sources.json says which video frame that is.
  matched, worst = 0, 0.0
  for (video, stem), (probs, label) in features.items():
    subject = video.split("/")[0]
    runs = json.loads((output / video / "_sources.json").read_text())
    run = next(r for r in runs if r["first_stem"] <= stem < r["first_stem"] + r["frames"])
    source = (run["video"], run["first_frame"] + stem - run["first_stem"])
    pixel_probs, pixel_label = pixel[source]
    assert pixel_label == label and source[0].startswith(subject)
    worst = max(worst, float(np.abs(probs - pixel_probs).max()))
    matched += 1
  assert matched == len(pixel) == 54
  print(f"max |p_features - p_pixels| over {matched} clips: {worst:.2e}")
  assert worst <= 1e-3
  # Not a trivial match: the maps are alive and the image stream moves the probabilities.
  assert 0.05 < np.mean(np.load(output / "s00" / "low" / "000000.npy") > 0) < 0.95
  blind = _probabilities(build_model(features_config), head_only, feature_handle, scale=0.0)
  assert max(np.abs(blind[key][0] - features[key][0]).max() for key in features) > 1e-2


def test_training_on_a_written_database(written, tmp_path):
  from tests.conftest import train_in_process

  output = written[3]
  summary = train_in_process(
    tmp_path / "run",
    tmp_path / "tfds",
    **{
      "data.name": "feature_maps/clips4",
      "data.manual_dir": str(output),
      "data.build_if_missing": True,
      "model.input_mode": "features",
      "model.stage_widths": (8, 8, 256),
      "input.augment.flip": False,
      "train.num_steps": 3,
    },
  )
  assert summary["label_names"] == ["low", "mid", "high"]
  # Built on demand from the written maps, then every held-out clip scored once under
  # its stored label: the confusion matrix's rows are the split's label counts.
  built = tfds.builder("feature_maps/clips4", data_dir=str(tmp_path / "tfds"))
  stored = [
    int(example["label"])
    for subject in summary["test_subjects"]
    for example in built.as_data_source(subject)
  ]
  matrix = np.asarray(summary["test"]["confusion_matrix"])
  np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(stored, minlength=3))


def test_tasks_come_from_the_builder(tmp_path):
  from stress_jax import input_pipeline
  from stress_jax.configs import common
  from tfds_builders.yonsei_stress import YonseiStress

  data = common.base_config().data
  data.name, data.task = "yonsei_stress/clips4", "3class"
  yonsei = YonseiStress(data_dir=str(tmp_path), config="clips4")
  names, mapping = input_pipeline._task_labels(data, yonsei)
  assert names == ("Script Reading", "Native Language Interview", "Non-native Language Interview")
  np.testing.assert_array_equal(mapping, [0, 1, 0, 2])
  data.task = ""
  assert input_pipeline._task_labels(data, yonsei)[0] == tuple(yonsei.LABEL_TASKS["4class"][0])
  data.name, data.task = "feature_maps/clips4", "binary"
  with pytest.raises(ValueError, match=r"not a task of feature_maps/clips4 \(its tasks: none\)"):
    input_pipeline._task_labels(data, FeatureMaps(data_dir=str(tmp_path), config="clips4"))
