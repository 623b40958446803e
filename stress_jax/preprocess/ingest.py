"""Manual dir of videos + manifest.csv -> per-subject clip examples and `ingest_report.json`.

This is all the `stress_faces/video` TFDS builder calls (`split_generators`). Order:

1. Read and check the manifest. Any bad row stops here, before a frame is decoded,
   with one error naming every bad row (see `manifest.py`).
2. Process every source in worker processes (a tqdm bar counts them): decode,
   follow and align the face, cut clips. Each worker writes its frames (as JPEG
   bytes, ready for the record) and clip starts to a scratch `.npz` and returns a
   small summary, so neither memory nor the pipe between processes grows with
   video length. A source that cannot be decoded, has no frames, or never shows a
   face is skipped and its status recorded; it never fails the build.
3. Write `ingest_report.json` (every source: status, frames decoded, frames
   processed, frames with a face, clips written and dropped, and under `faces`
   whom it followed: faces the detector found at the start, the followed box, the
   others' boxes and the rule, PreprocessConfig.follow or the row's `follow`).
4. Return one example generator per subject with at least one clip.

Under TFDS, `data_dir` is the builder's incomplete (temporary) version folder: the
report and the scratch files live there, TFDS renames the folder to the real one
only after every split is written, and deletes it if the build fails. So a failed
build leaves no folder that looks like a dataset, and a finished one has its
report next to `dataset_info.json`. Scratch files are removed as each subject's
split is consumed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import shutil
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stress_jax.faces.landmarks import fill_missing_landmarks
from stress_jax.preprocess import clips as clips_lib
from stress_jax.preprocess import decode
from stress_jax.preprocess.config import PreprocessConfig

# clip_features and iter_examples are part of this module's interface (the builder, tests).
from stress_jax.preprocess.examples import (  # noqa: F401
  Scratch,
  clip_features,
  iter_examples,
  set_label_names,
  split_examples,
)
from stress_jax.preprocess.manifest import Manifest, Row, read_manifest
from stress_jax.preprocess.report import (
  CORRUPT,
  EMPTY,
  ERROR,
  NO_CLIPS,
  NO_FACE,
  OK,
  build_report,
  write_report,
)

REPORT_NAME = "ingest_report.json"
SCRATCH_NAME = "_ingest_scratch"

log = logging.getLogger(__name__)

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put your recordings in one folder and pass it as --manual_dir. Next to the media,
a `manifest.csv` (UTF-8, header row) lists one source per row:

  path,subject,label,session,start_s,end_s
  p01/reading.mp4,p01,calm,reading,,
  p01/interview.mov,p01,stress,interview,5,305
  p02/frames_interview,p02,stress,interview,,

  path     a video file (anything FFmpeg reads: mp4, mov, mkv, avi, ...) or a
           folder of frame images (sorted by name, read at `image_fps`),
           relative to the manual dir, '/'-separated; no '..', not absolute
  subject  the person; each subject becomes one split `s_<subject>` (characters
           other than A-Z a-z 0-9 _ become '_'; ids that then collide are refused)
  label    the class; the label names are the sorted unique labels of the file
  session  optional, free text
  start_s, end_s  optional segment of the source in seconds
  follow   optional: whom to follow when several faces are in view: prominent
           (default: the largest, most central), largest, central, or
           region:x0,y0,x1,y1 (fractions of the frame; the largest face inside)

The manifest is checked as a whole before any video is read: missing files,
unknown labels, duplicate rows or paths outside the folder stop the build with
one message listing every bad line. Sources that cannot be decoded, are empty or
show no face are skipped; `ingest_report.json` in the dataset's version folder
lists every source with its status, frames read, frames with a face, clips
written or dropped, and whom it followed: how many faces were in view at the start,
the followed face's box and the rule that chose it.
"""


class IngestError(RuntimeError):
  """The build cannot produce a dataset (e.g. no source gave a single clip)."""


@dataclasses.dataclass
class SourceResult:
  line: int
  path: str
  video: str
  subject: str
  label: str
  session: str
  split: str
  status: str = ERROR
  detail: str = ""  # why the source gave no clips
  frames_decoded: int = 0
  frames: int = 0
  frames_with_face: int = 0
  detect_scale: float = 0.0  # full-frame detection scale used (see tracker.detection_scales)
  clips_written: int = 0
  clips_dropped: int = 0
  # Whom the source's clips follow: faces in view at the start, the followed face's
  # box, the others' boxes and the rule (tracker.FaceTracker.start_summary).
  faces: dict = dataclasses.field(default_factory=dict)
  seconds: float = 0.0
  scratch: str = ""  # the npz with this source's clips, while it exists

  @classmethod
  def for_row(cls, row: Row) -> SourceResult:
    """The result of a manifest row before it is processed: who, what and where from."""
    named_alike = ("line", "path", "subject", "label", "session", "split")
    return cls(video=row.video_id, **{name: getattr(row, name) for name in named_alike})

  def report_entry(self) -> dict:
    entry = dataclasses.asdict(self)
    entry.pop("scratch")
    entry["seconds"] = round(self.seconds, 3)
    return entry


