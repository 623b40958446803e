"""Evaluate a trained workdir: clip- and video-level metrics, attention pictures, curves.

  python -m stress_jax.evaluate --workdir=runs/demo                   # test subjects, best
  python -m stress_jax.evaluate --workdir=runs/demo --split=all --checkpoint=latest
  python -m stress_jax.evaluate --workdir=runs/demo --checkpoint=1200 --num_pictures=4

Reads `<workdir>/config.json` (what train.py wrote), opens the same dataset and the
same subject split, restores the checkpoint and writes `<workdir>/eval/<split>_<ckpt>/`:

  metrics.json          clip level ("clip") and video level ("video": each video's clip
                        probabilities averaged, its label the most common clip label):
                        accuracy, balanced_accuracy, macro_f1, precision / recall / f1
                        and one-vs-rest roc_auc per class, confusion_matrix, num_clips,
                        num_subjects (num_videos); per-subject accuracy; on synthetic
                        data "attention_faithfulness" (see stress_jax/faithfulness.py).
                        NaN (e.g. ROC-AUC of a class absent from the split) is null.
  confusion_matrix.png  clip and video level side by side
  attention/*.png       per clip: spatial attention over the face crops, temporal weights
                        beneath (cue frames and region marked on synthetic data);
                        --num_pictures clips of each class, the most confident first
and `<workdir>/eval/training_curves.png` from `<workdir>/metrics.jsonl`.

<ckpt> is `best` (selected on validation subjects during training), `latest`, or
`step<N>`; the default, `--checkpoint=reported`, is the one the run's summary reports
(config.train.report_checkpoint: best or the last). Evaluation runs in one process (on
all its local devices).
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
from absl import flags

from stress_jax import cli, jsonio, storage

SPLITS = ("test", "val", "train", "all")

FLAGS = flags.FlagValues()
cli.define_trained_model(FLAGS)
flags.DEFINE_enum("split", "test", list(SPLITS), "Which subjects to evaluate.", flag_values=FLAGS)
cli.define_num_pictures(FLAGS, 2, "Attention pictures per class.")
cli.define_data_dir(FLAGS, "Overrides the config's data.data_dir.")


class EvaluationError(cli.UserError):
  """A problem with what the user asked for; its message is one line naming it."""


def read_config(workdir):
  """The ConfigDict a training run wrote to `<workdir>/config.json`."""
  import ml_collections

  workdir = storage.as_path(workdir)
  if not workdir.is_dir():
    raise EvaluationError(f"workdir {workdir} does not exist")
  path = workdir / "config.json"
  if not path.is_file():
    raise EvaluationError(f"{path} is missing: {workdir} is not a training workdir (or is empty)")
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except json.JSONDecodeError as error:
    raise EvaluationError(f"{path} is not valid JSON: {error}") from None


def resolve_checkpoint(workdir, config, checkpoint: str = "reported") -> tuple[int, str]:
  """'reported' | 'best' | 'latest' | 'N' -> (step, tag for file names).

  'reported' is what the run's summary reports: 'latest' when config.train.report_checkpoint
  is "last", else 'best'.
  """
  from stress_jax import checkpointing

  workdir = storage.as_path(workdir)
  checkpoint = str(checkpoint).strip()
  if checkpoint == "reported":
    reported = config.get("train", {}).get("report_checkpoint", "best")
    checkpoint = "latest" if reported == "last" else "best"
  if checkpoint not in ("best", "latest") and not checkpoint.isdigit():
    raise EvaluationError(
      f"--checkpoint must be reported, best, latest or a step number, got {checkpoint!r}"
    )
  if not (workdir / "checkpoints").is_dir():
    raise EvaluationError(f"no checkpoints in {workdir} (expected {workdir / 'checkpoints'})")
  manager = checkpointing.CheckpointManager(workdir, config.train, read_only=True)
  try:
    steps = sorted(manager.all_steps())
    if not steps:
      raise EvaluationError(f"no checkpoints in {workdir / 'checkpoints'}")
    if checkpoint == "best":
      step = manager.best_step()
      if step is None:
        raise EvaluationError(
          f"no checkpoint in {workdir} has validation metrics; use --checkpoint=latest"
        )
      return int(step), "best"
    if checkpoint == "latest":
      return int(steps[-1]), "latest"
    if int(checkpoint) not in steps:
      raise EvaluationError(
        f"no checkpoint of step {checkpoint} in {workdir}; saved steps: "
        + ", ".join(map(str, steps))
      )
    return int(checkpoint), f"step{int(checkpoint)}"
  finally:
    manager.close()


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  import jax

  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
    "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): tuple(np.shape(v))
    for path, v in leaves
  }


def check_compatible(expected: dict, restored: dict, source: str) -> None:
  """Raises one line naming the first parameter whose presence or shape differs."""
  want, have = _shapes(expected), _shapes(restored)
  for name in sorted(set(want) | set(have)):
    if name not in have:
      raise EvaluationError(f"{source} lacks {name} {want[name]} that the config's model has")
    if name not in want:
      raise EvaluationError(f"{source} holds {name} {have[name]} that the config's model lacks")
    if want[name] != have[name]:
      raise EvaluationError(
        f"{source} does not fit the config's model: {name} is {have[name]} in the "
        f"checkpoint but {want[name]} in the model"
      )


def expected_variables(model, num_frames: int) -> dict:
  """Abstract {'params', 'batch_stats'} of `model` (shapes only; nothing is computed)."""
  import jax

  from stress_jax.models import init_variables

  variables = jax.eval_shape(
    lambda: init_variables(model, jax.random.key(0), batch=1, num_frames=num_frames)
  )
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def load_variables(workdir, step: int, model, num_frames: int) -> dict:
  """The checkpoint's {'params', 'batch_stats'} as numpy, checked against `model`."""
  from stress_jax import checkpointing

  try:
    _, state = checkpointing.load_state_arrays(workdir, step)
  except (FileNotFoundError, checkpointing.CheckpointError) as error:
    raise EvaluationError(cli.one_line(error)) from error
  variables = {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}
  check_compatible(
    expected_variables(model, num_frames),
    variables,
    f"checkpoint step {step} in {workdir}",
  )
  return variables


