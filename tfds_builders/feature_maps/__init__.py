"""feature_maps: any feature-map database in the shared layout (manual dir) as clip records."""

from tfds_builders.feature_maps.feature_maps_dataset_builder import (
  REPORT_NAME,
  FeatureMaps,
  FeatureMapsConfig,
  load_build_report,
)

__all__ = ["REPORT_NAME", "FeatureMaps", "FeatureMapsConfig", "load_build_report"]
