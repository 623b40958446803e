"""A PNG contact sheet of stress_faces clips: frames, landmarks, cue frames and cue regions.

  python -m stress_jax.datasets.synthetic.contact_sheet --output=sheet.png \
      [--data_dir=DIR] [--config=synthetic]

With a prepared dataset in --data_dir it shows stored records; without one it
renders the same clips with the simulator (no build needed). Each row is one clip:
sampled frames with the 68 landmarks the detector found (a red frame border marks
cue frames), then the cue region of the frame where the cues cover most, over it.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
from absl import flags

from stress_jax import cli
from stress_jax.datasets import synthetic
from stress_jax.faces import records

FLAGS = flags.FlagValues()
_OUTPUT = cli.define_output(FLAGS, "PNG path.", required=True)
_DATA_DIR = cli.define_data_dir(FLAGS, "Read a prepared dataset from here.")
_CONFIG = flags.DEFINE_string(
  "config", "synthetic", "stress_faces config (with --data_dir).", flag_values=FLAGS
)
_CLIPS_PER_CLASS = flags.DEFINE_integer(
  "clips_per_class", 2, "Rows per class.", lower_bound=1, flag_values=FLAGS
)
_FRAMES = flags.DEFINE_integer(
  "frames", 8, "Frames shown per clip.", lower_bound=1, flag_values=FLAGS
)


def _as_clip(example: dict) -> dict:
  return dict(
    frames=np.stack([np.asarray(f) for f in example["frames"]]),
    landmarks=np.asarray(example["landmarks"]),
    cue_frames=np.asarray(example["cue_frames"]),
    cue_region=np.asarray(example["cue_region"]),
    label=int(example["label"]),
    subject=records.as_text(example["subject"]),
    video=records.as_text(example["video"]),
    start_frame=int(example["start_frame"]),
    events=example.get("events") or _events(example.get("cue_events")),
  )


def _events(rows) -> list[synthetic.CueEvent]:
  """The records' (kind, start, end, intensity) rows as events."""
  if rows is None:
    return []
  return [
    synthetic.CueEvent(synthetic.EVENT_KINDS[int(k)], int(a), int(b), float(i))
    for k, a, b, i in np.asarray(rows)
    if k >= 0
  ]


def simulated_clips(
  config: synthetic.SimulatorConfig | None = None, clips_per_class: int = 2
) -> list[dict]:
  """Clips rendered directly, a different subject on every row."""
  config = config or synthetic.SimulatorConfig()
  clips = []
  for session in range(config.num_classes):
    for k in range(clips_per_class):
      subject = (session * clips_per_class + k) % config.num_subjects
      clip = synthetic.simulate_clip(
        config, subject, session, k % config.clips_per_class_per_subject
      )
      example = synthetic.clip_example(clip)
      example["frames"] = clip.frames
      example["events"] = clip.events
      clips.append(_as_clip(example))
  return clips


