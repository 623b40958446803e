"""The `ubfc_phys` dataset builder: UBFC-Phys videos -> face clips, one split per subject.

The database's own layout (see `stress_jax.preprocess.ubfc_phys`) replaces the
manifest.csv of `stress_faces/video`; everything after that is the same ingest
(`stress_jax.preprocess.ingest`: decode at 15 fps, follow and align the face, cut
clips, `ingest_report.json`). With a Beam runner or Beam options in the download
config, each video is one Beam element (`stress_jax.preprocess.beam`).

  python -m stress_jax.data.build ubfc_phys/tasks --manual_dir=/path/to/UBFC-Phys
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

import tensorflow_datasets as tfds

from stress_jax.preprocess import beam as beam_ingest
from stress_jax.preprocess import ingest, ubfc_phys
from stress_jax.preprocess.config import PreprocessConfig
from stress_jax.preprocess.report import build_report, write_report

_PARTS_DIR = "_ingest_report_parts"
log = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class UbfcPhysConfig(tfds.core.BuilderConfig):
  """scheme: "tasks" (T1/T2/T3) or "binary" (rest / stress); preprocess: the face pipeline."""

  scheme: str = "tasks"
  preprocess: PreprocessConfig = dataclasses.field(
    # Recordings are long: non-overlapping clips halve the dataset and lose little.
    default_factory=lambda: PreprocessConfig(num_frames=16, stride=16)
  )

  @property
  def label_names(self) -> tuple[str, ...]:
    return tuple(sorted(set(ubfc_phys.SCHEMES[self.scheme].values())))


class UbfcPhys(tfds.core.GeneratorBasedBuilder):
  """UBFC-Phys face clips (T x 112 x 112 x 3), 68 landmarks per frame, a task or stress label."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
    UbfcPhysConfig(name="tasks", description="Three classes: T1 rest, T2 speech, T3 arithmetic."),
    UbfcPhysConfig(name="binary", description="Rest (T1) vs stress (T2 and T3).", scheme="binary"),
  ]
  DEFAULT_CONFIG_NAME = "tasks"
  MANUAL_DOWNLOAD_INSTRUCTIONS = ubfc_phys.MANUAL_DOWNLOAD_INSTRUCTIONS

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    self._use_beam = False
    self._manifest = None
    self._extra: dict = {}

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return self.dataset_info_from_configs(
      features=ingest.clip_features(config.preprocess.num_frames, config.label_names),
      supervised_keys=None,
      homepage="https://doi.org/10.1109/TAFFC.2021.3056960",
      metadata=tfds.core.MetadataDict(
        scheme=config.scheme, preprocess=config.preprocess.to_dict(), groups={}
      ),
    )

  # TFDS hands the download config only to this method; the Beam decision and the
  # Beam build's report both need it.
  def _download_and_prepare(self, dl_manager, download_config):
    self._use_beam = (
      download_config.beam_runner is not None or download_config.beam_options is not None
    )
    started = time.perf_counter()
    super()._download_and_prepare(dl_manager, download_config)
    if self._use_beam:
      self._write_beam_report(time.perf_counter() - started)

  def _split_generators(self, dl_manager):
    config = self.builder_config
    try:
      manual_dir = os.fspath(dl_manager.manual_dir)
    except AssertionError:
      # TFDS's own message is the whole instructions text after an assert.
      raise ValueError(
        f"UBFC-Phys manual dir {getattr(dl_manager, '_manual_dir', '')} does not exist or is "
        "empty; pass the "
        "folder holding s1, s2, ... as --manual_dir"
      ) from None
    subjects, problems = ubfc_phys.scan(manual_dir)
    for entry in problems:
      log.warning("ubfc_phys: %s %s: %s", entry["kind"], entry["path"], entry["detail"])
    if not subjects:
      raise ValueError(
        f"no UBFC-Phys subject folder (s1, s2, ...) with a video under {manual_dir}\n"
        + self.MANUAL_DOWNLOAD_INSTRUCTIONS
      )
    groups = {s.name: s.group for s in subjects}
    self.info.metadata["groups"] = groups
    self._manifest = ubfc_phys.manifest(manual_dir, subjects, config.scheme)
    self._extra = dict(dataset=self.name, scheme=config.scheme, groups=groups, problems=problems)
    if self._use_beam:
      return self._beam_splits()
    return ingest.split_generators(
      manual_dir,
      self.data_dir,
      config=config.preprocess,
      manifest=self._manifest,
      report_extra=self._extra,
    )

  def _generate_examples(self, **kwargs):
    raise NotImplementedError("examples come from ingest.split_generators or the Beam steps")

  def _beam_splits(self):
    manifest, parts = self._manifest, Path(self.data_dir) / _PARTS_DIR
    by_split: dict[str, list[dict]] = {}
    for row in manifest.rows:
      job = beam_ingest.job(row, str(manifest.source(row)), self.builder_config.preprocess)
      by_split.setdefault(row.split, []).append(job)
    return {
      split: beam_ingest.ptransform(jobs, str(parts / f"{split}.json"))
      for split, jobs in sorted(by_split.items())
    }

  def _write_beam_report(self, seconds: float):
    parts = Path(self.data_dir) / _PARTS_DIR
    results = beam_ingest.read_parts(parts)
    report = build_report(self._manifest, self.builder_config.preprocess, results)
    report.update(self._extra, generated_with="beam", build_seconds=round(seconds, 3))
    write_report(Path(self.data_dir) / ingest.REPORT_NAME, report)
    shutil.rmtree(parts, ignore_errors=True)


Builder = UbfcPhys  # the name `tfds build` looks for in a *_dataset_builder.py
