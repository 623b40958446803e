"""feature_maps: clips of any feature-map database in the shared layout (docs/feature_database.md).

  DIR/<subject>/<label>/<stem>.npy   (7, 7, 256) float32 or float16, stem = timestamp or index
  DIR/<subject>/<label>/_landmarks.npz, DIR/database.json   optional

Label names come from database.json's `label_names` when present, else from the sorted
label folder names; they are stored with the built dataset. `stress_jax.featuredb.write`
writes such a database from a trained or pretrained trunk.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from stress_jax.featuredb.builder import (
  REPORT_NAME,
  FeatureDatabaseBuilder,
  FeatureDatabaseConfig,
  clips_configs,
  load_build_report,
)

__all__ = ["REPORT_NAME", "FeatureMaps", "FeatureMapsConfig", "load_build_report"]


@dataclasses.dataclass(eq=False)
class FeatureMapsConfig(FeatureDatabaseConfig):
  """How recordings become clips. See `stress_jax.featuredb.clips.ClipSpec`."""


class FeatureMaps(FeatureDatabaseBuilder):
  """A feature-map database (subject/label/frame .npy files) as clips, one split per subject."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = clips_configs(FeatureMapsConfig)
  DEFAULT_CONFIG_NAME = "clips48"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Pass the database folder as --manual_dir: DIR/<subject>/<label>/<stem>.npy, one
  (7, 7, 256) float32 or float16 feature map per frame, <stem> a YYYYMMDD_hhmmss_ms
  timestamp or an integer frame index; subject folders are [A-Za-z][A-Za-z0-9_]*.
  `python -m stress_jax.featuredb.write` writes one from a trunk. Each database needs its
  own --data_dir: the built dataset is named after the builder, not the folder.
  """


Builder = FeatureMaps  # the name `tfds build` looks for in a *_dataset_builder.py
