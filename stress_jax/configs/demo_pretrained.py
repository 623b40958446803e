"""The demo with ResNet-18's trunk widths, to start from (and freeze) imported ImageNet weights.

  python -m stress_jax.models.pretrained convert resnet18-f37072fd.pth resnet18.safetensors
  python train.py --config=stress_jax/configs/demo_pretrained.py --workdir=runs/demo_pretrained \
      --config.model.pretrained=resnet18.safetensors --config.model.freeze_trunk=True \
      --config.model.pixel_norm=imagenet

Imported weights need the trunk they were trained in (stem 64, stages 64/128/256 of two
blocks each), where the demo's own trunk is narrow (8/16/32, one block). The head stays
the demo's 64 channels, so ResNet-18's layer4 (512 channels) is not used and the head
starts random (one log line says so). A frozen trunk runs forward only, but it is the
full ResNet-18 through stage 3: batches of 8 clips and 3 epochs keep the run near the
plain demo's length on a 2-core CPU.
"""

from stress_jax.configs import demo


def get_config():
  config = demo.get_config()
  model = config.model
  model.stem_width = 64
  model.stage_widths = (64, 128, 256)
  model.stage_blocks = (2, 2, 2)
  config.input.batch_size = 8
  config.input.eval_batch_size = 16
  config.train.num_epochs = 3
  return config
