"""results.json -> top-level figures, goal checks and the BENCHMARKS.md table.

`summarise` derives the figures that combine sections (MFU against the best peak,
JAX/torch ratios, pipeline headroom) and checks them against GOALS. `render_table`
turns the declarative rows of benchmarks/rows.py into markdown: a row is shown when
the figures it names exist, and a missing figure inside a shown row prints as n/a.
"""

from __future__ import annotations

import pathlib
import re
import string

from benchmarks import rows as row_specs

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKDOWN = ROOT / "BENCHMARKS.md"
TABLE_START, TABLE_END = "<!-- results-table:start -->", "<!-- results-table:end -->"
CONFIGS = ("demo", "paper")

GOALS_FILE = pathlib.Path(__file__).with_name("goals.tsv")


def load_goals(path=GOALS_FILE) -> dict[str, tuple[float, str]]:
  """key -> (target, text): the targets the benchmarks are held to, one table for all."""
  goals = {}
  for line in pathlib.Path(path).read_text().splitlines():
    if line.strip() and not line.startswith("#"):
      key, target, text = line.split("\t")
      goals[key] = (float(target), text)
  return goals


GOALS = load_goals()
# Goal keys with these endings are upper bounds (latencies, landmark errors).
LOWER_IS_BETTER = ("_ms", "_nme")


def same_device(torch_device: str, jax_backend: str) -> bool:
  """Whether torch (cpu/cuda) and JAX (cpu/gpu/tpu) ran on the same kind of device."""
  return (torch_device == "cpu") == (jax_backend == "cpu")


def _ratio(numerator, denominator, digits=3):
  return round(numerator / denominator, digits) if numerator and denominator else None


def _mfu(top: dict, sections: dict, key: str, section: str, best_peak: float) -> None:
  train = sections.get(section, {})
  achieved, own_peak = train.get("achieved_gflops"), train.get("matmul_peak_gflops")
  top[key] = None
  if achieved and own_peak:
    # Against the highest peak seen in this run (the peak sections' or the worker's own):
    # a load spike during one peak measurement cannot inflate the MFU.
    peak = max(best_peak, own_peak)
    top[key] = round(achieved / peak, 4)
    top[f"{key}_peak_gflops"] = peak


