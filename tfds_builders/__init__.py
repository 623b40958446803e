"""TFDS dataset builders of this project, one package per dataset (the layout `tfds new` makes).

Importing this package registers every builder present here with TFDS, so that
`tfds.builder("stress_faces/synthetic")` and `tfds.data_source(...)` find them.
`stress_jax.data.build` imports one builder by name and says clearly when it is missing.
"""

import importlib

BUILDER_PACKAGES = ("stress_faces", "ubfc_phys", "yonsei_stress", "feature_maps")


def _register() -> None:
  for name in BUILDER_PACKAGES:
    module = f"{__name__}.{name}"
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      # A builder not (yet) in this checkout is fine; a broken import inside one is not.
      if e.name != module:
        raise


_register()


def population_name(name: str, simulator: str | None) -> str:
  """'stress_faces/synthetic' with simulator overrides 'seed=7' -> 'stress_faces/synthetic-seed7'.

  The builder's own `population_name` makes the config name, so each population of the
  simulator lives in its own folder. Unchanged without overrides; ValueError for a
  dataset without a simulator or overrides it does not take.
  """
  import tensorflow_datasets as tfds

  if not simulator or not simulator.strip():
    return name
  dataset, _, config = name.partition("/")
  try:
    make_name = getattr(tfds.builder_cls(dataset), "population_name", None)
  except tfds.core.registered.DatasetNotFoundError:
    make_name = None
  if make_name is None:
    raise ValueError(f"dataset {dataset!r} has no simulator to apply {simulator.strip()!r} to")
  return f"{dataset}/{make_name(config, simulator)}"