def label_names(workdir, config) -> tuple[str, ...]:
  """Class names: from the summary a finished run wrote, else from the dataset."""
  summary_path = storage.as_path(workdir) / "summary.json"
  if summary_path.is_file():
    try:
      summary = json.loads(summary_path.read_text())
    except ValueError as error:
      raise EvaluationError(
        f"{summary_path} is not valid JSON ({error}); move it away and the class names are "
        "taken from the dataset"
      ) from None
    if isinstance(summary, dict) and summary.get("label_names"):
      return tuple(summary["label_names"])
  from stress_jax import input_pipeline

  data = config.data.copy_and_resolve_references()
  with data.unlocked():
    data.build_if_missing = False
  try:
    return tuple(input_pipeline.open_dataset(data).label_names)
  except FileNotFoundError:
    raise EvaluationError(
      f"cannot tell the class names: {summary_path} has none and dataset {config.data.name} "
      "is not built here"
    ) from None


def _trainer(config, workdir):
  from stress_jax.trainer import Trainer

  try:
    return Trainer(config, workdir)
  except FileNotFoundError as error:
    raise EvaluationError(str(error).splitlines()[0]) from None
  except ValueError as error:
    raise EvaluationError(f"config of {workdir} does not fit its dataset: {error}") from None


def _state(trainer, variables, step):
  """A TrainState for inference: no optimizer state (evaluation reads params only)."""
  import functools

  import jax
  import jax.numpy as jnp

  from stress_jax.steps import TrainState, eval_step

  replicated = trainer.replicated
  # The trainer's compiled eval step expects the training state's shardings,
  # optimizer state included; an inference-only step takes the state replicated whole.
  trainer.p_eval_step = jax.jit(
    functools.partial(eval_step, model=trainer.model, dtype=trainer.dtype),
    in_shardings=(replicated, trainer.data_sharding),
  )
  return TrainState(
    step=jax.device_put(jnp.asarray(step, jnp.int32), replicated),
    params=jax.device_put(variables["params"], replicated),
    batch_stats=jax.device_put(variables["batch_stats"], replicated),
    opt_state=(),
  )


def clip_and_video_metrics(outputs: dict, label_names) -> dict:
  """The metric blocks of metrics.json from prediction outputs (probabilities, label, ...)."""
  from stress_jax import metrics

  labels, probabilities = outputs["label"], outputs["probabilities"]
  clip = metrics.classification_metrics(labels, probabilities, label_names)
  result = {"clip": clip}
  if "subject" in outputs:
    subjects = np.asarray([str(s) for s in outputs["subject"]])
    clip["num_subjects"] = int(len(np.unique(subjects)))
    correct = probabilities.argmax(-1) == labels
    result["per_subject"] = {
      s: {"accuracy": float(correct[subjects == s].mean()), "num_clips": int((subjects == s).sum())}
      for s in np.unique(subjects)
    }
  if "video" in outputs:
    video_labels, video_probabilities, names = metrics.video_level(
      labels, probabilities, outputs["video"]
    )
    video = metrics.classification_metrics(video_labels, video_probabilities, label_names)
    video["num_videos"] = video.pop("num_clips")
    if "subject" in outputs:
      video["num_subjects"] = clip["num_subjects"]
    result["video"] = video
    result["videos"] = names.tolist()
  return result


def pick_pictures(labels, probabilities, per_class: int) -> list[int]:
  """Up to `per_class` clips of each true class, the most confident in that class first."""
  labels = np.asarray(labels)
  chosen = []
  for k in range(probabilities.shape[-1]):
    members = np.flatnonzero(labels == k)
    order = members[np.argsort(-probabilities[members, k], kind="stable")]
    chosen.extend(int(i) for i in order[:per_class])
  return chosen


