"""The Yonsei Stress Image Database: 7x7x256 feature maps in, no landmarks, 10 subject folds.

  python -m stress_jax.data.build yonsei_stress --manual_dir=/path/to/YonseiStressImageDatabase
  python train.py --config=stress_jax/configs/yonsei.py --workdir=runs/yonsei \
      --config.data.task=3class --config.protocol.fold=0
  python train.py --config=stress_jax/configs/yonsei.py:binary --workdir=runs/yonsei_binary

The task (4class, 3class, binary) is chosen when clips are read, not when they are built:
records store the stage (4 labels) and `stress_jax.featuredb.yonsei.task_label_map(task)` maps
it. `model.num_classes` must equal `num_classes_for_task(data.task)`. `get_config(task)`
sets both; a `--config.data.task=...` override cannot update num_classes, so the train
code sets `model.num_classes` from `data.task` for yonsei_stress.

`data.name` names the builder config that holds `data.num_frames`-frame clips
(`yonsei_stress/clips<T>`, T in 48, 32, 16, 8, 4); change both together.
"""

from stress_jax.configs import common
from stress_jax.featuredb.yonsei import TASKS, num_classes_for_task

__all__ = ["TASKS", "get_config", "num_classes_for_task"]


def get_config(task: str = "4class"):
  task = task or "4class"
  config = common.base_config()
  config.data.name = "yonsei_stress/clips48"
  config.data.build_if_missing = False  # manual download: build with stress_jax.data.build
  config.data.task = task  # "4class", "3class" or "binary"
  config.data.num_frames = 48
  config.protocol.kind = "kfold"
  config.protocol.num_folds = 10
  config.protocol.num_val_subjects = 5
  config.input.augment.flip = False  # feature maps of a flipped face are not a flip of the map
  config.input.augment.brightness = 0.0
  config.input.augment.contrast = 0.0

  config.model.input_mode = "features"
  config.model.landmark_stream = False
  config.model.num_classes = num_classes_for_task(task)
  config.input.batch_size = 32
  config.train.num_epochs = 20
  return config
