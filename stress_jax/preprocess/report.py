"""`ingest_report.json`: every source's status and counts, written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from stress_jax import jsonio

OK = "ok"  # clips written
NO_CLIPS = "no_clips"  # faces found, but no window had enough of them (or too short)
NO_FACE = "no_face"  # decoded, but no frame showed a face
EMPTY = "empty"  # zero frames (zero-length file, empty folder, segment past the end)
CORRUPT = "corrupt"  # the decoder failed (garbage, truncated, broken stream)
ERROR = "error"  # anything else went wrong while processing this source


def build_report(manifest, config, results: Sequence):
  totals = dict(sources=len(results))
  for status in (OK, NO_CLIPS, NO_FACE, EMPTY, CORRUPT, ERROR):
    totals[status] = sum(r.status == status for r in results)
  for key in ("frames_decoded", "frames", "frames_with_face", "clips_written", "clips_dropped"):
    totals[key] = int(sum(getattr(r, key) for r in results))
  splits: dict[str, int] = {}
  for r in results:
    splits[r.split] = splits.get(r.split, 0) + r.clips_written
  return dict(
    manifest=str(manifest.path),
    label_names=list(manifest.label_names),
    config=config.to_dict(),
    totals=totals,
    splits={name: count for name, count in sorted(splits.items()) if count},
    subjects_without_clips=sorted(
      {manifest.splits[name] for name, count in splits.items() if count == 0}
    ),
    sources=[r.report_entry() for r in results],
  )


def write_report(path: str | os.PathLike, report: dict) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(jsonio.dumps(report, indent=2) + "\n")
  # Readers never see a half-written report.
  os.replace(tmp, path)
  return path
