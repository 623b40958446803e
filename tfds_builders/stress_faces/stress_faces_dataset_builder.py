"""The `stress_faces` dataset builder: eye-aligned face clips with stress labels.

Configs:
  synthetic         the simulator of `stress_jax.datasets.synthetic`, 30 subjects, 3 classes
  synthetic_binary  the same subjects, no_stress / stress
  synthetic_tiny    3 subjects, 2 clips per class, 8 frames: tests and smoke runs
  video             your own recordings (manual dir + manifest.csv), see
                    `stress_jax/preprocess/ingest.py`; 16-frame clips at 15 fps

Every config writes the clip record of `stress_jax.faces.records` with one split
per subject (`s00`, `s01`, ...). Build without TensorFlow:

  python -m stress_jax.data.build stress_faces --config=synthetic

Any other population of a synthetic config is a config name too: the base name with
overrides of `SimulatorConfig` fields, `synthetic-num_subjects20-seed7` (see
`synthetic.config_name`; the build's --simulator=seed=7,num_subjects=20 and the
training config's data.simulator make that name), each built in its own folder.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds
import tqdm

from stress_jax.datasets import synthetic
from stress_jax.faces import records
from stress_jax.preprocess import ingest
from stress_jax.preprocess.config import PreprocessConfig

# Worker processes that render synthetic clips (unset: every CPU this process may
# use). The records do not depend on it.
WORKERS_ENV = "STRESS_FACES_WORKERS"

# The demo dataset's difficulty: the small CPU demo model learns it to >= 85% on
# held-out subjects within its 10-minute budget, while single frames stay ambiguous
# (spontaneous blinks, speech and per-subject baselines are still present).
DEMO_DIFFICULTY = 0.3
# The class names the `video` configs declare unless a build names others
# (`python -m stress_jax.data.build stress_faces/video --labels=calm,stress`): a
# manifest label outside the declared set stops the build, so a misspelt label
# cannot become a class of its own.
VIDEO_LABELS = ("no_stress", "stress")


@dataclasses.dataclass(eq=False)
class StressFacesConfig(tfds.core.BuilderConfig):
  """kind: where clips come from; "synthetic" reads `simulator`, "video" `preprocess`."""

  kind: str = "synthetic"
  simulator: synthetic.SimulatorConfig | None = None
  preprocess: PreprocessConfig | None = None
  # video: the declared class names, in label order; every manifest label must be one.
  labels: tuple[str, ...] | None = None

  @property
  def num_frames(self) -> int:
    if self.kind == "synthetic":
      return self.simulator.num_frames
    if self.kind == "video":
      return self.preprocess.num_frames
    raise NotImplementedError(f"config kind {self.kind!r}")

  @property
  def label_names(self) -> tuple[str, ...]:
    if self.kind == "synthetic":
      return self.simulator.label_names
    if self.kind == "video":
      if not self.labels:
        raise ValueError(f"video config {self.name!r} declares no labels")
      return tuple(self.labels)
    raise NotImplementedError(f"config kind {self.kind!r}")


def _synthetic(name: str, summary: str, **simulator) -> StressFacesConfig:
  sim = synthetic.SimulatorConfig(**simulator)
  return StressFacesConfig(
    name=name,
    description=(
      f"{summary} Simulated: {sim.num_subjects} subjects x {sim.num_classes} classes x "
      f"{sim.clips_per_class_per_subject} clips of {sim.num_frames} frames at {sim.fps:g} fps, "
      f"difficulty {sim.difficulty:g}, label noise {sim.label_noise:g}, seed {sim.seed}; "
      f"cue families {'+'.join(sim.cue_families)}, {sim.families_per_subject} per subject; "
      f"landmarks by {sim.detector if sim.detector != 'none' else 'the renderer'}."
    ),
    kind="synthetic",
    simulator=sim,
  )


def population_config(name: str) -> StressFacesConfig | None:
  """`synthetic-seed7-...`: a declared synthetic config with simulator overrides, or None."""
  base_name, _, _ = name.partition("-")
  base = next((c for c in StressFaces.BUILDER_CONFIGS if c.name == base_name), None)
  if base is None or base.kind != "synthetic":
    return None
  _, overrides = synthetic.parse_config_name(name)
  simulator = dataclasses.replace(base.simulator, **overrides)
  canonical = synthetic.config_name(base_name, base.simulator, overrides)
  if canonical == base_name:
    return base
  summary = base.description.split(" Simulated:")[0]
  return _synthetic(canonical, summary, **dataclasses.asdict(simulator))


class StressFaces(tfds.core.GeneratorBasedBuilder):
  """Face clips (T x 112 x 112 x 3), 68 landmarks per frame and a stress label."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {
    "1.0.0": "Synthetic configs: simulated faces with stress cue events.",
    "2.0.0": (
      "Synthetic configs: appearance-only cues the 68 landmarks cannot carry (gaze "
      "aversion, pupil dilation, flushing or pallor, perspiration sheen); landmarks found by "
      "dlib's 68-point predictor on each rendered frame, crops aligned on them (a failed "
      "fit masks the frame); each subject shows stress through its own cue families and "
      "gains (metadata `subjects`); per-frame cue regions, cue_region (T, 28, 28) uint8 "
      "in place of one (112, 112) map per clip; the clip's events as cue_events (4, 4); "
      "any population by config name, e.g. synthetic-seed7-num_subjects20."
    ),
  }
  BUILDER_CONFIGS = [
    _synthetic("synthetic", "No / weak / strong stress.", difficulty=DEMO_DIFFICULTY),
    _synthetic("synthetic_binary", "No stress / stress (strong cues).", num_classes=2),
    _synthetic(
      "synthetic_small",
      "A small, easier set that a tiny model learns in seconds (tests, smoke runs): every "
      "subject shows every cue family.",
      num_subjects=12,
      clips_per_class_per_subject=6,
      num_frames=8,
      clip_stride=8,
      difficulty=0.3,
      families_per_subject=5,
    ),
    _synthetic(
      "synthetic_tiny",
      "A few clips for tests.",
      num_subjects=3,
      clips_per_class_per_subject=2,
      num_frames=8,
      clip_stride=8,
      image_size=128,
    ),
    StressFacesConfig(
      name="video",
      description="Face clips cut from your own videos listed in manifest.csv (manual dir).",
      kind="video",
      preprocess=PreprocessConfig(),
      labels=VIDEO_LABELS,
    ),
    StressFacesConfig(
      name="video48",
      description="As `video`, in the paper's 48-frame clips (half-overlapping).",
      kind="video",
      preprocess=PreprocessConfig(num_frames=48, stride=24),
      labels=VIDEO_LABELS,
    ),
  ]
  DEFAULT_CONFIG_NAME = "synthetic"
  MANUAL_DOWNLOAD_INSTRUCTIONS = ingest.MANUAL_DOWNLOAD_INSTRUCTIONS

  @classmethod
  def get_builder_config(cls, name: str, version=None):
    """A declared config, or a synthetic one with simulator overrides in its name."""
    found = super().get_builder_config(name, version)
    if found is not None or "-" not in name:
      return found
    return population_config(name)

  @classmethod
  def population_name(cls, config_name: str | None, overrides: str) -> str:
    """The config name of `config_name` (a synthetic config) with 'field=value,...' overrides."""
    base_name = config_name or cls.DEFAULT_CONFIG_NAME
    base = population_config(base_name) or cls.get_builder_config(base_name)
    if base is None or base.kind != "synthetic":
      raise ValueError(f"simulator overrides apply to synthetic configs only, not {base_name!r}")
    # Overrides on a population name add to (and win over) the ones it already has.
    root, named = synthetic.parse_config_name(base.name)
    declared = cls.get_builder_config(root)
    merged = {**named, **synthetic.parse_overrides(overrides)}
    name = synthetic.config_name(root, declared.simulator, merged)
    dataclasses.replace(declared.simulator, **merged)  # refuses values the simulator cannot use
    return name

  def __init__(self, *, labels=None, **kwargs):
    # `labels` declares a video build's class names in place of the config's (the
    # build CLI's --labels); a custom config cannot reuse the name `video`.
    self._labels = tuple(labels) if labels else None
    super().__init__(**kwargs)

  def _label_names(self) -> tuple[str, ...]:
    config = self.builder_config
    if self._labels is not None:
      if config.kind != "video":
        raise ValueError(f"labels are declared for video configs only, not {config.name!r}")
      return self._labels
    stored = self.data_path / "label.labels.txt"  # TFDS's file of the `label` feature
    if config.kind == "video" and stored.exists():
      # A build with declared labels stores them; opened from the config alone (as
      # training opens it, tfds.builder) the builder must report those, not the defaults.
      return tuple(name for name in stored.read_text().splitlines() if name)
    return config.label_names

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    metadata = {"kind": config.kind}
    if config.kind == "synthetic":
      sim = config.simulator
      metadata["simulator"] = dataclasses.asdict(sim)
      metadata["cue_kinds"] = list(synthetic.EVENT_KINDS)
      metadata["appearance_only_kinds"] = list(synthetic.APPEARANCE_KINDS)
      metadata["subjects"] = {
        synthetic.split_name(s, sim.num_subjects): synthetic.subject_profile(sim, s).as_dict()
        for s in range(sim.num_subjects)
      }
      features = records.clip_features(config.num_frames, self._label_names(), synthetic=True)
    elif config.kind == "video":
      metadata["preprocess"] = config.preprocess.to_dict()
      features = ingest.clip_features(config.num_frames, self._label_names())
    else:
      raise NotImplementedError(f"config kind {config.kind!r}")
    return self.dataset_info_from_configs(
      features=features,
      supervised_keys=None,
      homepage="https://doi.org/10.3390/s21227498",
      metadata=tfds.core.MetadataDict(metadata),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config
    if config.kind == "synthetic":
      return self._synthetic_splits()
    if config.kind == "video":
      # Checks the manifest, processes every source, writes ingest_report.json into
      # self.data_dir (TFDS's incomplete folder until the build succeeds).
      return ingest.split_generators(
        dl_manager.manual_dir,
        self.data_dir,
        config=config.preprocess,
        label_names=self._label_names(),
        features=self.info.features,
      )
    raise NotImplementedError(f"config kind {config.kind!r}")

  def _generate_examples(self, **kwargs):
    kind = self.builder_config.kind
    if kind == "synthetic":
      yield from self._synthetic_examples(**kwargs)
    else:
      raise NotImplementedError(f"config kind {kind!r}")

  # synthetic ---------------------------------------------------------------------

  def _synthetic_splits(self):
    sim = self.builder_config.simulator
    workers = os.environ.get(WORKERS_ENV)
    pool = synthetic.RecordPool(sim, None if workers is None else int(workers))
    pending = set(range(sim.num_subjects))
    # One bar for the whole build (stress_jax.data.build turns TFDS's per-split bars off).
    bar = tqdm.tqdm(
      total=sim.num_subjects,
      desc=f"simulating {self.name}/{self.builder_config.name}",
      unit="subject",
    )
    return {
      synthetic.split_name(subject, sim.num_subjects): self._generate_examples(
        pool=pool, subject=subject, pending=pending, bar=bar
      )
      for subject in range(sim.num_subjects)
    }

  def _synthetic_examples(self, pool: synthetic.RecordPool, subject: int, pending: set[int], bar):
    # One pool serves every split (TFDS consumes the split generators one after
    # another); the last subject to finish shuts it down.
    yield from pool.records(subject)
    pending.discard(subject)
    bar.update(1)
    if not pending:
      bar.close()
      pool.close()


# The name `tfds new` gives a dataset's builder class.
Builder = StressFaces
