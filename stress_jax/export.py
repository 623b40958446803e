"""Export a trained checkpoint as self-contained StableHLO, and load it back with jax alone.

  python -m stress_jax.export --workdir=runs/demo --output=exported/demo [--checkpoint=best]

writes into --output:

  model.stablehlo           the whole model, weights embedded as constants:
                              inputs    (B,T,112,112,3) float32 face crops in [0, 1]
                                        (uint8 / 255; feature-mode models take the
                                        (B,T,7,7,C) float32 stage-3 maps instead)
                                        (B,T,68,2)  float32 landmarks, crop coords / 112
                                        (B,T)       bool    frame_mask, False = no face
                              outputs   {"probabilities": (B,K), "temporal_attention":
                                        (B,T), "spatial_attention": (B,T,h,w),
                                        "landmark_temporal_attention": (B,T)} float32
                                        (a stream's entries only when the model has it)
                            B is symbolic (any batch size); T is the training clip length.
  encode_frames.stablehlo   the per-frame image half (models with the image stream):
                            (N,112,112,3) float32, (N,) bool -> {"frame_vectors": (N,D),
                            "spatial_attention": (N,h,w)}, N symbolic. Frames are encoded
                            independently, so a stream encodes each new frame once.
  classify_clip.stablehlo   the cheap half: (B,T,D) frame vectors, (B,T,68,2) landmarks,
                            (B,T) mask -> probabilities and temporal attention.
  config.json               shapes, label names, checkpoint step, face-pipeline settings
                            ("preprocess"), the training dataset ("training_data": name,
                            version, simulated or not) and the training config
  labels.txt                class names, one per line, in output order

Float32 in [0, 1] rather than uint8 is what the model computes on; callers divide by
255 (predict.py does). The modules are lowered for cpu, cuda and tpu (--platforms).
`export_model` checks the exported model against the checkpoint before it returns.

Loading needs jax and numpy only, none of this project's code:

  import json, pathlib
  import jax, numpy as np

  folder = pathlib.Path("exported/demo")
  model = jax.export.deserialize(bytearray((folder / "model.stablehlo").read_bytes()))
  labels = (folder / "labels.txt").read_text().splitlines()
  T = json.loads((folder / "config.json").read_text())["num_frames"]
  frames = np.zeros((1, T, 112, 112, 3), np.float32)    # aligned crops / 255
  landmarks = np.zeros((1, T, 68, 2), np.float32)
  mask = np.ones((1, T), bool)
  out = model.call(frames, landmarks, mask)
  print(dict(zip(labels, np.asarray(out["probabilities"][0]))))

`load_exported(folder)` below wraps the same in a small class (jitted, numpy out).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from absl import flags

from stress_jax import cli, export_settings, jsonio, storage

MODEL_FILE = "model.stablehlo"
ENCODE_FILE = "encode_frames.stablehlo"
CLASSIFY_FILE = "classify_clip.stablehlo"
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")
# Exported and checkpoint outputs must agree this closely (max abs difference).
PARITY_TOLERANCE = 1e-5

FLAGS = flags.FlagValues()
_WORKDIR, _CHECKPOINT = cli.define_trained_model(FLAGS)
_OUTPUT = cli.define_output(FLAGS, "The export folder to write.", required=True)
_PLATFORMS = flags.DEFINE_string(
  "platforms",
  ",".join(DEFAULT_PLATFORMS),
  "Comma-separated platforms to lower for.",
  flag_values=FLAGS,
)


class BrokenExportError(cli.UserError, FileNotFoundError):
  """A file of an export folder is missing or does not load; the message names it."""


def read_json(path) -> dict:
  try:
    value = json.loads(path.read_text())
  except ValueError as error:
    raise BrokenExportError(f"{path} is not valid JSON ({error}); export the model again") from None
  if not isinstance(value, dict):
    raise BrokenExportError(f"{path} is not a JSON object; export the model again")
  return value


class ExportedModel:
  """An export folder loaded back: call it like the model, or use the two halves."""

  def __init__(self, directory):
    import jax

    # The exported programs load from local files: a bucket folder is cached first.
    self.directory = storage.local_copy(directory)
    config_path = self.directory / "config.json"
    if not config_path.is_file():
      raise BrokenExportError(f"{self.directory} is not an export folder: no config.json")
    self.config = read_json(config_path)
    labels = self.directory / "labels.txt"
    if not labels.is_file():
      raise BrokenExportError(f"{labels} is missing: the export folder is incomplete")
    self.label_names = tuple(line for line in labels.read_text().splitlines() if line.strip())
    if not self.label_names:
      raise BrokenExportError(f"{labels} names no class")
    if "num_frames" not in self.config:
      raise BrokenExportError(f"{config_path} does not say num_frames; export the model again")
    self.num_frames = int(self.config["num_frames"])
    if not (self.directory / MODEL_FILE).is_file():
      raise BrokenExportError(f"{self.directory / MODEL_FILE} is missing")

    def load(name):
      path = self.directory / name
      if not path.is_file():
        return None
      try:
        exported = jax.export.deserialize(bytearray(path.read_bytes()))
      except Exception:  # noqa: BLE001 (flatbuffer/MLIR errors of many types, no words for a user)
        raise BrokenExportError(
          f"{path} does not load: truncated or not a jax export ({path.stat().st_size} bytes); "
          "export the model again"
        ) from None
      # jit caches one executable per input shape: a stream calling with one frame
      # at a time compiles once.
      return jax.jit(exported.call)

    self._model = load(MODEL_FILE)
    self._encode = load(ENCODE_FILE)
    self._classify = load(CLASSIFY_FILE)

  @property
  def frame_vector_size(self) -> int:
    return int(self.config["frame_vector_size"])

  @property
  def has_halves(self) -> bool:
    return self._classify is not None

  @property
  def image_stream(self) -> bool:
    return self._encode is not None

  @staticmethod
  def _numpy(tree) -> dict:
    return {k: np.asarray(v) for k, v in tree.items()}

  def __call__(self, inputs, landmarks, frame_mask) -> dict[str, np.ndarray]:
    return self._numpy(
      self._model(
        np.asarray(inputs, np.float32),
        np.asarray(landmarks, np.float32),
        np.asarray(frame_mask, bool),
      )
    )

  def encode_frames(self, frames, frame_mask) -> dict[str, np.ndarray]:
    """(N, ...) frames, (N,) mask -> frame_vectors (N, D), spatial_attention (N, h, w)."""
    if self._encode is None:
      raise ValueError(f"{self.directory} has no {ENCODE_FILE} (a model without image stream)")
    return self._numpy(self._encode(np.asarray(frames, np.float32), np.asarray(frame_mask, bool)))

  def classify_clip(self, frame_vectors, landmarks, frame_mask) -> dict[str, np.ndarray]:
    if self._classify is None:
      raise ValueError(f"{self.directory} has no {CLASSIFY_FILE}")
    return self._numpy(
      self._classify(
        np.asarray(frame_vectors, np.float32),
        np.asarray(landmarks, np.float32),
        np.asarray(frame_mask, bool),
      )
    )


def load_exported(directory) -> ExportedModel:
  return ExportedModel(directory)


# ----------------------------------------------------------------------------- export


def model_functions(model, variables):
  """(whole, encode, classify) closures over the weights, float32 outputs as dicts."""
  import jax

  def whole(inputs, landmarks, frame_mask):
    logits, aux = model.apply(variables, inputs, landmarks, frame_mask, train=False)
    return {"probabilities": jax.nn.softmax(logits.astype("float32"), -1), **aux}

  def encode(frames, frame_mask):
    vectors, spatial = model.apply(
      variables, frames[None], frame_mask[None], method="encode_frames"
    )
    return {"frame_vectors": vectors[0], "spatial_attention": spatial[0]}

  def classify(frame_vectors, landmarks, frame_mask):
    logits, aux = model.apply(
      variables, frame_vectors, landmarks, frame_mask, method="classify_clip"
    )
    return {"probabilities": jax.nn.softmax(logits.astype("float32"), -1), **aux}

  return whole, encode, classify


def frame_input_shape(model_config) -> tuple[int, ...]:
  """Per-frame input shape: a face crop, or the stage-3 feature map."""
  if model_config.input_mode == "pixels":
    return (112, 112, 3)
  return (7, 7, int(model_config.stage_widths[-1]))


def _export(fn, args, platforms) -> bytes:
  import jax

  return jax.export.export(jax.jit(fn), platforms=platforms)(*args).serialize()


def export_model(
  workdir, output, checkpoint: str = "reported", platforms=DEFAULT_PLATFORMS, verify: bool = True
) -> dict:
  """Writes the export folder (see the module docstring) and returns its config.json."""
  import jax
  import jax.numpy as jnp

  from stress_jax import evaluate
  from stress_jax.models import build_model

  config = evaluate.read_config(workdir)
  output = export_settings.check_output(output)
  step, tag = evaluate.resolve_checkpoint(workdir, config, checkpoint)
  names = evaluate.label_names(workdir, config)
  if len(names) != int(config.model.num_classes):
    raise evaluate.EvaluationError(
      f"{workdir}/config.json has model.num_classes={config.model.num_classes} but the "
      f"dataset has {len(names)} classes"
    )
  num_frames = int(config.data.num_frames)
  if num_frames <= 0:
    raise evaluate.EvaluationError(f"{workdir}/config.json does not set data.num_frames")
  preprocess, preprocess_source = export_settings.preprocess_settings(workdir, config, num_frames)
  model = build_model(config.model)
  if not model.frames_independent:
    # A stream encodes each frame once as it arrives (encode_frames.stablehlo); a map
    # that reads the clip's mean would change with every frame that joins the window.
    setting = (
      f"model.image_reference={config.model.image_reference!r}"
      if config.model.get("image_reference")
      else f"model.spatial_attention_input={config.model.spatial_attention_input!r}"
    )
    raise evaluate.EvaluationError(
      f"{workdir}: {setting} reads the whole clip, so the model has no per-frame half to export"
    )
  variables = evaluate.load_variables(workdir, step, model, num_frames)
  if not variables["batch_stats"]:
    variables = {"params": variables["params"]}
  variables = jax.tree.map(jnp.asarray, variables)
  whole, encode, classify = model_functions(model, variables)

  frame_shape = frame_input_shape(config.model)
  (b,) = jax.export.symbolic_shape("b")
  (n,) = jax.export.symbolic_shape("n")
  width = int(config.model.head_width)
  f32, boolean = jnp.float32, jnp.bool_
  spec = jax.ShapeDtypeStruct
  whole_args = (
    spec((b, num_frames, *frame_shape), f32),
    spec((b, num_frames, 68, 2), f32),
    spec((b, num_frames), boolean),
  )
  output = storage.as_path(output)
  output.mkdir(parents=True, exist_ok=True)
  platforms = tuple(platforms)
  (output / MODEL_FILE).write_bytes(_export(whole, whole_args, platforms))
  files = {"model": MODEL_FILE, "classify_clip": CLASSIFY_FILE}
  image_stream = bool(config.model.image_stream)
  if image_stream:
    encode_args = (spec((n, *frame_shape), f32), spec((n,), boolean))
    (output / ENCODE_FILE).write_bytes(_export(encode, encode_args, platforms))
    files["encode_frames"] = ENCODE_FILE
  else:
    (output / ENCODE_FILE).unlink(missing_ok=True)
  # Without the image stream classify_clip ignores the vectors; the slot stays so
  # every export has one signature.
  classify_args = (
    spec((b, num_frames, width), f32),
    spec((b, num_frames, 68, 2), f32),
    spec((b, num_frames), boolean),
  )
  (output / CLASSIFY_FILE).write_bytes(_export(classify, classify_args, platforms))

  exported_config = {
    "format": "stress-jax export 1",
    "num_frames": num_frames,
    "input_mode": str(config.model.input_mode),
    "frame_shape": list(frame_shape),
    "frame_vector_size": width,
    "image_stream": image_stream,
    "landmark_stream": bool(config.model.landmark_stream),
    "label_names": list(names),
    "checkpoint": tag,
    "checkpoint_step": step,
    "workdir": str(storage.absolute(workdir)),
    "platforms": list(platforms),
    "files": files,
    "inputs": {
      "inputs": "float32 (B,T,*frame_shape): face crops in [0,1] (uint8/255) or feature maps",
      "landmarks": "float32 (B,T,68,2): landmarks in crop coordinates / 112",
      "frame_mask": "bool (B,T): False where a frame has no face",
    },
    "preprocess": preprocess,
    "preprocess_source": preprocess_source,
    # What the model learnt from; predict warns when that was simulated faces.
    "training_data": export_settings.training_data(workdir, config),
    "training_config": config.to_dict(),
  }
  jsonio.write(output / "config.json", exported_config)
  (output / "labels.txt").write_text("\n".join(names) + "\n")
  if verify:
    check_parity(output, jax.jit(whole), frame_shape, num_frames)
  _maybe_saved_model(output, whole, whole_args)
  return exported_config


def random_inputs(rng: np.random.Generator, batch: int, num_frames: int, frame_shape):
  """Inputs for a parity check: random crops/features, plausible landmarks, a masked frame."""
  inputs = rng.random((batch, num_frames, *frame_shape), np.float32)
  landmarks = rng.uniform(0.2, 0.8, (batch, num_frames, 68, 2)).astype(np.float32)
  mask = np.ones((batch, num_frames), bool)
  mask[0, -1] = False
  return inputs, landmarks, mask


def max_difference(a: dict, b: dict) -> float:
  if set(a) != set(b):
    raise AssertionError(f"outputs differ: {sorted(a)} vs {sorted(b)}")
  return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)


def check_parity(exported, reference_fn, frame_shape, num_frames: int, batch: int = 2) -> float:
  """Exported model vs `reference_fn` on random inputs; raises past the tolerance.

  exported: an ExportedModel or its folder; reference_fn: the in-memory model (jitted).
  """
  if not isinstance(exported, ExportedModel):
    exported = load_exported(exported)
  args = random_inputs(np.random.default_rng(0), batch, num_frames, frame_shape)
  worst = max_difference(exported(*args), reference_fn(*args))
  if not worst <= PARITY_TOLERANCE:
    raise AssertionError(
      f"exported model differs from the checkpoint by {worst:.3g} (> {PARITY_TOLERANCE})"
    )
  return worst


def _maybe_saved_model(output, whole, whole_args) -> None:
  """A TF SavedModel beside the StableHLO when TensorFlow happens to be installed."""
  try:
    import tensorflow as tf
    from jax.experimental import jax2tf
  except ImportError:
    return
  num_frames = whole_args[0].shape[1]
  frame_shape = whole_args[0].shape[2:]
  signature = [
    tf.TensorSpec((None, num_frames, *frame_shape), tf.float32, name="inputs"),
    tf.TensorSpec((None, num_frames, 68, 2), tf.float32, name="landmarks"),
    tf.TensorSpec((None, num_frames), tf.bool, name="frame_mask"),
  ]
  module = tf.Module()
  module.serve = tf.function(
    jax2tf.convert(whole, polymorphic_shapes=["(b, ...)"] * 3, with_gradient=False),
    input_signature=signature,
    autograph=False,
  )
  tf.saved_model.save(module, str(pathlib.Path(output) / "saved_model"))


def main(argv):
  cli.unexpected_arguments(argv)
  cli.quiet_logging("error")
  platforms = [p.strip() for p in _PLATFORMS.value.split(",") if p.strip()]
  unknown = sorted(set(platforms) - {"cpu", "cuda", "rocm", "tpu"})
  if not platforms or unknown:
    raise cli.UserError(f"--platforms takes cpu, cuda, rocm, tpu; got {_PLATFORMS.value!r}")
  exported = export_model(_WORKDIR.value, _OUTPUT.value, _CHECKPOINT.value, platforms)
  print(
    f"exported step {exported['checkpoint_step']} ({exported['checkpoint']}) of "
    f"{_WORKDIR.value} to {_OUTPUT.value}: {', '.join(exported['files'].values())} "
    f"for {', '.join(exported['platforms'])}; classes {', '.join(exported['label_names'])}; "
    f"face pipeline from {exported['preprocess_source']}",
    flush=True,
  )


if __name__ == "__main__":
  cli.run(main, FLAGS, "export")
