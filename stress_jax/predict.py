"""Stress over time in a video (or a camera) with an exported model.

  python -m stress_jax.predict --model=exported/demo --video=talk.mp4 [--output=DIR]
  python -m stress_jax.predict --model=exported/demo --video=talk.mp4 --stream
  python -m stress_jax.predict --model=exported/demo --video=0 --stream   # camera 0
  python -m stress_jax.predict --model=exported/demo --video=frames/      # image files, name order

The model must take face crops (a feature-map export, input_mode=features, is refused).
Windowing and the streaming predictor are in predict_windows.py, the camera/video I/O
and the files written in predict_io.py.

The video goes through the face pipeline the training data went through
(stress_jax.preprocess: decoding at the export's fps, dlib landmarks, eye-aligned
112x112 crops), then the model scores windows of T frames (T = the export's clip
length) starting every --stride frames (default T/2). Writes into --output:

  <stem>.jsonl          one line per window: window, start_s, end_s, start_frame (source
                        frame index), face_frames, probabilities {label: p} and the
                        predicted label (both null when no frame of the window has a face),
                        trained_on_simulated_faces (the model's training data, from the export)
  <stem>_timeline.png   the class probabilities against time
  <stem>_attention/     for each class, the window where it is most probable: crops with
                        the spatial attention, temporal weights beneath

A model trained on simulated faces (the demo's stress_faces/synthetic) prints one line
saying so before any score, in both modes: it is for trying the pipeline, not for judging
real people. When several faces are in view, --follow chooses whom to score (default: the
largest, most central); the summary names the face followed and the rule.

Frames without a face are masked (the model ignores them), so a window with a few
missing faces is still scored; only a window without any face is not. A video shorter
than T frames gives one window, padded with masked frames.

--stream runs frame by frame, as on a live camera: each new frame's crop goes through
the image half of the model once (encode_frames), its vector joins a rolling window
of the last T frame vectors and landmarks, and the cheap classify_clip half scores the
window every --stride frames. Per frame that is one frame's CNN instead of T. It
prints frames/s (face pipeline included, and the model alone). On the same frames it
gives the same windows and probabilities as the default mode. A camera (an integer
--video) needs --stream and runs until Ctrl-C or --max_frames.
"""

from __future__ import annotations

import pathlib

import numpy as np
from absl import flags

from stress_jax import cli, storage
from stress_jax.export_settings import simulated_training
from stress_jax.predict_io import PredictError, _head, _stream, camera_frames, write_outputs
from stress_jax.predict_windows import (
  BATCH_WINDOWS,
  BestPerClass,
  StreamPredictor,
  Window,
  frame_period,
  predict_windows,
  window_starts,
)

__all__ = [
  "BATCH_WINDOWS",
  "BestPerClass",
  "PredictError",
  "StreamPredictor",
  "Window",
  "camera_frames",
  "format_summary",
  "frame_period",
  "predict_windows",
  "run",
  "window_starts",
  "write_outputs",
]

FLAGS = flags.FlagValues()
flags.DEFINE_string(
  "model", None, "An export folder (python -m stress_jax.export).", flag_values=FLAGS
)
flags.DEFINE_string(
  "video",
  None,
  "A video file, a folder of frames (image files in name order), or a camera index with --stream.",
  flag_values=FLAGS,
)
cli.define_output(FLAGS, "Where the results go.", default="predictions")
flags.DEFINE_integer("stride", 0, "Frames between window starts; 0 = T/2.", flag_values=FLAGS)
flags.DEFINE_boolean(
  "stream", False, "Frame-by-frame with cached frame vectors.", flag_values=FLAGS
)
cli.define_num_pictures(FLAGS, 3, "Attention pictures (one per class).")
flags.DEFINE_float(
  "fps", None, "Decode rate; default: the export's preprocess.fps.", flag_values=FLAGS
)
flags.DEFINE_integer("max_frames", 0, "Stop after this many frames; 0 = all.", flag_values=FLAGS)
flags.DEFINE_string(
  "follow",
  None,
  "Whom to follow when several faces are in view: prominent (the largest, most central), "
  "largest, central, or region:x0,y0,x1,y1 (fractions of the frame). Default: the export's "
  "preprocess.follow.",
  flag_values=FLAGS,
)
flags.mark_flags_as_required(["model", "video"], flag_values=FLAGS)


def _preprocess(model, fps: float | None, follow: str | None = None):
  from stress_jax.preprocess import PreprocessConfig
  from stress_jax.preprocess.config import parse_follow

  settings = dict(model.config.get("preprocess") or {})
  settings = {k: v for k, v in settings.items() if k in PreprocessConfig.__dataclass_fields__}
  config = PreprocessConfig.from_mapping(settings)
  if follow is not None:
    try:
      parse_follow(follow)
    except ValueError as error:
      raise PredictError(f"--follow: {error}") from None
    config = config.replace(follow=follow)
  return config.replace(fps=fps) if fps is not None else config


# One line before any score: the demo model has never seen a real face.
SIMULATED_NOTE = (
  "note: this model was trained on simulated faces ({data}); on real video its scores "
  "show the pipeline working, they say nothing about the person's stress"
)


def _data_name(exported_config: dict) -> str:
  recorded = exported_config.get("training_data") or {}
  if recorded.get("name"):
    return "/".join(p for p in (recorded["name"], recorded.get("config")) if p)
  return ((exported_config.get("training_config") or {}).get("data") or {}).get("name", "?")


