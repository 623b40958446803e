"""Builds this project's TFDS datasets as array_record shards, without TensorFlow.

The `tfds build` CLI imports TensorFlow; this does the same job for the builders
in `tfds_builders/`, with the `tfds build` flags that apply here (--config,
--data_dir, --manual_dir, --overwrite, --beam_pipeline_options, --file_format):

  python -m stress_jax.data.build stress_faces --config=synthetic
  python -m stress_jax.data.build stress_faces/synthetic_tiny --data_dir=/tmp/tfds
  python -m stress_jax.data.build stress_faces/synthetic --simulator=seed=7,num_subjects=20
  python -m stress_jax.data.build stress_faces/video --manual_dir=DIR --labels=calm,stress
  python -m stress_jax.data.build yonsei_stress --manual_dir=/path/to/YonseiStressImageDatabase \
      --beam_pipeline_options=runner=DirectRunner,direct_num_workers=4

From Python: `build_dataset(...)`; `ensure_built(config.data)` is what train.py and
crossval call to build a missing dataset on demand.
A build first removes the `incomplete.*` folders an interrupted build of the same
dataset left behind, and shows one progress bar (TFDS's per-split bars are off). On a
local disk, builds of one dataset take turns (a file lock), so parallel jobs that
each build on demand (ablation folds) wait for the first instead of racing it.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence

import tensorflow_datasets as tfds
from absl import flags

from stress_jax import cli

FLAGS = flags.FlagValues()
flags.DEFINE_string("config", None, "Builder config name.", flag_values=FLAGS)
cli.define_data_dir(FLAGS, "Default: $TFDS_DATA_DIR or ~/tensorflow_datasets.")
flags.DEFINE_string("manual_dir", None, "Where manually downloaded data lie.", flag_values=FLAGS)
cli.define_overwrite(FLAGS, "Rebuild even if prepared.")
flags.DEFINE_string(
  "beam_pipeline_options",
  None,
  "Comma-separated Beam flags, e.g. runner=DirectRunner.",
  flag_values=FLAGS,
)
# Not a build_dataset parameter: array_record is the one format (the flag says why).
flags.DEFINE_enum(
  "file_format",
  "array_record",
  ["array_record"],
  "Shard format; grain reads array_record only (tfrecord would need TensorFlow).",
  flag_values=FLAGS,
)
flags.DEFINE_list(
  "labels",
  None,
  "video configs: the class names, in label order; a manifest label outside them stops "
  "the build. Default: the config's declared set.",
  flag_values=FLAGS,
)


flags.DEFINE_string(
  "simulator",
  "",
  "synthetic configs: SimulatorConfig overrides, e.g. seed=7,num_subjects=20 (a tuple "
  "field joins items with +: cue_families=skin+head); the population is built under its "
  "own config name, e.g. synthetic-num_subjects20-seed7.",
  flag_values=FLAGS,
)


class BuildError(cli.UserError, ValueError):
  """The dataset cannot be built as asked; the message is one line naming why."""


# Dataset name -> builder class in tfds_builders/<name>/. Imported only when asked
# for, so one missing or broken builder does not stop the others from building.
DATASETS = {
  "stress_faces": "StressFaces",
  "ubfc_phys": "UbfcPhys",
  "yonsei_stress": "YonseiStress",
  "feature_maps": "FeatureMaps",
}


def describe_datasets() -> list[str]:
  """'name (configs a, b)' for each dataset this project builds."""
  described = []
  for dataset in sorted(DATASETS):
    try:
      configs = [c.name for c in builder_class(dataset).BUILDER_CONFIGS]
    except ValueError:
      configs = []
    described.append(f"{dataset} (configs {', '.join(configs)})" if configs else dataset)
  return described


def builder_class(dataset: str) -> type[tfds.core.DatasetBuilder]:
  if dataset not in DATASETS:
    raise BuildError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
  class_name = DATASETS[dataset]
  module_name = f"tfds_builders.{dataset}"
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name is not None and module_name.startswith(e.name):
      raise BuildError(
        f"dataset {dataset!r} has no builder here: expected a package tfds_builders/{dataset}/ "
        f"defining {class_name}"
      ) from e
    raise
  if not hasattr(module, class_name):
    raise BuildError(f"{module_name} does not define {class_name}")
  return getattr(module, class_name)


def split_name(name: str, config: str | None = None) -> tuple[str, str | None]:
  """'stress_faces/synthetic' -> ('stress_faces', 'synthetic'); `config` must agree."""
  dataset, _, named = name.partition("/")
  if ":" in dataset or ":" in named:
    raise BuildError(f"{name!r}: versions are not supported here, build the builder's own")
  if named and config and named != config:
    raise BuildError(f"{name!r} names config {named!r} but config={config!r} was given")
  return dataset, (named or config or None)


def beam_options(options: str | Sequence[str] | Mapping | None):
  """PipelineOptions from 'k=v,k2=v2' (the tfds CLI form), a list of flags or a dict."""
  if options is None or (not isinstance(options, Mapping) and len(options) == 0):
    return None
  from apache_beam.options.pipeline_options import PipelineOptions  # only Beam builds need it

  if isinstance(options, Mapping):
    return PipelineOptions.from_dictionary(dict(options))
  if isinstance(options, str):
    options = [item for item in options.split(",") if item]
  return PipelineOptions(flags=[item if item.startswith("--") else f"--{item}" for item in options])


def remove_stale_incomplete(builder) -> list[str]:
  """Deletes `incomplete.*` folders an interrupted build of this dataset left behind.

  Called under `build_lock`, so on a local disk it never deletes a running build's
  folder; on a bucket two builds of one dataset at once are not supported (TFDS does
  not guard against it either): the second would delete the first's.
  """
  from etils import epath

  parent = epath.Path(builder.data_dir).parent
  removed = []
  if parent.exists():
    for stale in parent.glob("incomplete.*"):
      shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
      removed.append(str(stale))
  for path in removed:
    print(f"removed {path}, left by an interrupted build", file=sys.stderr, flush=True)
  return removed


@contextlib.contextmanager
def build_lock(dataset_dir: str):
  """Serialises builds of one dataset version on a local disk (parallel ablation folds).

  The second process waits, then finds the dataset prepared. No lock on buckets.
  """
  if "://" in str(dataset_dir):
    yield
    return
  parent = os.path.dirname(os.path.abspath(dataset_dir))
  os.makedirs(parent, exist_ok=True)
  with open(os.path.join(parent, ".build.lock"), "w") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)


def declared_labels(labels: str | Sequence[str] | None) -> tuple[str, ...]:
  """--labels or data.labels ('a,b' or a sequence) as class names; () means the config's."""
  if isinstance(labels, str):
    labels = labels.split(",")
  return tuple(label.strip() for label in labels or () if label.strip())