def summarise(sections: dict) -> dict:
  """Top-level figures and goal checks from the sections that ran."""

  def get(section, key):
    value = sections.get(section, {})
    return value.get(key) if isinstance(value, dict) else None

  top: dict = {}
  # stress_jax's XLA:CPU flags slow the largest plain matmuls down, so the peak is the
  # best under either set of flags, not only ours.
  peaks = {
    dtype: max(get("peak", f"{dtype}_gflops") or 0.0, get("peak_default", f"{dtype}_gflops") or 0.0)
    for dtype in ("float32", "bfloat16")
  }
  for config in CONFIGS:
    _mfu(
      top, sections, "mfu" if config == "paper" else "demo_mfu", f"train_{config}", peaks["float32"]
    )
    bf16 = f"train_{config}_bf16"
    if get(bf16, "achieved_gflops"):
      _mfu(top, sections, f"{config}_bf16_mfu", bf16, peaks["bfloat16"])
      top[f"{config}_bf16_speedup"] = _ratio(get(f"train_{config}", "step_s"), get(bf16, "step_s"))
  # A torch build without CUDA on a GPU host would compare a GPU with a CPU: no ratio.
  jax_backend = get("peak", "backend") or "cpu"
  ratios = {}
  for config in CONFIGS:
    if not same_device(get(f"torch_{config}", "device") or "cpu", jax_backend):
      continue
    for kind, key in (("train", "clips_per_s"), ("infer", "infer_clips_per_s")):
      ratio = _ratio(get(f"train_{config}", key), get(f"torch_{config}", key))
      if ratio:
        ratios[f"{kind}_{config}"] = ratio
  # The sections run minutes apart and this machine's speed drifts between them; the
  # batch sweep times both frameworks back to back in one process, so its row at the
  # paper batch is the headline ratio when it ran.
  paired = [
    r
    for r in sections.get("batch_sweep", {}).get("rows", [])
    if r["batch_clips"] == get("train_paper", "per_device_batch_clips")
    and same_device(r.get("torch_device", "cpu"), jax_backend)
  ]
  if paired:
    ratios["train_paper_paired"] = paired[0]["ratio"]
  top["torch_ratios"] = ratios
  top["torch_train_ratio"] = ratios.get("train_paper_paired", ratios.get("train_paper"))
  top["torch_infer_ratio"] = ratios.get("infer_paper")
  pipeline = {}
  for config in CONFIGS:
    ratio = _ratio(
      get(f"pipeline_{config}", "clips_per_s"), get(f"train_{config}", "clips_per_s"), 1
    )
    if ratio:
      pipeline[config] = ratio
  top["pipeline_ratios"] = pipeline
  top["pipeline_ratio"] = min(pipeline.values()) if pipeline else None
  top["stream_fps"] = get("infer", "frames_per_s")
  top["stream_p50_ms"] = get("infer", "latency_ms_p50")
  top["stream_p95_ms"] = get("infer", "latency_ms_p95")
  top["e2e_fps"] = get("e2e", "frames_per_s")
  plain_gflops, plain_peak = get("plain", "achieved_gflops"), get("plain", "matmul_peak_gflops")
  if plain_gflops and plain_peak:
    top["plain_jit_mfu"] = round(plain_gflops / max(peaks["float32"], plain_peak), 4)
    if get("plain", "per_device_batch_clips") == get("train_paper", "per_device_batch_clips"):
      top["speedup_over_plain_jit"] = _ratio(get("plain", "step_s"), get("train_paper", "step_s"))
  if get("train_paper", "step_s") and get("xla_default", "step_s"):
    top["xla_default_slowdown"] = _ratio(get("xla_default", "step_s"), get("train_paper", "step_s"))
  top["peak_rss_mb"] = get("train_paper", "peak_rss_mb")
  top["compiles_after_first_step"] = get("train_paper", "compiles_during_timed_steps")
  top["ingest_fps"] = get("ingest", "frames_per_s")
  speedups = get("frozen_trunk", "speedup") or {}
  top["frozen_trunk_speedup"] = speedups.get("frozen_trunk")
  top["cached_features_speedup"] = speedups.get("cached_features")
  sizes = get("ingest", "sizes") or {}
  low = [sizes[k]["face_fraction"] for k in ("qcif_176x144", "qvga_320x240") if k in sizes]
  top["lowres_face_fraction"] = min(low) if low else None
  top["ingest_1024_fps"] = sizes.get("square_1024_mjpeg", {}).get("ingest_frames_per_s_2_workers")
  top["yonsei_build_fps"] = get("yonsei", "local_frames_per_s")
  top["landmark_truth_nme"] = get("landmarks", "truth_nme")
  top["landmark_gap_nme"] = get("landmarks", "gap_nme")
  top["matmul_peak_gflops"] = peaks["float32"] or None
  goals = {}
  for key, (target, text) in GOALS.items():
    value = top.get(key)
    if value is None:
      continue
    passed = value <= target if key.endswith(LOWER_IS_BETTER) else value >= target
    goals[key] = {"value": value, "goal": target, "pass": bool(passed), "text": text}
  top["goals"] = goals
  return top


class _Formatter(string.Formatter):
  """str.format where a missing key reads as None and None prints as n/a."""

  def get_value(self, key, args, kwargs):
    return kwargs.get(key) if isinstance(key, str) else args[key]

  def get_field(self, field_name, args, kwargs):
    first = re.match(r"\w*", field_name).group(0)
    obj = self.get_value(first, args, kwargs)
    for key in re.findall(r"\[([^\]]*)\]", field_name):
      obj = obj.get(key) if isinstance(obj, dict) else None
    return obj, first

  def format_field(self, value, format_spec):
    if value is None:
      return "n/a"
    return super().format_field(value, format_spec)


_FORMAT = _Formatter()