def _load_model(path):
  from stress_jax import export

  if storage.is_remote(path):
    try:
      path = storage.local_copy(path)  # the exported programs load from local files
    except FileNotFoundError as error:
      raise PredictError(f"{path} is not an export folder: {error}") from None
  path = pathlib.Path(path)
  if not (path / "config.json").is_file() or not (path / export.MODEL_FILE).is_file():
    raise PredictError(f"{path} is not an export folder (run python -m stress_jax.export first)")
  input_mode = export.read_json(path / "config.json").get("input_mode", "pixels")
  if input_mode != "pixels":
    raise PredictError(
      f"{path} is a feature-map model (input_mode={input_mode}: it reads 7x7x256 ResNet "
      "maps, not faces); predict needs a model trained on face crops"
    )
  return export.load_exported(path)


def _check_source(video) -> None:
  """A video file, or a folder holding image frames."""
  from stress_jax.preprocess.decode import IMAGE_EXTENSIONS, list_images

  path = pathlib.Path(video)
  if path.is_dir():
    if not list_images(path):
      raise PredictError(
        f"folder {video} holds no frames: expected image files "
        f"({', '.join(sorted(IMAGE_EXTENSIONS))}) named in frame order"
      )
  elif not path.is_file():
    raise PredictError(f"video {video} does not exist")


def run(
  model,
  video,
  output="predictions",
  stride: int = 0,
  stream: bool = False,
  num_pictures: int = 3,
  fps: float | None = None,
  max_frames: int = 0,
  follow: str | None = None,
) -> dict:
  """The CLI's work; returns a summary (counts, paths, frames/s in streaming).

  The parameters are the flags of the same name: `model` is the export folder.
  """
  from stress_jax.preprocess import DecodeError, FacePipeline

  model = _load_model(model)
  camera = isinstance(video, int) or (isinstance(video, str) and video.strip().isdigit())
  if camera and not stream:
    raise PredictError("a camera (integer --video) needs --stream")
  if not camera:
    _check_source(video)
  if pathlib.Path(output).exists() and not pathlib.Path(output).is_dir():
    raise PredictError(f"--output={output} is a file; give a folder (it is created if missing)")
  if stride < 0 or num_pictures < 0 or max_frames < 0:
    raise PredictError("--stride, --num_pictures and --max_frames must be >= 0")
  preprocess = _preprocess(model, fps, follow)
  simulated = simulated_training(model.config)
  if simulated:
    print(SIMULATED_NOTE.format(data=_data_name(model.config)), flush=True)
  stride = stride or preprocess.stride or max(1, model.num_frames // 2)
  pipeline = FacePipeline(preprocess)
  stem = f"camera{int(video)}" if camera else pathlib.Path(video).stem
  picks = BestPerClass(model.label_names, num_pictures)
  summary = {"stem": stem, "stride": stride, "window_frames": model.num_frames}
  try:
    if stream:
      windows, crops_of, timing = _stream(
        model, pipeline, video, camera, stride, preprocess, picks, max_frames
      )
      summary.update(timing)
    else:
      faces = pipeline.process_video(video)
      if max_frames:
        faces = _head(faces, max_frames)
      windows = predict_windows(model, faces, stride, frame_period(faces, preprocess))
      for window in windows:
        picks.offer(window)

      def crops_of(index):
        return faces.crops[index]

      summary["frames"] = faces.num_frames
  except DecodeError as error:
    raise PredictError(f"cannot read {video}: {str(error).splitlines()[0]}") from None
  for window in windows:
    window.row["trained_on_simulated_faces"] = simulated
  # Whom the scores are about: faces in view at the start, the one followed and why.
  summary["faces"] = pipeline.tracker.start_summary if pipeline.tracker else None
  paths = write_outputs(output, stem, windows, model.label_names, crops_of, picks.best, stem)
  scored = [w.row for w in windows if w.row["probabilities"] is not None]
  summary.update(
    windows=len(windows),
    windows_without_face=len(windows) - len(scored),
    mean_probabilities={
      n: float(np.mean([r["probabilities"][n] for r in scored])) if scored else None
      for n in model.label_names
    },
    paths={k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in paths.items()},
  )
  return summary


def format_summary(summary: dict) -> str:
  lines = [
    f"{summary['stem']}: {summary['frames']} frames, {summary['windows']} windows of "
    f"{summary['window_frames']} frames every {summary['stride']} "
    f"({summary['windows_without_face']} without a face)"
  ]
  faces = summary.get("faces")
  if faces and faces["followed"] is not None:
    box = ",".join(f"{v:.0f}" for v in faces["followed"])
    lines.append(f"  followed {faces['why']} (box {box} at the start; --follow chooses)")
  means = summary["mean_probabilities"]
  if any(v is not None for v in means.values()):
    lines.append("  mean probability: " + "  ".join(f"{k} {v:.3f}" for k, v in means.items()))
  if "frames_per_s" in summary:
    model_rate = summary["model_frames_per_s"]
    lines.append(
      f"  stream: {summary['frames_per_s']:.1f} frames/s with the face pipeline"
      + (f", {model_rate:.1f} frames/s for the model alone" if model_rate else "")
    )
  lines.append(f"  wrote {summary['paths']['jsonl']}")
  return "\n".join(lines)


def main(argv):
  cli.unexpected_arguments(argv)
  cli.quiet_logging("error")
  summary = run(**cli.flag_arguments(FLAGS, run))
  print(format_summary(summary), flush=True)


if __name__ == "__main__":
  cli.run(main, FLAGS, "predict")