def _file_stem(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "clip"


def _row(outputs: dict, key: str, i: int):
  return outputs[key][i] if key in outputs else None


def write_attention_pictures(directory, handle, subjects, outputs, chosen) -> list[pathlib.Path]:
  """One attention_figure per chosen clip (indices into `outputs`, which follow the source)."""
  from stress_jax import input_pipeline, plots

  directory = pathlib.Path(directory)
  source = handle.source(subjects)
  transform = input_pipeline.ClipTransform(handle)
  names = handle.label_names
  paths = []
  for rank, i in enumerate(chosen):
    record = transform(source[i])
    frames = record["inputs"] if handle.input_key == "frames" else None
    label = int(outputs["label"][i])
    predicted = int(outputs["probabilities"][i].argmax())
    video = str(outputs["video"][i]) if "video" in outputs else f"clip{i}"
    start = int(outputs["start_frame"][i]) if "start_frame" in outputs else 0
    title = (
      f"{video} from frame {start}: true {names[label]}, predicted {names[predicted]} "
      f"(p={float(outputs['probabilities'][i, predicted]):.2f})"
    )
    path = directory / f"{names[label]}_{rank:02d}_{_file_stem(video)}_f{start}.png"
    paths.append(
      plots.attention_figure(
        path,
        frames=frames,
        spatial=_row(outputs, "aux/spatial_attention", i),
        temporal=_row(outputs, "aux/temporal_attention", i),
        landmark_temporal=_row(outputs, "aux/landmark_temporal_attention", i),
        frame_mask=outputs["frame_mask"][i],
        cue_frames=_row(outputs, "cue_frames", i),
        cue_region=_row(outputs, "cue_region", i),
        title=title,
      )
    )
  return paths


def write_training_curves(workdir, eval_dir=None) -> pathlib.Path | None:
  from stress_jax import plots
  from stress_jax.metric_writer import read_metrics

  rows = read_metrics(workdir)
  if not rows:
    return None
  eval_dir = pathlib.Path(workdir) / "eval" if eval_dir is None else eval_dir
  return plots.training_curves(eval_dir / "training_curves.png", rows)


def restore(workdir, config, checkpoint: str = "reported"):
  """(trainer, inference state, step, tag) of a workdir's checkpoint under `config` (its
  config.json as read_config gives it, or that with inference-only fields changed)."""
  step, tag = resolve_checkpoint(workdir, config, checkpoint)
  trainer = _trainer(config, workdir)
  variables = load_variables(workdir, step, trainer.model, trainer.handle.num_frames)
  return trainer, _state(trainer, variables, step), step, tag


def evaluate(
  workdir,
  split: str = "test",
  checkpoint: str = "reported",
  num_pictures: int = 2,
  data_dir: str | None = None,
) -> dict:
  """Runs the evaluation described in the module docstring and returns metrics.json's dict."""
  from stress_jax import faithfulness, plots

  if split not in SPLITS:
    raise EvaluationError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
  if num_pictures < 0:
    raise EvaluationError(f"--num_pictures must be >= 0, got {num_pictures}")
  workdir = storage.as_path(workdir)
  config = read_config(workdir)
  if data_dir:
    config.data.data_dir = data_dir
  trainer, state, step, tag = restore(workdir, config, checkpoint)

  subjects = trainer.handle.subjects if split == "all" else getattr(trainer.split, split)
  subjects = tuple(sorted(subjects))
  if not subjects:
    raise EvaluationError(f"the {split} split of {workdir} has no subjects")
  outputs = trainer.predict(state, subjects, keep_metadata=True)
  names = trainer.handle.label_names
  result = {
    "workdir": str(workdir),
    "dataset": config.data.name,
    "fold": int(config.protocol.fold),
    "split": split,
    "checkpoint": tag,
    "step": step,
    "subjects": list(subjects),
    "label_names": list(names),
    **clip_and_video_metrics(outputs, names),
  }
  if trainer.handle.synthetic:
    result["attention_faithfulness"] = faithfulness.attention_faithfulness(outputs)

  # matplotlib writes local files only: a bucket workdir gets them uploaded on exit.
  with storage.staged_directory(workdir / "eval") as eval_dir:
    out_dir = eval_dir / f"{split}_{tag}"
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonio.write(out_dir / "metrics.json", result)
    matrices = {"clips": result["clip"]["confusion_matrix"]}
    if "video" in result:
      matrices["videos"] = result["video"]["confusion_matrix"]
    plots.confusion_figure(out_dir / "confusion_matrix.png", matrices, names)
    chosen = pick_pictures(outputs["label"], outputs["probabilities"], num_pictures)
    write_attention_pictures(out_dir / "attention", trainer.handle, subjects, outputs, chosen)
    write_training_curves(workdir, eval_dir)
  result["output_dir"] = str(workdir / "eval" / f"{split}_{tag}")
  return result


def main(argv):
  cli.unexpected_arguments(argv)
  # orbax logs every read-only open at WARNING; nothing there is for the user.
  cli.quiet_logging("error")
  from stress_jax import report

  result = evaluate(**cli.flag_arguments(FLAGS, evaluate))
  print(report.format_evaluation(result), flush=True)


if __name__ == "__main__":
  cli.run(main, FLAGS, "evaluate")