def _lookup(context: dict, path: str):
  value = context
  for key in path.split("."):
    value = value.get(key) if isinstance(value, dict) else None
  return value


def _text(spec, context: dict) -> str:
  return spec(context) if callable(spec) else _FORMAT.format(spec, **context)


def _config_context(results: dict, config: str) -> dict:
  """The per-config names rows.PER_CONFIG rows use: {c[train][step_s]}, {c[mfu]}..."""
  s = results["sections"]
  ratios = results.get("torch_ratios", {})
  mfu_key = "mfu" if config == "paper" else "demo_mfu"
  train, torch = s.get(f"train_{config}", {}), s.get(f"torch_{config}", {})
  paired = ratios.get(f"train_{config}_paired")
  return {
    "config": config,
    "paired_prefix": f"{paired:.2f} paired; " if paired else "",
    "train": train,
    "torch": torch,
    "train_runs": len(train.get("step_s_runs", [])),
    "bf16": s.get(f"train_{config}_bf16", {}),
    "pipeline": s.get(f"pipeline_{config}", {}),
    "mfu_key": mfu_key,
    "mfu": results.get(mfu_key),
    "mfu_peak": results.get(f"{mfu_key}_peak_gflops"),
    "bf16_mfu": results.get(f"{config}_bf16_mfu"),
    "bf16_mfu_peak": results.get(f"{config}_bf16_mfu_peak_gflops"),
    "bf16_speedup": results.get(f"{config}_bf16_speedup"),
    "train_ratio": ratios.get(f"train_{config}"),
    "infer_ratio": ratios.get(f"infer_{config}"),
    "pipeline_ratio": results.get("pipeline_ratios", {}).get(config),
    "same_device": same_device(torch.get("device", "cpu"), train.get("backend", "cpu")),
    "paper": config == "paper",
  }


def _goal_cells(goals: dict, key: str) -> tuple[str, str]:
  if not key or key not in goals:
    return "", ""
  goal = goals[key]
  comparator = "<=" if key.endswith(LOWER_IS_BETTER) else ">="
  return f"{comparator} {goal['goal']:g}", "pass" if goal["pass"] else "**miss**"


def table_rows(results: dict) -> list[tuple[str, str, str, str, str]]:
  """(figure, value, reference, goal, pass/miss) for every row whose figures exist."""
  base = {"s": results["sections"], "r": results, "m": results.get("machine", {})}
  out = []
  for spec in row_specs.ROWS:
    configs = CONFIGS if spec.per_config else (None,)
    for config in configs:
      context = dict(base, c=_config_context(results, config)) if config else base
      if not all(_lookup(context, path) is not None for path in spec.needs):
        continue
      goal, verdict = _goal_cells(results.get("goals", {}), _text(spec.goal, context))
      out.append(
        (_text(spec.figure, context), _text(spec.value, context), _text(spec.reference, context))
        + (goal, verdict)
      )
  return out


def render_table(results: dict) -> str:
  header = "| figure | value | reference / method | goal | pass/miss |\n|---|---|---|---|---|"
  lines = ["| " + " | ".join(cells) + " |" for cells in table_rows(results)]
  text = "\n".join([row_specs.machine_line(results), "", header, *lines])
  sections = results["sections"]
  errors = [f"- {k}: {v['error'].splitlines()[-1]}" for k, v in sections.items() if "error" in v]
  if errors:
    text += "\n\nSections that failed:\n" + "\n".join(errors)
  return text


def update_markdown(results: dict, path: pathlib.Path = MARKDOWN) -> None:
  """Replaces the table between the results-table markers (or starts the file)."""
  block = f"{TABLE_START}\n{render_table(results)}\n{TABLE_END}"
  if path.exists():
    text = path.read_text()
    if TABLE_START in text and TABLE_END in text:
      before, rest = text.split(TABLE_START, 1)
      _, after = rest.split(TABLE_END, 1)
      path.write_text(before + block + after)
      return
  path.write_text(f"# Benchmarks\n\n{block}\n")
