"""UBFC-Phys (56 subjects, T1 rest / T2 speech / T3 arithmetic), from its videos as distributed.

Build once (8.4 hours of 1024x1024 video; the README's Data section gives the
expected build time), then train:

  python -m stress_jax.data.build ubfc_phys/tasks --manual_dir=/path/to/UBFC-Phys
  python train.py --config=stress_jax/configs/ubfc_phys.py --workdir=runs/ubfc_tasks
  python train.py --config=stress_jax/configs/ubfc_phys.py:binary --workdir=runs/ubfc_binary

(`:binary` reads `ubfc_phys/binary`, rest vs stress; build that config too.) The
build writes `ingest_report.json` next to the dataset: every video's frames, frames
with a face, the detection scale used and clips, each subject's group (test/ctrl)
and every missing or empty file of the copy, which is skipped.
"""

from stress_jax.configs import common
from tfds_builders.ubfc_phys.ubfc_phys_dataset_builder import UbfcPhys


def get_config(scheme: str = "tasks"):
  scheme = scheme or "tasks"
  builder_config = UbfcPhys.builder_configs.get(scheme)
  if builder_config is None:
    raise ValueError(f"unknown UBFC-Phys config {scheme!r}; known: tasks, binary")
  config = common.video_clips_config(f"ubfc_phys/{scheme}", builder_config.preprocess)
  config.data.build_if_missing = False  # manual download: build with stress_jax.data.build

  # 56 subjects: 10-fold subject-independent cross-validation, 5 validation subjects.
  config.protocol.kind = "kfold"
  config.protocol.num_folds = 10
  config.protocol.num_val_subjects = 5

  config.model.num_classes = len(builder_config.label_names)
  config.optim.warmup_steps = 200
  return config
