"""The CPU demo on the embedded synthetic data (what `python train.py` runs).

python train.py --config=stress_jax/configs/demo.py --workdir=runs/demo
"""

from stress_jax.configs import common


def get_config():
  config = common.base_config()
  config.data.name = "stress_faces/synthetic"
  config.data.num_frames = 16
  config.protocol.num_folds = 4
  config.protocol.num_val_subjects = 2

  model = config.model
  model.stem_width = 16
  model.stage_widths = (16, 32, 64)
  model.stage_blocks = (1, 1, 1)
  model.head_width = 128
  model.attention_hidden = 64
  model.landmark_hidden = 64
  model.dropout_rate = 0.3
  model.num_classes = 3

  config.input.batch_size = 16
  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 50
  config.train.num_epochs = 12
  config.train.checkpoint_every_steps = 100
  return config
