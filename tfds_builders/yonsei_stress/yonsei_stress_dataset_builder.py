"""yonsei_stress: clips of ResNet-18 feature maps from the Yonsei Stress Image Database.

Scanning, validation and clip rules live in `stress_jax.data.yonsei`; this module wires
them into TFDS, either through a local process pool or, when the download config names a
Beam runner or Beam options, as a Beam PTransform that runs the same functions.
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
from collections.abc import Callable, Iterable, Iterator

import tensorflow_datasets as tfds
from etils import epath

from stress_jax.data import records, yonsei

REPORT_NAME = "build_report.json"
_PARTS_DIR = "_build_report_parts"  # per-split reports, merged into REPORT_NAME at the end


@dataclasses.dataclass(eq=False)
class YonseiStressConfig(tfds.core.BuilderConfig):
  """How recordings become clips. See `stress_jax.data.yonsei.ClipSpec`."""

  num_frames: int = 48
  stride: int = 0  # 0 = num_frames (non-overlapping clips)
  max_gap_s: float = 0.5  # a longer pause between two frames never lies inside a clip
  min_valid: float = 0.5  # a clip needs ceil(min_valid * T) real, valid frames

  @property
  def spec(self) -> yonsei.ClipSpec:
    return yonsei.ClipSpec(
      num_frames=self.num_frames,
      stride=self.stride,
      max_gap_s=self.max_gap_s,
      min_valid=self.min_valid,
    )


def _clips_config(num_frames: int) -> YonseiStressConfig:
  return YonseiStressConfig(
    name=f"clips{num_frames}",
    description=(
      f"Non-overlapping {num_frames}-frame clips, cut at pauses > 0.5 s; tails of at "
      f"least {num_frames // 2} frames are zero-padded and masked."
    ),
    num_frames=num_frames,
  )


def config_name(num_frames: int) -> str:
  """The builder config that holds `num_frames`-frame clips (`yonsei_stress/<name>`)."""
  return f"clips{num_frames}"


class YonseiStress(tfds.core.GeneratorBasedBuilder):
  """The Yonsei Stress Image Database as clips of 7x7x256 feature maps, one split per subject."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [_clips_config(t) for t in (48, 32, 16, 8, 4)]
  DEFAULT_CONFIG_NAME = "clips48"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Request the Yonsei Stress Image Database on IEEE DataPort, unpack it and pass its root
  folder as --manual_dir. The root holds one folder per subject (01 .. 50), each holding
  the four stage folders ("Native Language Script Reading", "Native Language Interview",
  "Non-native Language Script Reading", "Non-native Language Interview"; spaces or
  underscores, any case), each holding YYYYMMDD_hhmmss_ms.npy files of shape (7, 7, 256).
  """

  def __init__(
    self,
    *,
    num_workers: int | None = None,
    clips_per_task: int | None = None,
    **kwargs,
  ):
    """`num_workers`: reader processes of a local (non-Beam) build; 0 reads in this process.

    `clips_per_task`: clips per work unit (one pool task or Beam element).
    """
    # array_record is the format that can be written and randomly read without TensorFlow.
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    self._num_workers = _default_workers() if num_workers is None else num_workers
    self._clips_per_task = clips_per_task or max(1, 384 // self.builder_config.num_frames)
    self._use_beam = False
    self._pool = None
    self._scan_problems: list[dict[str, str]] = []
    self._scan_stats: dict = {}
    self._manual_root = ""

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=records.clip_features(
        self.builder_config.num_frames, yonsei.STAGE_NAMES, pixels=False, landmarks=False
      ),
      homepage="https://doi.org/10.3390/s21227498",
    )

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
    recordings, self._scan_problems = yonsei.scan_database(self._manual_root)
    if not recordings:
      raise ValueError(
        f"No <subject>/<stage> folders under {self._manual_root}.\n"
        + self.MANUAL_DOWNLOAD_INSTRUCTIONS
      )
    by_subject = collections.defaultdict(list)
    for recording in recordings:
      by_subject[recording.subject].append(recording)
    spec = self.builder_config.spec
    splits = {}
    for subject, found in sorted(by_subject.items()):
      if any(yonsei.has_clip(recording, spec) for recording in found):
        splits[subject] = self._generate_examples(recordings=tuple(found), split=subject)
      else:
        # No generator will list this subject, so its file problems are gathered here.
        self._scan_problems.append(yonsei.problem("no_clips", subject, "no split"))
        for recording in found:
          _, problems, stats = yonsei.plan_recording(recording, spec)
          self._scan_problems.extend(problems)
          yonsei.merge_stats(self._scan_stats, stats)
    if not splits:
      raise ValueError(f"No subject under {self._manual_root} yields a single clip.")
    return splits

  def _generate_examples(self, recordings: tuple[yonsei.Recording, ...], split: str):
    part_path = os.fspath(epath.Path(self.data_dir) / _PARTS_DIR / f"{split}.json")
    if self._use_beam:
      return _beam_examples(recordings, self.builder_config.spec, self._clips_per_task, part_path)
    return self._local_examples(recordings, part_path)

  def _local_examples(self, recordings, part_path: str) -> Iterator[tuple[str, dict]]:
    spec = self.builder_config.spec
    reports = []
    try:
      plans = []
      plan = functools.partial(yonsei.plan_recording, spec=spec)
      for recording_plans, problems, stats in self._map(plan, recordings):
        plans.extend(recording_plans)
        reports.append((problems, stats))
      make = functools.partial(yonsei.make_clips, spec=spec)
      chunks = yonsei.chunk_plans(plans, self._clips_per_task)
      for examples, problems, stats in self._map(make, chunks):
        reports.append((problems, stats))
        yield from examples
    finally:
      yonsei.write_report_part(reports, part_path)

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
    problems, totals = yonsei.merge_reports(split_reports)
    config = self.builder_config
    report = dict(
      dataset=f"{self.name}/{config.name}/{self.version}",
      manual_dir=self._manual_root,
      generated_with="beam" if self._use_beam else "local",
      build_seconds=round(seconds, 3),
      clip_spec=dataclasses.asdict(config.spec),
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
    (epath.Path(self.data_dir) / REPORT_NAME).write_text(json.dumps(report, indent=1))
    parts_dir.rmtree(missing_ok=True)
    logging.info(
      "yonsei_stress: %d clips, %d problems %s; report in %s",
      totals.get("clips", 0),
      len(problems),
      report["counts"],
      REPORT_NAME,
    )
    return report


Builder = YonseiStress  # the name `tfds build` looks for in a *_dataset_builder.py


def _default_workers() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def _beam_examples(
  recordings: tuple[yonsei.Recording, ...],
  spec: yonsei.ClipSpec,
  clips_per_task: int,
  part_path: str,
):
  """The same plan -> clips steps as the local build, as a Beam PTransform."""
  beam = tfds.core.lazy_imports.apache_beam
  tag = yonsei.BEAM_REPORT_TAG

  def expand(pipeline):
    planned = (
      pipeline
      | "Recordings" >> beam.Create(recordings)
      | "Plan"
      >> beam.FlatMap(yonsei.beam_plan, spec=spec, clips_per_chunk=clips_per_task).with_outputs(
        tag, main="chunks"
      )
    )
    made = (
      planned.chunks
      # Plans of one recording would otherwise stay fused on the worker that listed it.
      | "Spread" >> beam.Reshuffle()
      | "Clips" >> beam.FlatMap(yonsei.beam_clips, spec=spec).with_outputs(tag, main="examples")
    )
    _ = (
      (planned[tag], made[tag])
      | "Reports" >> beam.Flatten()
      | "Gather" >> beam.combiners.ToList()
      | "WriteReport" >> beam.Map(yonsei.write_report_part, path=part_path)
    )
    return made.examples

  return beam.ptransform_fn(expand)()


def load_build_report(data_dir: str) -> dict:
  """The report of the dataset prepared in `data_dir` (a builder's `data_dir`)."""
  return json.loads((epath.Path(data_dir) / REPORT_NAME).read_text())
