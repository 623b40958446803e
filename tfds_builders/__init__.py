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
