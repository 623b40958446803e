"""The Yonsei Stress Image Database: 7x7x256 feature maps in, no landmarks, 10 subject folds.

  python -m stress_jax.data.build yonsei_stress --manual_dir=/path/to/YonseiStressImageDatabase
  python train.py --config=stress_jax/configs/yonsei.py --workdir=runs/yonsei \
      --config.data.task=3class --config.protocol.fold=0
"""

from stress_jax.configs import common


def get_config():
  config = common.base_config()
  config.data.name = "yonsei_stress"
  config.data.build_if_missing = False
  config.data.task = "4class"  # "4class", "3class" or "binary"
  config.data.num_frames = 48
  config.protocol.num_folds = 10
  config.protocol.num_val_subjects = 5
  config.input.augment.flip = False  # feature maps of a flipped face are not a flip of the map
  config.input.augment.brightness = 0.0
  config.input.augment.contrast = 0.0

  config.model.input_mode = "features"
  config.model.landmark_stream = False
  config.model.num_classes = 4
  config.input.batch_size = 32
  config.train.num_epochs = 20
  return config
