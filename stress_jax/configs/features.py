"""Training on a feature-map database (docs/feature_database.md): no trunk, maps in.

  python -m stress_jax.featuredb.write --source=stress_faces/synthetic_small \
      --workdir=runs/paper --output=/data/features   # a trunk with 256-wide stage 3
  python train.py --config=stress_jax/configs/features.py:8 --workdir=runs/features \
      --config.data.manual_dir=/data/features --config.data.data_dir=/data/features_tfds

`data.name` is `feature_maps/clips<T>` (T in 48, 32, 16, 8, 4: the config argument, 16
by default, sets it and `data.num_frames`); it is built from `data.manual_dir` on first
use. Give each database its own `data.data_dir`: the built dataset is named after the
builder, not the folder. The class names are the database's (its database.json, else
its label folders), and `model.num_classes` follows them.
"""

from stress_jax.configs import common


def get_config(num_frames: str = "16"):
  num_frames = int(num_frames or 16)
  config = common.base_config()
  config.data.name = f"feature_maps/clips{num_frames}"
  config.data.num_frames = num_frames
  config.data.build_if_missing = True  # from data.manual_dir
  config.protocol.num_folds = 4
  config.protocol.num_val_subjects = 2
  # Maps of a flipped or re-lit face are not a flip or a re-lighting of the maps.
  config.input.augment.flip = False
  config.input.augment.brightness = 0.0
  config.input.augment.contrast = 0.0
  config.model.input_mode = "features"
  config.model.landmark_stream = True  # zeros where the database has no landmarks
  return config
