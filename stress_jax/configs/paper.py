"""The paper's protocol on aligned face clips: full ResNet-18 trunk through stage 3, 48-frame clips.

  python -m stress_jax.data.build stress_faces --config=video48 --manual_dir=/path/to/videos
  python train.py --config=stress_jax/configs/paper.py --workdir=runs/paper \
      --config.data.manual_dir=/path/to/videos
"""

from stress_jax.configs import common


def get_config():
  config = common.base_config()
  config.data.name = "stress_faces/video48"
  config.data.num_frames = 48
  config.protocol.kind = "kfold"
  config.protocol.num_folds = 10
  config.input.batch_size = 32
  config.optim.learning_rate = 1e-3
  config.optim.warmup_steps = 500
  config.train.num_epochs = 30
  # bfloat16 compute on TPU/GPU, float32 on CPU; parameters stay float32. Override with
  # --config.model.dtype=float32 (or bfloat16).
  config.model.dtype = "auto"
  return config