# ---------------------------------------------------------------- one source


_WORKER_PIPELINE = None


def _pipeline(config: PreprocessConfig):
  global _WORKER_PIPELINE
  if _WORKER_PIPELINE is None or _WORKER_PIPELINE.config != config:
    from stress_jax.preprocess.faces import FacePipeline

    _WORKER_PIPELINE = FacePipeline(config)
  return _WORKER_PIPELINE


def _init_worker(config_dict: dict):
  from stress_jax.workers import die_with_parent

  die_with_parent()  # a killed build leaves no worker behind
  _pipeline(PreprocessConfig(**config_dict))


def process_source(
  source: str | os.PathLike,
  config: PreprocessConfig,
  scratch_file: str | os.PathLike | None,
  *,
  start_s: float | None = None,
  end_s: float | None = None,
) -> dict:
  """Runs the face pipeline over one source and stores its clips in `scratch_file`.

  Returns the counts and status for the report (never raises for a bad source).
  The npz holds: jpeg_data (all JPEG bytes concatenated), jpeg_offsets (N+1),
  landmarks (N, 68, 2) with gaps filled, has_face (N,), source_index (N,),
  clip_starts (C,). Without clips no file is written.
  """
  from stress_jax.faces import records

  started = time.perf_counter()
  pipeline = _pipeline(config)
  pipeline.tracker = None  # a source that never yields a frame must not report the last one's
  stats = decode.DecodeStats()
  summary = dict(status=ERROR, detail="", frames_decoded=0, frames=0, frames_with_face=0)
  summary.update(clips_written=0, clips_dropped=0, scratch="")
  jpegs: list[bytes] = []
  landmarks, has_face, source_index = [], [], []
  blank = None  # one encoded black crop serves every frame without a face
  try:
    for face in pipeline.iter_video(source, start_s=start_s, end_s=end_s, stats=stats):
      if face.has_face:
        jpegs.append(records.encode_jpeg(face.crop))
      else:
        blank = blank or records.encode_jpeg(face.crop)
        jpegs.append(blank)
      landmarks.append(face.landmarks)
      has_face.append(face.has_face)
      source_index.append(face.source_index)
  except decode.EmptySourceError as err:
    summary.update(status=EMPTY, detail=str(err))
  except decode.DecodeError as err:
    summary.update(status=CORRUPT, detail=str(err))
  except Exception as err:  # noqa: BLE001  one bad source must not end the build
    detail = traceback.format_exception_only(type(err), err)[-1].strip()
    summary.update(status=ERROR, detail=f"{detail} (while processing {source})")
  summary.update(
    frames_decoded=stats.frames_decoded, frames=len(has_face), frames_with_face=int(sum(has_face))
  )
  if pipeline.tracker is not None and has_face:
    summary["detect_scale"] = round(pipeline.tracker.detect_scale, 4)
  if pipeline.tracker is not None:
    summary["faces"] = pipeline.tracker.start_summary
  if summary["detail"]:
    # A partly read source is left out entirely: the frames that did decode may be
    # garbage from the damaged part, and the report says what happened.
    summary["seconds"] = time.perf_counter() - started
    return summary
  has_face = np.asarray(has_face, bool)
  starts, dropped = clips_lib.clip_starts(
    has_face, config.num_frames, config.stride, config.min_valid_fraction
  )
  summary.update(clips_written=len(starts), clips_dropped=dropped)
  if has_face.size == 0:
    summary.update(status=EMPTY, detail="no frames in the source (or in its segment)")
  elif not has_face.any():
    summary.update(status=NO_FACE, detail="no frame showed a face")
  elif len(starts) == 0:
    summary.update(
      status=NO_CLIPS,
      detail=f"no {config.num_frames}-frame window had {config.min_valid_fraction:g} of its "
      "frames with a face",
    )
  else:
    summary["status"] = OK
    lengths = np.array([len(j) for j in jpegs], np.int64)
    filled = fill_missing_landmarks(np.stack(landmarks), has_face)
    if scratch_file is not None:
      np.savez(
        scratch_file,
        jpeg_data=np.frombuffer(b"".join(jpegs), np.uint8),
        jpeg_offsets=np.concatenate([[0], np.cumsum(lengths)]),
        landmarks=filled.astype(np.float32),
        has_face=has_face,
        source_index=np.asarray(source_index, np.int64),
        clip_starts=starts,
      )
      summary["scratch"] = str(scratch_file)
  summary["seconds"] = time.perf_counter() - started
  return summary


def _run_job(job: dict) -> dict:
  config = PreprocessConfig(**job["config"])
  return process_source(
    job["source"], config, job["scratch"], start_s=job["start_s"], end_s=job["end_s"]
  )


# ---------------------------------------------------------------- all sources


def _workers(config: PreprocessConfig, num_jobs: int) -> int:
  workers = config.workers if config.workers >= 0 else (os.cpu_count() or 1)
  return max(0, min(workers, num_jobs))


