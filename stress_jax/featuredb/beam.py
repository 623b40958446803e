"""Apache Beam steps of a feature-database build, and merging of the per-split reports.

The same `plan_recording` / `make_clip` functions as the local build run inside
FlatMaps; problems and stats travel on a tagged side output and are merged per split.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stress_jax import jsonio
from stress_jax.featuredb.clips import ClipPlan, ClipSpec, chunk_plans, make_clip, plan_recording
from stress_jax.featuredb.layout import Recording, merge_stats

BEAM_REPORT_TAG = "report"


def beam_plan(recording: Recording, spec: ClipSpec, clips_per_chunk: int):
  """Beam FlatMap: a recording -> its work units, plus (problems, stats) on the report tag."""
  from apache_beam.pvalue import TaggedOutput

  plans, problems, stats = plan_recording(recording, spec)
  yield TaggedOutput(BEAM_REPORT_TAG, (problems, stats))
  yield from chunk_plans(plans, clips_per_chunk)


def beam_clips(chunk: tuple[ClipPlan, ...], spec: ClipSpec):
  """Beam FlatMap: a work unit -> (key, record) pairs, plus (problems, stats) on the report tag."""
  from apache_beam.pvalue import TaggedOutput

  problems, stats = [], {}
  for plan in chunk:
    record, clip_problems, clip_stats = make_clip(plan, spec)
    problems.extend(clip_problems)
    merge_stats(stats, clip_stats)
    if record is not None:
      yield plan.key, record
  yield TaggedOutput(BEAM_REPORT_TAG, (problems, stats))


def merge_reports(
  reports: Iterable[tuple[list[dict[str, str]], dict[str, Any]]],
) -> tuple[list[dict[str, str]], dict[str, Any]]:
  problems, stats = [], {}
  for part_problems, part_stats in reports:
    problems.extend(part_problems)
    merge_stats(stats, part_stats)
  problems.sort(key=lambda p: (p["kind"], p["path"], p["detail"]))
  return problems, stats


def write_report_part(reports, path: str) -> None:
  """Writes the merged (problems, stats) of one split as JSON (local path or any epath URL)."""
  from etils import epath

  problems, stats = merge_reports(reports)
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  target.write_text(jsonio.dumps({"problems": problems, "stats": stats}, sort_keys=True))