def stored_clips(
  data_dir: str | None, config: str = "synthetic", clips_per_class: int = 2
) -> tuple[list[dict], list[str]]:
  """Clips read back from prepared array_record shards, one subject per row where possible."""
  import tensorflow_datasets as tfds

  # Read back from the prepared files alone (their dataset_info.json carries the
  # features): the builder's code is not needed, nor imported.
  try:
    builder = tfds.builder(f"stress_faces/{config}", data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise cli.UserError(f"stress_faces/{config} is not built in {data_dir}") from None
  label_names = builder.info.features["label"].names
  sources = builder.as_data_source()
  wanted = {c: clips_per_class for c in range(len(label_names))}
  picked: dict[int, list[dict]] = {c: [] for c in wanted}
  for split in sorted(sources):
    source = sources[split]
    for i in range(len(source)):
      example = source[i]
      label = int(example["label"])
      if len(picked[label]) < wanted[label]:
        picked[label].append(_as_clip(example))
        break  # next subject
    if all(len(picked[c]) == wanted[c] for c in wanted):
      break
  return [clip for c in sorted(picked) for clip in picked[c]], list(label_names)


def _describe(clip: dict, label_names: Sequence[str]) -> str:
  text = f"{label_names[clip['label']]}\n{clip['video']} @{clip['start_frame']}"
  if clip.get("events"):
    text += "\n" + "\n".join(
      f"{e.kind} {e.start}-{e.end} ({e.intensity:.2f})" for e in clip["events"]
    )
  elif clip["cue_frames"].any():
    frames = np.flatnonzero(clip["cue_frames"])
    text += f"\ncues in frames {frames[0]}-{frames[-1]}"
  else:
    text += "\nno cues"
  return text


def draw_contact_sheet(
  clips: Sequence[dict],
  label_names: Sequence[str],
  output: str | pathlib.Path,
  frames_per_clip: int = 8,
) -> pathlib.Path:
  """Writes the sheet to `output` (PNG) and returns its path."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows, cols = len(clips), frames_per_clip + 1
  # Square image panels 1.1 in wide plus a title line: size the figure to fit them
  # so matplotlib does not spread the slack between rows.
  fig, axes = plt.subplots(
    rows, cols + 1, figsize=(1.1 * cols + 1.9, 1.28 * rows + 0.3),
    gridspec_kw=dict(
      width_ratios=[1.7] + [1] * cols, wspace=0.04, hspace=0.16, top=1 - 0.35 / (1.28 * rows + 0.3)
    ),
  )  # fmt: skip
  axes = np.atleast_2d(axes)
  for row, clip in zip(axes, clips, strict=True):
    num_frames = len(clip["frames"])
    shown = np.unique(np.linspace(0, num_frames - 1, frames_per_clip).round().astype(int))
    row[0].text(0, 0.5, _describe(clip, label_names), va="center", ha="left", fontsize=6.5)
    row[0].axis("off")
    for ax, t in zip(row[1:], shown, strict=False):
      ax.imshow(clip["frames"][t])
      lm = clip["landmarks"][t] * clip["frames"].shape[2]
      # Pixel centres sit at +0.5 in our convention, at integers in imshow's.
      ax.scatter(lm[:, 0] - 0.5, lm[:, 1] - 0.5, s=0.35, c="#00e5ff", linewidths=0)
      size = clip["frames"].shape[1]
      ax.set_xlim(-0.5, size - 0.5)  # a chin point below the crop must not widen the panel
      ax.set_ylim(size - 0.5, -0.5)
      ax.set_title(f"t={t}", fontsize=6, pad=1.5)
      colour = "red" if clip["cue_frames"][t] else "#bbbbbb"
      for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2.2 if clip["cue_frames"][t] else 0.6)
      ax.set_xticks([])
      ax.set_yticks([])
    for ax in row[1 + len(shown) : -1]:
      ax.axis("off")
    ax = row[-1]
    regions = np.asarray(clip["cue_region"], np.float32) / 255  # (T, 28, 28)
    busiest = int(regions.sum(axis=(1, 2)).argmax()) if regions.any() else num_frames // 2
    size = clip["frames"].shape[1]
    ax.imshow(clip["frames"][busiest])
    ax.imshow(
      regions[busiest],
      cmap="magma",
      alpha=0.6 * regions[busiest],
      vmin=0,
      vmax=1,
      extent=(-0.5, size - 0.5, size - 0.5, -0.5),
    )
    ax.set_title(f"cue region t={busiest}", fontsize=6, pad=1.5)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(
    "stress_faces/synthetic: landmarks (cyan), cue frames (red border)", fontsize=8, y=1.0
  )
  output = pathlib.Path(output)
  output.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(output, dpi=150, bbox_inches="tight")
  plt.close(fig)
  return output


def main(argv: Sequence[str]) -> None:
  cli.unexpected_arguments(argv)
  cli.quiet_logging("error")  # TFDS logs its probing of --data_dir
  if _DATA_DIR.value:
    clips, names = stored_clips(_DATA_DIR.value, _CONFIG.value, _CLIPS_PER_CLASS.value)
  else:
    num_classes = 2 if _CONFIG.value == "synthetic_binary" else 3
    config = synthetic.SimulatorConfig(num_classes=num_classes)
    clips, names = simulated_clips(config, _CLIPS_PER_CLASS.value), list(config.label_names)
  path = draw_contact_sheet(clips, names, _OUTPUT.value, _FRAMES.value)
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main, FLAGS, "contact_sheet")
