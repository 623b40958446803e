"""Every picture the project draws: attention over a clip, confusion matrices, training
curves, a video's stress timeline. All functions write a PNG and return its path.

matplotlib runs on its Agg backend, so nothing here needs a display.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

# The attention overlay's colour map, and how much of the face shows through it.
HEAT_CMAP = "inferno"
HEAT_ALPHA = 0.5
CUE_COLOUR = "#d62728"
IMAGE_COLOUR = "#1f77b4"
LANDMARK_COLOUR = "#2ca02c"


def _pyplot():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _save(fig, path) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  _pyplot().close(fig)
  return path


def shown_frames(num_frames: int, max_frames: int) -> np.ndarray:
  """Which frames get a thumbnail: all of them, or `max_frames` spread evenly."""
  if num_frames <= max_frames:
    return np.arange(num_frames)
  return np.unique(np.linspace(0, num_frames - 1, max_frames).round().astype(int))


def attention_figure(
  path,
  *,
  frames=None,
  spatial=None,
  temporal=None,
  landmark_temporal=None,
  frame_mask,
  cue_frames=None,
  cue_region=None,
  title: str = "",
  max_frames: int = 16,
  frame_times=None,
) -> pathlib.Path:
  """Face crops with the spatial map over them, the temporal weights as curves beneath.

  frames (T,112,112,3) uint8 or None (feature-mode data: the maps are drawn alone);
  spatial (T,h,w) or None; temporal / landmark_temporal (T,) or None; frame_mask (T,);
  cue_frames (T,) and cue_region ((T,28,28) per frame, or one (112,112) map) on synthetic
  data, drawn in red.
  frame_times (T,) seconds label the curve's axis instead of frame indices.
  """
  plt = _pyplot()
  from matplotlib import patches

  mask = np.asarray(frame_mask, bool)
  num_frames = mask.shape[0]
  cues = None if cue_frames is None else np.asarray(cue_frames, bool)
  index = shown_frames(num_frames, max_frames)
  columns = min(len(index), 8)
  rows = math.ceil(len(index) / columns)
  # Few frames get bigger thumbnails, so the figure never shrinks below a readable width.
  side = 1.45 if columns > 5 else 1.8
  fig = plt.figure(figsize=(side * columns + 1.2, (side + 0.1) * rows + 2.1))
  grid = fig.add_gridspec(
    rows + 1,
    columns + 1,
    height_ratios=[1] * rows + [1.1],
    width_ratios=[1] * columns + [0.08],
    hspace=0.35,
    wspace=0.08,
  )

  heat_range = None
  if spatial is not None:
    spatial = np.asarray(spatial, np.float32)
    valid_maps = spatial[mask & (spatial.reshape(num_frames, -1).max(-1) > 0)]
    if valid_maps.size:
      # One range per clip: sigmoid maps often sit in a narrow band, and a fixed
      # [0, 1] scale would wash out where the model looks more.
      low, high = float(valid_maps.min()), float(valid_maps.max())
      heat_range = (low, max(high, low + 1e-6))
  heat_image = None
  for k, t in enumerate(index):
    ax = fig.add_subplot(grid[k // columns, k % columns])
    ax.set_xticks([])
    ax.set_yticks([])
    if frames is not None:
      ax.imshow(np.asarray(frames[t]), extent=(0, 112, 112, 0))
    else:
      ax.imshow(np.zeros((112, 112)), cmap="gray", extent=(0, 112, 112, 0), vmin=0, vmax=1)
    if not mask[t]:
      ax.text(
        56,
        56,
        "no face",
        ha="center",
        va="center",
        color="white",
        fontsize=8,
        bbox=dict(facecolor="black", alpha=0.6, lw=0),
      )
    elif heat_range is not None:
      heat_image = ax.imshow(
        spatial[t],
        cmap=HEAT_CMAP,
        alpha=HEAT_ALPHA if frames is not None else 1.0,
        extent=(0, 112, 112, 0),
        interpolation="bilinear",
        vmin=heat_range[0],
        vmax=heat_range[1],
      )
    if cue_region is not None and cues is not None and cues[t]:
      # Per-frame (T, 28, 28) uint8 regions (stress_faces 2) or one (112, 112) map.
      region = np.asarray(cue_region)
      region = (region[t] if region.ndim == 3 else region).astype(np.float32)
      if region.max() > 0:
        centres = (np.arange(region.shape[0]) + 0.5) * 112 / region.shape[0]
        ax.contour(
          centres,
          centres,
          region,
          levels=[0.5 * float(region.max())],
          colors="white",
          linewidths=0.9,
          linestyles="--",
        )
    ax.set_xlim(0, 112)
    ax.set_ylim(112, 0)
    label = f"{t}" if frame_times is None else f"{float(frame_times[t]):.2f}s"
    if temporal is not None and mask[t]:
      label += f"  w={float(temporal[t]):.2f}"
    ax.set_title(label, fontsize=7, pad=2)
    if cues is not None and cues[t]:
      for spine in ax.spines.values():
        spine.set_edgecolor(CUE_COLOUR)
        spine.set_linewidth(2.5)
  if heat_image is not None:
    bar = fig.colorbar(heat_image, cax=fig.add_subplot(grid[0, columns]))
    bar.ax.tick_params(labelsize=6)
    bar.set_label("spatial attention", fontsize=7)

  curve = fig.add_subplot(grid[rows, :columns])
  x = np.arange(num_frames)
  for t in np.flatnonzero(~mask):
    curve.axvspan(t - 0.5, t + 0.5, color="0.85", lw=0)
  if cues is not None:
    for t in np.flatnonzero(cues):
      curve.axvspan(t - 0.5, t + 0.5, color=CUE_COLOUR, alpha=0.15, lw=0)
  streams = (
    (temporal, "o-", IMAGE_COLOUR, 3, 1.4, "image stream"),
    (landmark_temporal, "s--", LANDMARK_COLOUR, 2.5, 1.1, "landmark stream"),
  )
  drawn = False
  for weights, style, colour, marker_size, width, label in streams:
    if weights is not None:
      curve.plot(
        x,
        np.where(mask, weights, np.nan),
        style,
        color=colour,
        ms=marker_size,
        lw=width,
        label=label,
      )
      drawn = True
  if mask.any():
    curve.axhline(1.0 / mask.sum(), color="0.4", ls=":", lw=1, label="uniform")
  handles, labels = curve.get_legend_handles_labels()
  if cues is not None and cues.any():
    handles.append(patches.Patch(color=CUE_COLOUR, alpha=0.3))
    labels.append("cue frames")
  if (~mask).any():
    handles.append(patches.Patch(color="0.85"))
    labels.append("no face")
  curve.legend(
    handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False
  )
  curve.set_xlim(-0.5, num_frames - 0.5)
  curve.set_ylim(bottom=0)
  curve.set_ylabel("temporal weight" if drawn else "", fontsize=8)
  if frame_times is not None:
    ticks = shown_frames(num_frames, 8)
    curve.set_xticks(ticks, [f"{float(frame_times[t]):.2f}" for t in ticks])
    curve.set_xlabel("time (s)", fontsize=8)
  else:
    curve.set_xticks(shown_frames(num_frames, 16))
    curve.set_xlabel("frame", fontsize=8)
  curve.tick_params(labelsize=7)
  if title:
    fig.suptitle(title, fontsize=9)
  return _save(fig, path)


def confusion_figure(path, matrices: dict, label_names) -> pathlib.Path:
  """One panel per named confusion matrix (rows true, columns predicted): count and row %."""
  plt = _pyplot()
  names = list(label_names)
  size = max(2.8, 0.75 * len(names) + 1.6)
  fig, axes = plt.subplots(1, len(matrices), figsize=(size * len(matrices), size), squeeze=False)
  for ax, (title, matrix) in zip(axes[0], matrices.items(), strict=True):
    matrix = np.asarray(matrix, np.float64)
    rows = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
      for j in range(len(names)):
        colour = "white" if share[i, j] > 0.55 else "black"
        ax.text(
          j,
          i,
          f"{int(matrix[i, j])}\n{100 * share[i, j]:.0f}%",
          ha="center",
          va="center",
          fontsize=8,
          color=colour,
        )
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(f"{title} (n={int(matrix.sum())})", fontsize=9)
  fig.tight_layout()
  return _save(fig, path)


def _series(rows, key):
  """(steps, values) of `key`, the last row winning where a resumed run repeated a step."""
  points = {}
  for row in rows:
    value = row.get(key)
    if isinstance(value, (int, float)):
      points[int(row["step"])] = float(value)
  steps = np.array(sorted(points))
  return steps, np.array([points[s] for s in steps])


def training_curves(path, rows) -> pathlib.Path:
  """Loss, accuracy / macro-F1 and learning rate against the step, from metrics.jsonl rows."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
  panels = [
    ("loss", [("train/loss", "train")]),
    (
      "accuracy",
      [
        ("train/accuracy", "train accuracy"),
        ("val/accuracy", "val accuracy"),
        ("val/macro_f1", "val macro-F1"),
        ("val/balanced_accuracy", "val balanced acc."),
      ],
    ),
    ("learning rate", [("train/learning_rate", "")]),
  ]
  for ax, (title, keys) in zip(axes, panels, strict=True):
    for key, label in keys:
      steps, values = _series(rows, key)
      if steps.size:
        style = "-" if key.startswith("train/") else "o-"
        ax.plot(steps, values, style, ms=3, lw=1.2, label=label or None)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if any(label for _, label in keys) and ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7, frameon=False)
  axes[1].set_ylim(-0.02, 1.02)
  axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
  fig.tight_layout()
  return _save(fig, path)