def process_manifest(
  manifest: Manifest,
  config: PreprocessConfig,
  scratch_dir: str | os.PathLike,
  *,
  progress: bool = True,
) -> list[SourceResult]:
  """Processes every row of `manifest`, in worker processes when config.workers allows."""
  scratch_dir = Path(scratch_dir)
  scratch_dir.mkdir(parents=True, exist_ok=True)
  workers = _workers(config, len(manifest.rows))
  job_config = config
  if workers > 1 and config.decode_threads == 0:
    # Several processes each asking FFmpeg for a thread per core would oversubscribe.
    job_config = config.replace(decode_threads=max(1, (os.cpu_count() or 1) // workers))
  results, jobs = [], []
  for index, row in enumerate(manifest.rows):
    results.append(SourceResult.for_row(row))
    row_config = job_config.replace(follow=row.follow) if row.follow else job_config
    jobs.append(
      dict(
        source=str(manifest.source(row)),
        config=row_config.to_dict(),
        scratch=str(scratch_dir / f"{index:06d}.npz"),
        start_s=row.start_s,
        end_s=row.end_s,
      )
    )

  bar = tqdm(total=len(jobs), desc="videos", unit="video", disable=not progress, smoothing=0)
  frames_done, started = 0, time.perf_counter()

  def record(index: int, summary: dict):
    nonlocal frames_done
    result = results[index]
    for key, value in summary.items():
      setattr(result, key, value)
    frames_done += result.frames
    bar.set_postfix(frames_per_s=f"{frames_done / max(time.perf_counter() - started, 1e-9):.0f}")
    bar.update(1)
    if result.status != OK:
      log.warning(
        "%s (manifest line %d): %s %s", result.path, result.line, result.status, result.detail
      )

  try:
    if workers == 0:
      for index, job in enumerate(jobs):
        record(index, _run_job(job))
    else:
      # spawn, not fork: the caller (TFDS, JAX) may hold threads and locks that a
      # forked child would inherit in an unknown state. A worker that dies makes the
      # executor raise instead of hanging, unlike multiprocessing.Pool.
      context = multiprocessing.get_context("spawn")
      with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(job_config.to_dict(),),
      ) as executor:
        futures = {executor.submit(_run_job, job): i for i, job in enumerate(jobs)}
        for future in concurrent.futures.as_completed(futures):
          index = futures[future]
          try:
            summary = future.result()
          except concurrent.futures.process.BrokenProcessPool as err:
            raise IngestError(
              f"a worker process died while processing {results[index].path} (manifest "
              f"line {results[index].line}) or a source next to it: {err}"
            ) from err
          record(index, summary)
  finally:
    bar.close()
  return results


def split_generators(
  manual_dir: str | os.PathLike,
  data_dir: str | os.PathLike,
  *,
  config: PreprocessConfig | None = None,
  label_names: Sequence[str] | None = None,
  features=None,
  progress: bool = True,
  manifest: Manifest | None = None,
  report_extra: dict | None = None,
) -> dict[str, Iterator[tuple[str, dict]]]:
  """Everything the `video` builder config does; see the module docstring.

  Args:
    manual_dir: folder with manifest.csv and the media.
    data_dir: where the report (and, transiently, scratch files) go: the builder's
      `self.data_dir`, which during a build is TFDS's incomplete folder.
    config: pipeline and clip settings (num_frames must match the features).
    label_names: fixed class names, or None for the manifest's sorted unique labels.
    features: the builder's FeaturesDict; a `label` ClassLabel without names gets the
      manifest's.
    progress: show the tqdm bar.
    manifest: the rows to process, made by a database's own layout reader
      (`ubfc_phys`) instead of read from manual_dir/manifest.csv.
    report_extra: more entries for the report (e.g. the layout's problems).

  Returns:
    split name ("s_<subject>") -> generator of (key, example).
  """
  config = config or PreprocessConfig()
  manifest = manifest or read_manifest(manual_dir, label_names)
  if features is not None:
    set_label_names(features, manifest.label_names)
  data_dir = Path(data_dir)
  scratch_dir = data_dir / SCRATCH_NAME
  results = process_manifest(manifest, config, scratch_dir, progress=progress)
  report = build_report(manifest, config, results)
  report.update(report_extra or {})
  report_path = write_report(data_dir / REPORT_NAME, report)
  log.info("ingest report: %s", report_path)
  if report["totals"]["clips_written"] == 0:
    shutil.rmtree(scratch_dir, ignore_errors=True)
    lines = [f"line {r.line} {r.path}: {r.status} {r.detail}".rstrip() for r in results]
    raise IngestError(
      "no source gave a single clip, so there is no dataset to write:\n  " + "\n  ".join(lines)
    )
  by_split: dict[str, list[SourceResult]] = {}
  for result in results:
    if result.clips_written:
      by_split.setdefault(result.split, []).append(result)
  if report["subjects_without_clips"]:
    log.warning(
      "no clips (so no split) for subject(s): %s; see %s",
      ", ".join(report["subjects_without_clips"]),
      report_path,
    )
  scratch = Scratch(scratch_dir, list(by_split))
  return {
    split: split_examples(split, split_results, config.num_frames, scratch)
    for split, split_results in sorted(by_split.items())
  }
