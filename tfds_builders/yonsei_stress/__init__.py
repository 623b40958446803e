"""yonsei_stress: the Yonsei Stress Image Database (manual download) as clip records."""

from tfds_builders.yonsei_stress.yonsei_stress_dataset_builder import (
  REPORT_NAME,
  YonseiStress,
  YonseiStressConfig,
  config_name,
  load_build_report,
)

__all__ = ["REPORT_NAME", "YonseiStress", "YonseiStressConfig", "config_name", "load_build_report"]
