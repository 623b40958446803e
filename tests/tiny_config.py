"""A seconds-long training config over the tests' fake_clips dataset.

  python train.py --config=tests/tiny_config.py --workdir=/tmp/tiny \
      --config.data.data_dir=/tmp/fake_data
"""

from stress_jax.configs import demo


def get_config():
  config = demo.get_config()
  config.data.name = "fake_clips"
  config.data.num_frames = 4
  config.data.build_if_missing = False
  config.protocol.num_folds = 3
  config.protocol.num_val_subjects = 1
  model = config.model
  model.stem_width = 8
  model.stage_widths = (8, 8, 16)
  model.head_width = 16
  model.attention_hidden = 8
  model.landmark_hidden = 8
  config.input.batch_size = 4
  config.input.eval_batch_size = 8
  config.optim.warmup_steps = 2
  config.train.num_epochs = 2
  config.train.log_every_steps = 1
  config.train.checkpoint_every_steps = 5
  config.train.progress_bar = False
  return config
