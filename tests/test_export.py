"""Export: the StableHLO model equals the checkpoint, any batch size, loads without our code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from stress_jax import evaluate, export
from stress_jax.models import build_model
from tests.conftest import in_process_error, subprocess_env
from tests.trained_model import exported_dir, trained_workdir  # noqa: F401  (fixtures)


def checkpoint_model(workdir):
  """The trained model straight from the checkpoint its run reports, as training builds it."""
  config = evaluate.read_config(workdir)
  step, _ = evaluate.resolve_checkpoint(workdir, config, "reported")
  model = build_model(config.model)
  variables = evaluate.load_variables(workdir, step, model, int(config.data.num_frames))
  return model, variables, step


def test_exported_model_equals_checkpoint_at_two_batch_sizes(trained_workdir, exported_dir):  # noqa: F811
  model, variables, step = checkpoint_model(trained_workdir)
  loaded = export.load_exported(exported_dir)
  assert loaded.config["checkpoint_step"] == step
  num_frames = loaded.num_frames

  # The reference is the model itself (not export.model_functions, which the export
  # is made of): its logits through a numpy softmax, and its attention maps.
  @jax.jit
  def apply(inputs, landmarks, frame_mask):
    return model.apply(variables, inputs, landmarks, frame_mask, train=False)

  def reference(inputs, landmarks, frame_mask):
    logits, aux = apply(inputs, landmarks, frame_mask)
    logits = np.asarray(logits, np.float64)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return {"probabilities": exp / exp.sum(-1, keepdims=True), **jax.device_get(aux)}

  rng = np.random.default_rng(1)
  for batch in (1, 3):
    args = export.random_inputs(rng, batch, num_frames, (112, 112, 3))
    got = loaded(*args)
    want = reference(*args)
    assert set(got) == {
      "probabilities",
      "temporal_attention",
      "spatial_attention",
      "landmark_temporal_attention",
    }
    assert got["probabilities"].shape == (batch, 3)
    assert export.max_difference(got, want) <= 1e-5
    # The masked frame gets no temporal weight, in the export as in the model.
    assert got["temporal_attention"][0, -1] == 0.0

  # The streaming halves compose to the whole model.
  frames, landmarks, mask = args
  halves = loaded.encode_frames(frames.reshape(-1, 112, 112, 3), mask.reshape(-1))
  vectors = halves["frame_vectors"].reshape(batch, num_frames, -1)
  clip = loaded.classify_clip(vectors, landmarks, mask)
  np.testing.assert_allclose(clip["probabilities"], want["probabilities"], atol=1e-5)
  np.testing.assert_allclose(
    halves["spatial_attention"].reshape(want["spatial_attention"].shape),
    want["spatial_attention"],
    atol=1e-5,
  )

  # export_model's own check (skipped by the fixture) passes here, and fails on a model
  # that is off by more than the tolerance.
  assert export.check_parity(loaded, reference, (112, 112, 3), num_frames, batch=3) <= 1e-5

  def shifted(*args):
    out = dict(reference(*args))
    out["probabilities"] = out["probabilities"] + 1e-4
    return out

  with pytest.raises(AssertionError, match="differs from the checkpoint"):
    export.check_parity(loaded, shifted, (112, 112, 3), num_frames, batch=3)


def test_export_folder_contents(exported_dir):  # noqa: F811
  config = json.loads((exported_dir / "config.json").read_text())
  assert (exported_dir / "labels.txt").read_text().splitlines() == ["low", "mid", "high"]
  assert config["label_names"] == ["low", "mid", "high"]
  assert config["num_frames"] == 4 and config["input_mode"] == "pixels"
  assert config["preprocess"]["num_frames"] == 4
  for name in (export.MODEL_FILE, export.ENCODE_FILE, export.CLASSIFY_FILE):
    assert (exported_dir / name).stat().st_size > 1000
  exported = jax.export.deserialize(bytearray((exported_dir / export.MODEL_FILE).read_bytes()))
  batch_dims = {str(aval.shape[0]) for aval in exported.in_avals}
  assert batch_dims == {"b"}, "the batch size must be symbolic"


def test_standalone_loader_needs_no_project_code(exported_dir):  # noqa: F811
  # The docstring's snippet, run where stress_jax cannot be imported at all.
  snippet = textwrap.dedent(
    f"""
    import sys
    sys.modules["stress_jax"] = None  # any import of the project now fails
    sys.modules["tfds_builders"] = None
    import json, pathlib
    import jax, numpy as np
    folder = pathlib.Path({str(exported_dir)!r})
    model = jax.export.deserialize(bytearray((folder / "model.stablehlo").read_bytes()))
    labels = (folder / "labels.txt").read_text().splitlines()
    T = json.loads((folder / "config.json").read_text())["num_frames"]
    frames = np.full((2, T, 112, 112, 3), 0.5, np.float32)
    out = model.call(frames, np.full((2, T, 68, 2), 0.5, np.float32), np.ones((2, T), bool))
    print(json.dumps(dict(zip(labels, np.asarray(out["probabilities"][0]).tolist()))))
    """
  )
  env = subprocess_env()
  env["PYTHONPATH"] = ""
  # The project may be pip-installed here (editable): the snippet blocks its import.
  result = subprocess.run(
    [sys.executable, "-c", snippet], env=env, cwd="/", capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr[-2000:]
  probabilities = json.loads(result.stdout.strip().splitlines()[-1])
  T = export.load_exported(exported_dir).num_frames
  want = export.load_exported(exported_dir)(
    np.full((1, T, 112, 112, 3), 0.5, np.float32),
    np.full((1, T, 68, 2), 0.5, np.float32),
    np.ones((1, T), bool),
  )["probabilities"][0]
  assert list(probabilities) == ["low", "mid", "high"]
  np.testing.assert_allclose(list(probabilities.values()), want, atol=1e-6)


def test_export_errors_are_one_line(tmp_path):
  with pytest.raises(evaluate.EvaluationError, match="does not exist"):
    export.export_model(tmp_path / "nowhere", tmp_path / "out")
  with pytest.raises(FileNotFoundError, match="not an export folder"):
    export.load_exported(tmp_path)
  line = in_process_error(
    "stress_jax.export", f"--workdir={tmp_path / 'nowhere'}", f"--output={tmp_path / 'out'}"
  )
  assert line == f"export: error: workdir {tmp_path / 'nowhere'} does not exist"


def test_a_model_whose_map_reads_the_clip_is_not_split_into_frame_halves(
  trained_workdir,  # noqa: F811
  tmp_path,
):
  workdir = tmp_path / "workdir"
  shutil.copytree(trained_workdir, workdir)
  config = json.loads((workdir / "config.json").read_text())
  for field, value in (("spatial_attention_input", "deviation"), ("image_reference", "median")):
    changed = {**config, "model": {**config["model"], field: value}}
    (workdir / "config.json").write_text(json.dumps(changed))
    with pytest.raises(evaluate.EvaluationError, match=f"model.{field}='{value}' reads the whole"):
      export.export_model(workdir, tmp_path / "out")
    assert not (tmp_path / "out" / export.ENCODE_FILE).exists()