def timeline_figure(path, windows, label_names, title: str = "") -> pathlib.Path:
  """Per-window class probabilities of one video against time; windows without a face grey.

  windows: dicts with start_s, end_s and probabilities ({label: p}, or None without a face).
  Each window's probabilities are drawn at its centre.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(10, 3.2))
  centres = np.array([(w["start_s"] + w["end_s"]) / 2 for w in windows], np.float64)
  for w in windows:
    if w["probabilities"] is None:
      ax.axvspan(w["start_s"], w["end_s"], color="0.88", lw=0)
  for name in label_names:
    values = np.array(
      [np.nan if w["probabilities"] is None else w["probabilities"][name] for w in windows]
    )
    ax.plot(centres, values, "o-", ms=2.5, lw=1.3, label=name)
  if any(w["probabilities"] is None for w in windows):
    from matplotlib import patches

    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
      handles + [patches.Patch(color="0.88")],
      labels + ["no face"],
      fontsize=8,
      loc="upper left",
      bbox_to_anchor=(1.0, 1.0),
      frameon=False,
    )
  else:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
  ax.set_ylim(-0.02, 1.02)
  if len(windows):
    ax.set_xlim(min(w["start_s"] for w in windows), max(w["end_s"] for w in windows))
  ax.set_xlabel("time (s)", fontsize=9)
  ax.set_ylabel("probability", fontsize=9)
  ax.grid(alpha=0.3)
  if title:
    ax.set_title(title, fontsize=10)
  fig.tight_layout()
  return _save(fig, path)
