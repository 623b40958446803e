"""yonsei_stress: clips of ResNet-18 feature maps from the Yonsei Stress Image Database.

The database is one instance of the feature-map database layout: the folder rules and
tasks are in `stress_jax.featuredb.yonsei`, the scanning, clip rules, build report and
Beam wiring in `stress_jax.featuredb` (shared with the general `feature_maps` builder).
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from stress_jax.featuredb import yonsei
from stress_jax.featuredb.builder import (
  REPORT_NAME,
  FeatureDatabaseBuilder,
  FeatureDatabaseConfig,
  clips_configs,
  config_name,
  load_build_report,
)

__all__ = ["REPORT_NAME", "YonseiStress", "YonseiStressConfig", "config_name", "load_build_report"]


@dataclasses.dataclass(eq=False)
class YonseiStressConfig(FeatureDatabaseConfig):
  """How recordings become clips. See `stress_jax.featuredb.clips.ClipSpec`."""


class YonseiStress(FeatureDatabaseBuilder):
  """The Yonsei Stress Image Database as clips of 7x7x256 feature maps, one split per subject."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
    "1.0.0": "Initial release.",
    "1.1.0": "Landmarks from _landmarks.npz files when present (else zeros).",
  }
  BUILDER_CONFIGS = clips_configs(YonseiStressConfig)
  DEFAULT_CONFIG_NAME = "clips48"
  LABEL_NAMES = yonsei.STAGE_NAMES
  LABEL_TASKS = yonsei.LABEL_TASKS
  FOLDERS = "<subject>/<stage>"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Request the Yonsei Stress Image Database on IEEE DataPort, unpack it and pass its root
  folder as --manual_dir. The root holds one folder per subject (01 .. 50), each holding
  the four stage folders ("Native Language Script Reading", "Native Language Interview",
  "Non-native Language Script Reading", "Non-native Language Interview"; spaces or
  underscores, any case), each holding YYYYMMDD_hhmmss_ms.npy files of shape (7, 7, 256).
  """

  def folder_layout(self, root: str):
    del root
    return yonsei.LAYOUT


Builder = YonseiStress  # the name `tfds build` looks for in a *_dataset_builder.py
