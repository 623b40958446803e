"""A torch.nn ResNet-18 with torchvision's module tree, for the pretrained-weights tests.

torchvision itself does not import next to the CPU torch wheel on the project's machines,
so this file builds the same network: module names (conv1, bn1, layer1..layer4 of two
BasicBlocks each, downsample = Sequential(1x1 conv, BatchNorm), fc), shapes, strides,
paddings (7x7/2 pad 3 stem, 3x3/2 pad 1 max pool), bias-free convolutions and BatchNorm
epsilon 1e-5. tests/test_pretrained.py checks its state-dict keys and shapes against
torchvision's table.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
  def __init__(self, inputs: int, width: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(inputs, width, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.downsample = None
    if stride != 1 or inputs != width:
      self.downsample = nn.Sequential(
        nn.Conv2d(inputs, width, 1, stride, bias=False), nn.BatchNorm2d(width)
      )

  def forward(self, x):
    shortcut = x if self.downsample is None else self.downsample(x)
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return self.relu(y + shortcut)


class ResNet18(nn.Module):
  """torchvision's resnet18(); other widths/block counts only for tests of tiny configs."""

  def __init__(self, num_classes: int = 1000, widths=(64, 64, 128, 256, 512), blocks: int = 2):
    super().__init__()
    stem, *widths = widths
    self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(stem)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inputs = stem
    for index, width in enumerate(widths):
      stride = 1 if index == 0 else 2
      layer = [BasicBlock(inputs, width, stride)]
      layer += [BasicBlock(width, width, 1) for _ in range(blocks - 1)]
      setattr(self, f"layer{index + 1}", nn.Sequential(*layer))
      inputs = width
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(inputs, num_classes)

  def layer3_output(self, x):
    """NCHW images (already normalised) -> the stage-3 map, NCHW."""
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    return self.layer3(self.layer2(self.layer1(x)))

  def forward(self, x):
    x = self.layer4(self.layer3_output(x))
    return self.fc(torch.flatten(self.avgpool(x), 1))


def randomized(seed: int = 0, **architecture) -> ResNet18:
  """Random weights and random BatchNorm statistics, in eval mode."""
  generator = torch.Generator().manual_seed(seed)
  model = ResNet18(**architecture)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        size = module.num_features
        module.weight.copy_(torch.rand(size, generator=generator) * 0.5 + 0.25)
        module.bias.copy_(torch.randn(size, generator=generator) * 0.2)
        module.running_mean.copy_(torch.randn(size, generator=generator) * 0.3)
        module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
      elif isinstance(module, nn.Conv2d):
        fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
        module.weight.copy_(
          torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_out) ** 0.5
        )
  return model.eval()
