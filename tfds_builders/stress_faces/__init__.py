"""The `stress_faces` dataset: eye-aligned face clips labelled by stress level."""

from tfds_builders.stress_faces.stress_faces_dataset_builder import (
  Builder,
  StressFaces,
  StressFacesConfig,
)

__all__ = ["Builder", "StressFaces", "StressFacesConfig"]