def _builder_kwargs(cls, config, labels) -> dict:
  """A named config, and with --labels the class names a video build declares."""
  if not labels:
    return {"config": config}
  named = {c.name: c for c in cls.BUILDER_CONFIGS}
  chosen = named.get(config or cls.DEFAULT_CONFIG_NAME)
  if chosen is None or getattr(chosen, "kind", "") != "video":
    raise BuildError(f"--labels applies to video configs only, not {config!r}")
  return {"config": config, "labels": tuple(labels)}


def with_simulator(name: str, simulator: str | None) -> str:
  """'stress_faces/synthetic' with overrides 'seed=7' -> 'stress_faces/synthetic-seed7'.

  Unchanged without overrides; a dataset without a simulator refuses them (BuildError).
  """
  import tfds_builders

  builder_class(split_name(name)[0])  # an unknown dataset: BuildError naming the known ones
  try:
    return tfds_builders.population_name(name, simulator)
  except ValueError as error:
    raise BuildError(f"{name}: {cli.one_line(error)}") from None


def build_dataset(
  name: str,
  config: str | None = None,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  overwrite: bool = False,
  beam_pipeline_options: str | Sequence[str] | Mapping | None = None,
  labels: str | Sequence[str] | None = None,
  simulator: str | None = None,
) -> tfds.core.DatasetBuilder:
  """Prepares `name` (optionally 'dataset/config') as array_record shards; returns its builder.

  `labels` ('a,b' as config.data.labels holds it, or a sequence) declares a video
  build's class names; empty keeps the config's. An already prepared dataset is
  reused unless `overwrite` (with other labels it is refused). Failures the user can
  fix (a bad manifest, no usable source, a missing manual_dir) raise BuildError.
  `simulator` ('seed=7,num_subjects=20') builds that population of a synthetic config
  under its own config name (`with_simulator`).
  """
  labels = declared_labels(labels)
  dataset, config = split_name(name, config)
  if simulator:
    dataset, config = split_name(with_simulator(f"{dataset}/{config or ''}".rstrip("/"), simulator))
  cls = builder_class(dataset)
  kwargs = _builder_kwargs(cls, config, labels)

  def make():
    try:
      return cls(**kwargs, data_dir=data_dir or None, file_format="array_record")
    except ValueError as error:  # an unknown config, or a population name it cannot parse
      raise BuildError(f"{dataset}/{config}: {cli.one_line(error)[:300]}") from None

  with build_lock(make().data_dir):
    # Made again under the lock: a build that finished while we waited is read from disk.
    return _prepare(make(), overwrite, manual_dir, beam_pipeline_options, labels)


