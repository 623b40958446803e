"""The rows of the BENCHMARKS.md table, as data (rendered by benchmarks/report.py).

Each Row names its figure, value and reference as str.format templates over:
  s  the sections of results.json (s[train_paper][step_s])
  r  the top-level results (r[mfu], r[goals]); m the machine description
  c  in per_config rows, one config's figures (see report._config_context)
A row appears when every dotted path in `needs` exists; `goal` is a template giving
a GOALS key (or ""). A template may instead be a function of that context, for the
few texts a template cannot say.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Row:
  figure: str | Callable
  value: str | Callable
  reference: str | Callable
  needs: tuple[str, ...]
  goal: str | Callable = ""
  per_config: bool = False  # one row for each of demo and paper


def _peak_reference(x) -> str:
  peak, default = x["s"].get("peak", {}), x["s"].get("peak_default", {})
  sizes = ", ".join(peak.get("float32_by_size", {}))
  text = f"jitted jnp.dot n x n (n = {sizes}), 2n^3/t, median, best n"
  if "float32_gflops" in default:
    text += (
      f"; stress_jax's XLA flags {peak.get('float32_gflops')}, jaxlib's {default['float32_gflops']}"
    )
  return text + f"; bf16 {peak.get('bfloat16_gflops')}"


def _torch_note(x) -> str:
  c = x["c"]
  if c["same_device"]:
    return ""
  return f"; not compared: torch ran on {c['torch']['device']}, JAX on {c['train']['backend']}"


def _breakdown(x) -> str:
  fractions = sorted(x["s"]["breakdown"]["fractions"].items(), key=lambda kv: -kv[1])
  return ", ".join(f"{k} {100 * v:.0f}%" for k, v in fractions)


def _op_brief(op: dict) -> str:
  """'transpose_copy_fusion f32[64,28,28,192] 496 ms' from an op_profile top_ops entry."""
  shape = re.search(r"= (\w+\[[\d,]*\])", op["hlo"])
  return f"{op['op'].rsplit('.', 1)[0]} {shape.group(1) if shape else ''} {op['ms']:.0f} ms"


def _profile_reference(x) -> str:
  default = x["s"]["profile"]["default"]
  top = "; ".join(_op_brief(op) for op in default["top_ops"][:4])
  return (
    f"XLA profile (benchmarks/op_profile.py): {default['busy_thread_ms_per_step']:.0f} ms of "
    "busy thread time per step in named ops; convolution work XLA:CPU runs in Eigen's "
    f"thread pool carries no op name and is not counted; largest: {top}"
  )


def _shares(x) -> str:
  kinds = x["s"]["profile"]["default"]["by_kind"].items()
  return ", ".join(f"{k} {100 * v['fraction']:.0f}%" for k, v in kinds)


def _sweep(x) -> str:
  return "; ".join(
    f"b{r['batch_clips']}: {r['jax_clips_per_s']:.2f} / {r['torch_clips_per_s']:.2f}"
    for r in x["s"]["batch_sweep"]["rows"]
  )


def _convs(x) -> str:
  convs = x["s"]["convs"]
  forward = convs.get("weighted_torch_forward_speedup")
  text = f"XLA at {1 / convs['weighted_torch_speedup']:.2f}x torch's speed"
  return text + (f" (XLA at {1 / forward:.2f}x torch's speed)" if forward else "")


def _slowest_conv(x) -> str:
  convs = x["s"]["convs"]
  worst = min(convs["layers"], key=lambda r: r["xla_gflops"])
  return (
    f"the model's 3x3 convs alone, {convs['frames']} images, weighted by count; slowest XLA "
    f"fwd+bwd layer {worst['shape']} {worst['xla_gflops']} vs {worst['torch_gflops']} "
    "GFLOP/s; torch channels_last, forward under inference_mode"
  )


def _layers(x) -> str:
  rows = x["s"]["layers"]["by_variant"]
  parts = [
    f"{name.removeprefix('stock_')} {row['step_vs_custom']:.2f}x / {row['frame_vs_custom']:.2f}x"
    for name, row in rows.items()
    if name != "custom"
  ]
  return "; ".join(parts)


def _layers_reference(x) -> str:
  layers = x["s"]["layers"]
  custom = layers["by_variant"]["custom"]
  kept = [k for k, v in layers["keep"].items() if v]
  return (
    "variant time / as-shipped time, paper step / streaming frame (>1: the hand-written "
    f"layer is faster); as shipped {custom['step_s']:.2f} s/step, {custom['frame_ms']:.1f} "
    f"ms/frame at batch {layers['per_device_batch_clips']}; >= {layers['keep_threshold']:.2f}x "
    f"in this run: {', '.join(kept) or 'none'} (benchmarks/layers.py)"
  )


def _landmark_row(size: str) -> Row:
  """One frame size's landmark NME: pipeline beside dlib's own on the same annotated frames."""
  base = f"s[landmarks][sizes][{size}]"
  return Row(
    f"landmark NME {size} (median, vs 68-point annotation)",
    f"{{{base}[truth][pipeline_median]:.4f}}, dlib's own {{{base}[truth][dlib_median]:.4f}}",
    f"benchmarks/landmark_bench.py: {{{base}[truth][both_found]}} annotated frames both found "
    f"(pipeline found {{{base}[truth][pipeline_found]}}, dlib {{{base}[truth][dlib_found]}} of "
    f"{{{base}[truth][frames]}}); pipeline vs dlib's points {{{base}[agreement][median]:.4f}} "
    f"over {{{base}[agreement][frames]}} frames of 7 real faces; single frames / folder / video "
    f"{{{base}[by_mode][frame][truth]}} / {{{base}[by_mode][folder][truth]}} / "
    f"{{{base}[by_mode][video][truth]}}",
    (f"s.landmarks.sizes.{size}",),
  )


LANDMARK_ROWS = tuple(
  _landmark_row(size) for size in ("176x144", "640x360", "1280x720", "1920x1080", "1024x1024")
) + (
  Row(
    "landmark NME: worst frame size vs annotation",
    "{r[landmark_truth_nme]:.4f}",
    "{s[landmarks][normalisation]}; faces at the frame centre, outer eye corners "
    "{s[landmarks][eye_span_of_short_side]} of the short side apart",
    ("r.landmark_truth_nme",),
    goal="landmark_truth_nme",
  ),
  Row(
    "landmark NME: largest gap to dlib's own",
    "{r[landmark_gap_nme]:.4f}",
    "largest difference of the pipeline's and dlib's medians on the same annotated frames, "
    "over the frame sizes",
    ("r.landmark_gap_nme",),
    goal="landmark_gap_nme",
  ),
)


ROWS = (
  Row(
    "float32 matmul peak (GFLOP/s)",
    "{r[matmul_peak_gflops]:.1f}",
    _peak_reference,
    ("s.peak.float32_gflops",),
  ),
  Row(
    "training, {c[config]} config: clips/s (frames/s)",
    "{c[train][clips_per_s]:.2f} ({c[train][frames_per_s]:.1f})",
    "batch {c[train][per_device_batch_clips]} x {c[train][frames_per_clip]} frames, median of "
    "{c[train_runs]} steps after {r[settings][train_warmup]} warm-up; "
    "{c[train][step_gflop]} GFLOP/step (XLA cost analysis)",
    ("c.train.clips_per_s",),
    per_config=True,
  ),
  Row(
    "training MFU, {c[config]} config",
    "{c[mfu]:.1%} ({c[train][achieved_gflops]:.1f} GFLOP/s)",
    "step FLOPs / step time / f32 matmul peak {c[mfu_peak]} GFLOP/s (highest of this run)",
    ("c.train.clips_per_s", "c.mfu"),
    goal="{c[mfu_key]}",
    per_config=True,
  ),
  Row(
    "training, {c[config]} config, bfloat16 compute: clips/s; MFU; x the float32 step",
    "{c[bf16][clips_per_s]:.2f}; {c[bf16_mfu]:.1%}; {c[bf16_speedup]:.2f}x",
    "model.dtype=bfloat16 (parameters and optimizer float32), batch "
    "{c[bf16][per_device_batch_clips]} x {c[bf16][frames_per_clip]} frames; MFU against the "
    "bfloat16 matmul peak {c[bf16_mfu_peak]} GFLOP/s",
    ("c.bf16.clips_per_s",),
    per_config=True,
  ),
  Row(
    "JAX / PyTorch training, {c[config]}",
    "{c[paired_prefix]}{c[train_ratio]:.2f} across sections ({c[train][clips_per_s]:.2f} vs "
    "{c[torch][clips_per_s]:.2f} clips/s)",
    lambda x: _FORMAT_TORCH.format(**x["c"]) + _torch_note(x),
    ("c.train.clips_per_s", "c.torch.clips_per_s"),
    goal=lambda x: "torch_train_ratio" if x["c"]["paper"] else "",
    per_config=True,
  ),
  Row(
    "JAX / PyTorch inference (whole window), {c[config]}",
    "{c[infer_ratio]:.2f} ({c[train][infer_clips_per_s]:.2f} vs "
    "{c[torch][infer_clips_per_s]:.2f} clips/s)",
    lambda x: (
      f"batch {x['c']['train']['infer_batch_clips']}, eval mode; torch inference_mode, "
      f"{x['c']['torch']['infer_layout']}" + _torch_note(x)
    ),
    ("c.train.infer_clips_per_s", "c.torch.infer_clips_per_s"),
    goal=lambda x: "torch_infer_ratio" if x["c"]["paper"] else "",
    per_config=True,
  ),
  Row(
    "paper step time by part, pieces timed alone",
    _breakdown,
    "jitted pieces timed alone (sum {s[breakdown][sum_of_pieces_s]} s vs fused step "
    "{s[breakdown][full_step_s]} s)",
    ("s.breakdown.pieces",),
  ),
  Row(
    "XLA:CPU flags: stress_jax's vs jaxlib's default",
    "paper step {s[train_paper][step_s]:.2f} vs {s[xla_default][step_s]:.2f} s "
    "({r[xla_default_slowdown]:.2f}x); one streaming frame {s[infer][encode_one_frame_ms]:.1f} "
    "vs {s[xla_default][encode_one_frame_ms]:.1f} ms",
    "stress_jax/xla_cpu.py turns off jaxlib's YNNPACK convolution fusions (XLA_FLAGS here: "
    "`{m[xla_flags]}`); the default measured with STRESS_JAX_KEEP_XLA_FLAGS=1, same batch",
    ("s.xla_default.step_s", "s.train_paper.step_s"),
  ),
  Row(
    "plain-jit reference, paper architecture: MFU (clips/s); our step's speed-up",
    "{r[plain_jit_mfu]:.1%} ({s[plain][clips_per_s]:.2f}); {r[speedup_over_plain_jit]:.2f}x",
    "benchmarks/plain_reference.py: stock nn.Conv/nn.BatchNorm/nn.max_pool, optax AdamW, one "
    "jax.jit; batch {s[plain][per_device_batch_clips]} x 48 frames, {s[plain][step_gflop]} "
    "GFLOP/step",
    ("s.plain.step_s", "r.plain_jit_mfu"),
  ),
  Row(
    "hand-written vs stock layers (stock time / ours): step / streaming frame",
    _layers,
    _layers_reference,
    ("s.layers.by_variant",),
  ),
  Row(
    "paper step, named XLA ops by kind (share of their time)",
    _shares,
    _profile_reference,
    ("s.profile.default",),
  ),
  Row(
    "paper training vs per-device batch: JAX / torch clips/s",
    _sweep,
    "same step as above at batch 1, 2, 4 clips of 48 frames (torch channels_last)",
    ("s.batch_sweep.rows",),
  ),
  Row(
    "3x3 convs, XLA vs torch: fwd+bwd (forward alone)",
    _convs,
    _slowest_conv,
    ("s.convs.layers",),
  ),
  Row(
    "input pipeline, {c[config]}: clips/s (x step consumption)",
    "{c[pipeline][clips_per_s]:.1f} ({c[pipeline_ratio]:.1f}x)",
    "grain train_dataset, {c[pipeline][source]}, batch {c[pipeline][batch_clips]}, "
    "{c[pipeline][num_workers]} workers / {c[pipeline][read_threads]} read threads",
    ("c.pipeline.clips_per_s",),
    goal="pipeline_ratio",
    per_config=True,
  ),
  Row(
    "peak RSS, paper training",
    lambda x: f"{x['s']['train_paper']['peak_rss_mb'] / 1024:.2f} GiB",
    "ru_maxrss of the training subprocess, batch {s[train_paper][per_device_batch_clips]}",
    ("s.train_paper.peak_rss_mb",),
  ),
  Row(
    "compiles after the first step",
    "{s[train_paper][compiles_during_timed_steps]}",
    "XLA backend compile events during the timed steps (jit cache entries "
    "{s[train_paper][jit_cache_entries]})",
    ("s.train_paper.compiles_during_timed_steps",),
  ),
  Row(
    "streaming inference, paper: frames/s",
    "{s[infer][frames_per_s]:.1f}",
    "1 crop in -> encode 1 frame + classify 48-frame window -> probabilities on host",
    ("s.infer.frames_per_s",),
    goal="stream_fps",
  ),
  Row(
    "streaming latency p50 / p95 (ms)",
    "{s[infer][latency_ms_p50]:.2f} / {s[infer][latency_ms_p95]:.2f}",
    "per frame, {s[infer][frames]} frames (separate encode/classify calls: "
    "{s[infer][separate_calls_frames_per_s]:.1f} frames/s)",
    ("s.infer.frames_per_s",),
    goal="stream_p95_ms",
  ),
  Row(
    "end-to-end streaming (decode + dlib + model)",
    "{s[e2e][frames_per_s]:.1f} frames/s",
    "{s[e2e][video]}; face pipeline alone {s[e2e][face_pipeline_only_frames_per_s]:.1f}, "
    "without overlap {s[e2e][frames_per_s_no_overlap]:.1f}",
    ("s.e2e.frames_per_s",),
    goal="e2e_fps",
  ),
  Row(
    "video ingest: frames/s",
    "{s[ingest][frames_per_s]:.1f}",
    "benchmarks/ingest_bench.py, {s[ingest][video]}; with JPEG + clips "
    "{s[ingest][frames_per_s_ingest]:.1f}",
    ("s.ingest.frames_per_s",),
  ),
  Row(
    "paper step: end to end / frozen trunk / cached features (s)",
    "{s[frozen_trunk][seconds][end_to_end]:.2f} / {s[frozen_trunk][seconds][frozen_trunk]:.2f} / "
    "{s[frozen_trunk][seconds][cached_features]:.2f}",
    "benchmarks/frozen_trunk.py: {s[frozen_trunk][clips]} clips x "
    "{s[frozen_trunk][frames_per_clip]} frames, median of {s[frozen_trunk][repeats]}, one process; "
    "XLA FLOP ratios {s[frozen_trunk][flop_ratio][frozen_trunk]}x / "
    "{s[frozen_trunk][flop_ratio][cached_features]}x",
    ("s.frozen_trunk.seconds",),
  ),
  Row(
    "frozen trunk: speed-up over end to end",
    "{r[frozen_trunk_speedup]:.2f}x",
    "model.freeze_trunk=True: no trunk gradient, no trunk optimizer state",
    ("r.frozen_trunk_speedup",),
    goal="frozen_trunk_speedup",
  ),
  Row(
    "cached features: speed-up over end to end",
    "{r[cached_features_speedup]:.2f}x",
    "model.input_mode=features: the same head on stored 7x7x256 maps",
    ("r.cached_features_speedup",),
    goal="cached_features_speedup",
  ),
  Row(
    "low-resolution video: frames with a face",
    "QCIF {s[ingest][sizes][qcif_176x144][face_fraction]:.3f}, "
    "QVGA {s[ingest][sizes][qvga_320x240][face_fraction]:.3f}",
    "default settings; detection scale QCIF {s[ingest][sizes][qcif_176x144][detect_scale]}, "
    "QVGA {s[ingest][sizes][qvga_320x240][detect_scale]}; "
    "{s[ingest][sizes][qcif_176x144][frames_per_s]:.1f} / "
    "{s[ingest][sizes][qvga_320x240][frames_per_s]:.1f} frames/s",
    ("r.lowres_face_fraction",),
    goal="lowres_face_fraction",
  ),
  Row(
    "1024x1024 MJPEG ingest: frames/s (2 workers)",
    "{r[ingest_1024_fps]:.1f}",
    "UBFC-Phys-like frames; one process {s[ingest][sizes][square_1024_mjpeg][frames_per_s]:.1f} "
    "frames/s, {s[ingest][sizes][square_1024_mjpeg][cpu_ms_per_frame]} CPU ms/frame, "
    "detection scale {s[ingest][sizes][square_1024_mjpeg][detect_scale]}",
    ("r.ingest_1024_fps",),
    goal="ingest_1024_fps",
  ),
  Row(
    "Yonsei build: frames/s",
    "{s[yonsei][local_frames_per_s]:.1f}",
    "benchmarks/yonsei_bench.py, {s[yonsei][frames]} generated frames, {s[yonsei][workers]} "
    "workers (full database projected {s[yonsei][local_projected_full_h]} h)",
    ("s.yonsei.local_frames_per_s",),
  ),
  *LANDMARK_ROWS,
)

_FORMAT_TORCH = (
  "torch {torch[torch_version]} eager on {torch[device]}, {torch[threads]} threads, "
  "{torch[train_layout]}, same model ({torch[params]:,} params) and AdamW step"
)


def machine_line(results: dict) -> str:
  """The sentence above the table: machine, versions, date, load during the run."""
  m, sections = results["machine"], results["sections"]
  loads = [
    v.get("load_average_1m_before")
    for v in sections.values()
    if isinstance(v, dict) and v.get("load_average_1m_before") is not None
  ]
  line = (
    f"Machine: {m['cpu_model']}, {m['cpu_cores']} cores ({', '.join(m['cpu_isa'])}), "
    f"{m['memory_gb']} GiB; Python {m['python']}, jax/jaxlib {m['jax']}, flax {m['flax']}, "
    f"torch {m['torch']}, numpy {m['numpy']}. Run {m['date']}"
    f"{' (--quick)' if results['quick'] else ''}; 1-minute load average at section starts "
    f"{min(loads, default=0):.2f}-{max(loads, default=0):.2f}."
  )
  for merge in results.get("merged", []):
    other = merge["machine"]
    line += (
      f" Sections {', '.join(merge['sections'])} come from a later run, {other['date']} "
      f"(`{merge['command']}`, {other['cpu_model']}, {', '.join(other['cpu_isa'])})."
    )
  peak = sections.get("peak", {})
  if peak.get("backend", "cpu") != "cpu":
    line += (
      f" JAX ran on {peak['device_count']} x {peak['device_kind']} ({peak['backend']}): "
      "matmul peaks and MFU are that device's."
    )
  return line
