"""Builds this project's TFDS datasets as array_record shards, without TensorFlow.

The `tfds build` CLI imports TensorFlow; this does the same job for the builders
in `tfds_builders/`:

  python -m stress_jax.data.build stress_faces --config=synthetic
  python -m stress_jax.data.build stress_faces/synthetic_tiny --data_dir=/tmp/tfds
  python -m stress_jax.data.build yonsei_stress --manual_dir=/path/to/YonseiStressImageDatabase \
      --beam_pipeline_options=runner=DirectRunner,direct_num_workers=4

From Python (what train.py calls when a dataset is missing): `build_dataset(...)`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Mapping, Sequence

import tensorflow_datasets as tfds

# Dataset name -> builder class in tfds_builders/<name>/. Imported only when asked
# for, so one missing or broken builder does not stop the others from building.
DATASETS = {
  "stress_faces": "StressFaces",
  "ubfc_phys": "UbfcPhys",
  "yonsei_stress": "YonseiStress",
  "feature_maps": "FeatureMaps",
}


def builder_class(dataset: str) -> type[tfds.core.DatasetBuilder]:
  if dataset not in DATASETS:
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
  class_name = DATASETS[dataset]
  module_name = f"tfds_builders.{dataset}"
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name is not None and module_name.startswith(e.name):
      raise ValueError(
        f"dataset {dataset!r} has no builder here: expected a package tfds_builders/{dataset}/ "
        f"defining {class_name}"
      ) from e
    raise
  if not hasattr(module, class_name):
    raise ValueError(f"{module_name} does not define {class_name}")
  return getattr(module, class_name)


def split_name(name: str, config: str | None = None) -> tuple[str, str | None]:
  """'stress_faces/synthetic' -> ('stress_faces', 'synthetic'); `config` must agree."""
  dataset, _, named = name.partition("/")
  if ":" in dataset or ":" in named:
    raise ValueError(f"{name!r}: versions are not supported here, build the builder's own")
  if named and config and named != config:
    raise ValueError(f"{name!r} names config {named!r} but config={config!r} was given")
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


def build_dataset(
  name: str,
  config: str | None = None,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  overwrite: bool = False,
  beam_pipeline_options: str | Sequence[str] | Mapping | None = None,
) -> tfds.core.DatasetBuilder:
  """Prepares `name` (optionally 'dataset/config') as array_record shards; returns its builder.

  An already prepared dataset is reused unless `overwrite`.
  """
  dataset, config = split_name(name, config)
  cls = builder_class(dataset)
  builder = cls(config=config, data_dir=data_dir or None, file_format="array_record")
  download_config = tfds.download.DownloadConfig(
    manual_dir=manual_dir or None,
    beam_options=beam_options(beam_pipeline_options),
    download_mode=(
      tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
      if overwrite
      else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    ),
  )
  builder.download_and_prepare(download_config=download_config)
  return builder


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("dataset", help="e.g. stress_faces, stress_faces/synthetic, yonsei_stress")
  parser.add_argument("--config", default=None, help="builder config name")
  parser.add_argument(
    "--data_dir", default=None, help="default: $TFDS_DATA_DIR or ~/tensorflow_datasets"
  )
  parser.add_argument("--manual_dir", default=None, help="where manually downloaded data lies")
  parser.add_argument("--overwrite", action="store_true", help="rebuild even if prepared")
  parser.add_argument(
    "--beam_pipeline_options",
    default=None,
    help="comma-separated Beam flags, e.g. runner=DirectRunner",
  )
  args = parser.parse_args(argv)
  start = time.perf_counter()
  try:
    builder = build_dataset(
      args.dataset,
      config=args.config,
      data_dir=args.data_dir,
      manual_dir=args.manual_dir,
      overwrite=args.overwrite,
      beam_pipeline_options=args.beam_pipeline_options,
    )
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  seconds = time.perf_counter() - start
  splits = builder.info.splits
  examples = sum(split.num_examples for split in splits.values())
  print(
    f"{builder.info.full_name}: {len(splits)} splits, {examples} examples, "
    f"{builder.info.dataset_size} in {builder.data_dir} ({seconds:.1f} s)"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