def ensure_built(data_config) -> None:
  """Builds the dataset a training config names when it is missing and the config allows it.

  What train.py and crossval call before they open the data (reading data and making
  it are two jobs: `input_pipeline.open_dataset` only reads). A dataset whose config
  says `build_if_missing=False` (a manual download) is left for the pipeline's
  one-line "not built" error.
  """
  import tfds_builders
  from stress_jax import storage

  if not data_config.get("build_if_missing", False):
    return
  data_dir = data_config.data_dir or None
  try:
    full_name = tfds_builders.population_name(data_config.name, data_config.get("simulator", ""))
    if tfds.builder(full_name, data_dir=data_dir).is_prepared():
      return
  except (tfds.core.registered.DatasetNotFoundError, ValueError):
    return  # an unknown name: the pipeline names the problem in one line
  name, _, config_name = full_name.partition("/")
  kwargs = dict(
    config=config_name or None,
    manual_dir=data_config.get("manual_dir", "") or None,
    labels=data_config.get("labels", ""),
  )
  if storage.is_remote(data_dir):
    # array_record cannot write to a bucket: build on local disk, then upload.
    with storage.staged_directory(data_dir) as local_dir:
      build_dataset(name, data_dir=str(local_dir), **kwargs)
  else:
    build_dataset(name, data_dir=data_dir, **kwargs)


def _prepare(builder, overwrite, manual_dir, beam_pipeline_options, labels):
  from stress_jax.preprocess.ingest import IngestError

  if builder.is_prepared() and not overwrite:
    # The stored names: this builder's info holds the ones just asked for.
    built = tfds.builder_from_directory(builder.data_dir).info.features["label"].names
    if labels and built != list(labels):
      raise BuildError(
        f"{builder.data_dir} was built with labels {','.join(built)}, not "
        f"{','.join(labels)}; add --overwrite to rebuild it"
      )
    return builder
  remove_stale_incomplete(builder)
  download_config = tfds.download.DownloadConfig(
    manual_dir=manual_dir or None,
    beam_options=beam_options(beam_pipeline_options),
    download_mode=(
      tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
      if overwrite
      else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    ),
  )
  # One bar for the whole build (the builders' own), not TFDS's one per split.
  tfds.disable_progress_bar()
  try:
    builder.download_and_prepare(download_config=download_config)
  except IngestError as error:
    raise BuildError(f"{builder.name}/{builder.builder_config.name}: {_short(error)}") from error
  except AssertionError as error:
    if "Manual directory" not in str(error):
      raise
    raise BuildError(
      f"{builder.name}/{builder.builder_config.name} needs --manual_dir (or "
      f"data.manual_dir): {str(error).split('. ')[0].strip()}"
    ) from None
  return builder


def _short(error: BaseException, items: int = 5) -> str:
  """One line; a message listing many items (sources, rows) keeps the first few."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  head, rest = lines[:1], lines[1:]
  more = f"; and {len(rest) - items} more" if len(rest) > items else ""
  return " ".join(head) + (" " + "; ".join(rest[:items]) if rest else "") + more


def main(argv: Sequence[str]) -> None:
  if len(argv) != 2:
    raise BuildError(
      "give one dataset, e.g. stress_faces, stress_faces/synthetic or yonsei_stress"
      + (f"; got {' '.join(argv[1:])}" if len(argv) > 2 else "")
    )
  cli.quiet_logging("error")
  start = time.perf_counter()
  builder = build_dataset(argv[1], **cli.flag_arguments(FLAGS, build_dataset))
  seconds = time.perf_counter() - start
  splits = builder.info.splits
  examples = sum(split.num_examples for split in splits.values())
  print(
    f"{builder.info.full_name}: {len(splits)} splits, {examples} examples, "
    f"{builder.info.dataset_size} in {builder.data_dir} ({seconds:.1f} s)"
  )


if __name__ == "__main__":
  cli.run(main, FLAGS, "data.build")
