"""ubfc_phys: the UBFC-Phys database (manual download) as eye-aligned face clips."""

from tfds_builders.ubfc_phys.ubfc_phys_dataset_builder import UbfcPhys, UbfcPhysConfig

__all__ = ["UbfcPhys", "UbfcPhysConfig"]
