"""The TFDS builder every feature-map database shares: scan, plan, read clips, report.

A dataset subclasses `FeatureDatabaseBuilder` and says how its folders are named
(`folder_layout`), and optionally which label names it has before seeing the folders and
which tasks map its stored labels (`LABEL_TASKS`, read by the input pipeline). The
build runs either through a local process pool or, when the download config names a
Beam runner or Beam options, as a Beam PTransform running the same functions; both
write `build_report.json` next to the dataset.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import tensorflow_datasets as tfds
from etils import epath

from stress_jax import jsonio
from stress_jax.faces import records
from stress_jax.featuredb import beam as beam_steps
from stress_jax.featuredb import clips, layout

REPORT_NAME = "build_report.json"
_PARTS_DIR = "_build_report_parts"  # per-split reports, merged into REPORT_NAME at the end


@dataclasses.dataclass(eq=False)
class FeatureDatabaseConfig(tfds.core.BuilderConfig):
  """How recordings become clips. See `stress_jax.featuredb.clips.ClipSpec`."""

  num_frames: int = 48
  stride: int = 0  # 0 = num_frames (non-overlapping clips)
  max_gap_s: float = 0.5  # timestamp stems: a longer pause never lies inside a clip
  min_valid: float = 0.5  # a clip needs ceil(min_valid * T) real, valid frames

  @property
  def spec(self) -> clips.ClipSpec:
    return clips.ClipSpec(
      num_frames=self.num_frames,
      stride=self.stride,
      max_gap_s=self.max_gap_s,
      min_valid=self.min_valid,
    )


def clips_configs(config_class=FeatureDatabaseConfig, lengths=(48, 32, 16, 8, 4)) -> list:
  """One `clips<T>` config per clip length: non-overlapping clips, padded tails of >= T/2."""
  return [
    config_class(
      name=config_name(t),
      description=(
        f"Non-overlapping {t}-frame clips, cut at pauses > 0.5 s (timestamps) or index "
        f"gaps (frame indices); tails of at least {t // 2} frames are zero-padded and masked."
      ),
      num_frames=t,
    )
    for t in lengths
  ]


def config_name(num_frames: int) -> str:
  """The builder config that holds `num_frames`-frame clips (`<dataset>/<name>`)."""
  return f"clips{num_frames}"


def set_label_names(features, label_names: Sequence[str]) -> None:
  """Names a ClassLabel created without names; a named one must already agree."""
  label = features["label"]
  if label.num_classes is None:
    label.names = list(label_names)
  elif list(label.names) != list(label_names):
    raise ValueError(f"label names {list(label_names)} differ from the dataset's {label.names}")


class FeatureDatabaseBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Clips of 7x7x256 feature maps with landmarks, one split per subject."""

  # Known label names (None: from the manual dir, as `layout` finds them).
  LABEL_NAMES: tuple[str, ...] | None = None
  # task -> (class names, stored label -> task label); see input_pipeline.open_dataset.
  LABEL_TASKS: dict[str, tuple[Sequence[str], Sequence[int]]] = {}
  HOMEPAGE = "https://doi.org/10.3390/s21227498"
  FOLDERS = "<subject>/<label>"  # how the errors name the two folder levels

  def folder_layout(self, root: str) -> layout.Layout:
    return layout.general_layout(root)

  def __init__(self, *, num_workers: int | None = None, clips_per_task: int | None = None, **kw):
    """`num_workers`: reader processes of a local (non-Beam) build; 0 reads in this process.

    `clips_per_task`: clips per work unit (one pool task or Beam element).
    """
    # array_record is the format that can be written and randomly read without TensorFlow.
    kw.setdefault("file_format", "array_record")
    super().__init__(**kw)
    self._num_workers = _default_workers() if num_workers is None else num_workers
    self._clips_per_task = clips_per_task or max(1, 384 // self.builder_config.num_frames)
    self._use_beam = False
    self._pool = None
    self._scan_problems: list[dict[str, str]] = []
    self._scan_stats: dict = {}
    self._manual_root = ""

  def _info(self) -> tfds.core.DatasetInfo:
    num_frames = self.builder_config.num_frames
    features = records.clip_features(
      num_frames, self.LABEL_NAMES or ("_",), pixels=False, landmarks=True
    )
    if self.LABEL_NAMES is None:
      # Names come from the manual dir at build time; TFDS stores them with the data.
      entries = {name: features[name] for name in features.keys()}
      entries["label"] = tfds.features.ClassLabel()
      features = tfds.features.FeaturesDict(entries)
    return self.dataset_info_from_configs(features=features, homepage=self.HOMEPAGE)

  # TFDS hands the download config only to this method; the Beam decision and the
  # build report both need it, so it is wrapped rather than reimplemented.
  def _download_and_prepare(self, dl_manager, download_config):
    self._use_beam = (
      download_config.beam_runner is not None or download_config.beam_options is not None
    )
    started = time.perf_counter()
    try:
      super()._download_and_prepare(dl_manager, download_config)
    finally:
      if self._pool is not None:
        self._pool.close()
        self._pool.join()
        self._pool = None
    self._write_build_report(time.perf_counter() - started)

  def _split_generators(self, dl_manager):
    self._manual_root = os.fspath(dl_manager.manual_dir)
    folder_layout = self.folder_layout(self._manual_root)
    recordings, self._scan_problems = layout.scan_database(self._manual_root, folder_layout)
    if not recordings:
      raise ValueError(
        f"No {self.FOLDERS} folders under {self._manual_root}.\n"
        + self.MANUAL_DOWNLOAD_INSTRUCTIONS
      )
    set_label_names(self.info.features, folder_layout.label_names)
    by_subject = collections.defaultdict(list)
    for recording in recordings:
      by_subject[recording.subject].append(recording)
    spec = self.builder_config.spec
    splits = {}
    for subject, found in sorted(by_subject.items()):
      if any(clips.has_clip(recording, spec) for recording in found):
        splits[subject] = self._generate_examples(recordings=tuple(found), split=subject)
      else:
        # No generator will list this subject, so its file problems are gathered here.
        self._scan_problems.append(layout.problem("no_clips", subject, "no split"))
        for recording in found:
          _, problems, stats = clips.plan_recording(recording, spec)
          self._scan_problems.extend(problems)
          layout.merge_stats(self._scan_stats, stats)
    if not splits:
      raise ValueError(f"No subject under {self._manual_root} yields a single clip.")
    return splits

  def _generate_examples(self, recordings: tuple[layout.Recording, ...], split: str):
    part_path = os.fspath(epath.Path(self.data_dir) / _PARTS_DIR / f"{split}.json")
    if self._use_beam:
      return _beam_examples(recordings, self.builder_config.spec, self._clips_per_task, part_path)
    return self._local_examples(recordings, part_path)

  def _local_examples(self, recordings, part_path: str) -> Iterator[tuple[str, dict]]:
    spec = self.builder_config.spec
    reports = []
    try:
      plans = []
      plan = functools.partial(clips.plan_recording, spec=spec)
      for recording_plans, problems, stats in self._map(plan, recordings):
        plans.extend(recording_plans)
        reports.append((problems, stats))
      make = functools.partial(clips.make_clips, spec=spec)
      for examples, problems, stats in self._map(
        make, clips.chunk_plans(plans, self._clips_per_task)
      ):
        reports.append((problems, stats))
        yield from examples
    finally:
      beam_steps.write_report_part(reports, part_path)

  def _map(self, fn: Callable, items: Iterable) -> Iterator:
    """Ordered map over the pool with a bounded number of tasks in flight.

    Pool.imap would let workers run arbitrarily far ahead of the writer, and memory
    would then grow with the size of a split.
    """
    if self._num_workers <= 0:
      yield from map(fn, items)
      return
    if self._pool is None:
      # spawn, not fork: the parent may already run threads (JAX, TFDS, tqdm).
      self._pool = multiprocessing.get_context("spawn").Pool(self._num_workers)
    pending = collections.deque()
    for item in items:
      pending.append(self._pool.apply_async(fn, (item,)))
      if len(pending) >= 2 * self._num_workers:
        yield pending.popleft().get()
    while pending:
      yield pending.popleft().get()

  def _write_build_report(self, seconds: float) -> dict:
    parts_dir = epath.Path(self.data_dir) / _PARTS_DIR
    splits, split_reports = {}, [(self._scan_problems, self._scan_stats)]
    for part in sorted(parts_dir.glob("*.json")):
      content = json.loads(part.read_text())
      splits[part.stem] = content["stats"]
      split_reports.append((content["problems"], content["stats"]))
    problems, totals = beam_steps.merge_reports(split_reports)
    config = self.builder_config
    report = dict(
      dataset=f"{self.name}/{config.name}/{self.version}",
      manual_dir=self._manual_root,
      generated_with="beam" if self._use_beam else "local",
      build_seconds=round(seconds, 3),
      clip_spec=dataclasses.asdict(config.spec),
      label_names=list(self.info.features["label"].names),
      counts=dict(sorted(collections.Counter(p["kind"] for p in problems).items())),
      totals=totals,
      float16=dict(
        max_rel_error=totals.get("max_rel_error", 0.0),
        rel_error_bound=2.0**-11,
        max_abs_value=totals.get("max_abs_value", 0.0),
        overflow_frames=sum(p["kind"] == "float16_overflow" for p in problems),
      ),
      splits=splits,
      problems=problems,
    )
    jsonio.write(epath.Path(self.data_dir) / REPORT_NAME, report, indent=1)
    parts_dir.rmtree(missing_ok=True)
    logging.info(
      "%s: %d clips, %d problems %s; report in %s",
      self.name,
      totals.get("clips", 0),
      len(problems),
      report["counts"],
      REPORT_NAME,
    )
    return report


def _default_workers() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def _beam_examples(recordings, spec: clips.ClipSpec, clips_per_task: int, part_path: str):
  """The same plan -> clips steps as the local build, as a Beam PTransform."""
  beam = tfds.core.lazy_imports.apache_beam
  tag = beam_steps.BEAM_REPORT_TAG

  def expand(pipeline):
    planned = (
      pipeline
      | "Recordings" >> beam.Create(recordings)
      | "Plan"
      >> beam.FlatMap(beam_steps.beam_plan, spec=spec, clips_per_chunk=clips_per_task).with_outputs(
        tag, main="chunks"
      )
    )
    made = (
      planned.chunks
      # Plans of one recording would otherwise stay fused on the worker that listed it.
      | "Spread" >> beam.Reshuffle()
      | "Clips" >> beam.FlatMap(beam_steps.beam_clips, spec=spec).with_outputs(tag, main="examples")
    )
    _ = (
      (planned[tag], made[tag])
      | "Reports" >> beam.Flatten()
      | "Gather" >> beam.combiners.ToList()
      | "WriteReport" >> beam.Map(beam_steps.write_report_part, path=part_path)
    )
    return made.examples

  return beam.ptransform_fn(expand)()


def load_build_report(data_dir: str) -> dict:
  """The report of the dataset prepared in `data_dir` (a builder's `data_dir`)."""
  return json.loads((epath.Path(data_dir) / REPORT_NAME).read_text())
