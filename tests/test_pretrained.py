"""Importing torchvision-layout ResNet-18 weights: key table, numerical contract, errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from stress_jax import steps
from stress_jax.configs import common
from stress_jax.models import build_model, normalize_pixels
from stress_jax.models import pretrained as pw
from tests import torch_resnet18
from tests.conftest import in_process_error, run_tool

# torchvision's ResNet-18 state dict (models/resnet.py, resnet18 = BasicBlock x [2, 2, 2, 2]),
# written out from its documented architecture. "bn C" stands for weight, bias,
# running_mean, running_var of shape (C,) and num_batches_tracked of shape ().
TORCHVISION_RESNET18 = """
conv1.weight 64 3 7 7
bn1 64
layer1.0.conv1.weight 64 64 3 3
layer1.0.bn1 64
layer1.0.conv2.weight 64 64 3 3
layer1.0.bn2 64
layer1.1.conv1.weight 64 64 3 3
layer1.1.bn1 64
layer1.1.conv2.weight 64 64 3 3
layer1.1.bn2 64
layer2.0.conv1.weight 128 64 3 3
layer2.0.bn1 128
layer2.0.conv2.weight 128 128 3 3
layer2.0.bn2 128
layer2.0.downsample.0.weight 128 64 1 1
layer2.0.downsample.1 128
layer2.1.conv1.weight 128 128 3 3
layer2.1.bn1 128
layer2.1.conv2.weight 128 128 3 3
layer2.1.bn2 128
layer3.0.conv1.weight 256 128 3 3
layer3.0.bn1 256
layer3.0.conv2.weight 256 256 3 3
layer3.0.bn2 256
layer3.0.downsample.0.weight 256 128 1 1
layer3.0.downsample.1 256
layer3.1.conv1.weight 256 256 3 3
layer3.1.bn1 256
layer3.1.conv2.weight 256 256 3 3
layer3.1.bn2 256
layer4.0.conv1.weight 512 256 3 3
layer4.0.bn1 512
layer4.0.conv2.weight 512 512 3 3
layer4.0.bn2 512
layer4.0.downsample.0.weight 512 256 1 1
layer4.0.downsample.1 512
layer4.1.conv1.weight 512 512 3 3
layer4.1.bn1 512
layer4.1.conv2.weight 512 512 3 3
layer4.1.bn2 512
fc.weight 1000 512
fc.bias 1000
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_table() -> dict[str, tuple[int, ...]]:
  table = {}
  for line in TORCHVISION_RESNET18.strip().splitlines():
    name, *dims = line.split()
    is_bn = name.split(".")[-1] in ("bn1", "bn2", "1") and len(dims) == 1 and "fc" not in name
    if is_bn:
      for leaf in ("weight", "bias", "running_mean", "running_var"):
        table[f"{name}.{leaf}"] = (int(dims[0]),)
      table[f"{name}.num_batches_tracked"] = ()
    else:
      table[name] = tuple(int(d) for d in dims)
  return table


@pytest.fixture(scope="module")
def torch_model():
  return torch_resnet18.randomized(seed=0)


@pytest.fixture(scope="module")
def weight_files(torch_model, tmp_path_factory):
  folder = tmp_path_factory.mktemp("weights")
  state = torch_model.state_dict()
  torch.save(state, folder / "resnet18.pth")
  save_file({k: v.numpy().copy() for k, v in state.items()}, str(folder / "resnet18.safetensors"))
  return folder


def paper_model_config(**overrides):
  config = common.model_config()
  config.update({"pixel_norm": "imagenet", **overrides})
  return config


def _batch(images: np.ndarray) -> dict:
  """One clip of the given frames in [0, 1], shaped like a device batch."""
  frames = images.shape[0]
  return {
    "inputs": images[None].astype(np.float32),
    "landmarks": np.zeros((1, frames, 68, 2), np.float32),
    "frame_mask": np.ones((1, frames), bool),
    "label": np.zeros((1,), np.int32),
    "photometric": np.zeros((1, 2), np.float32),
    "valid": np.ones((1,), bool),
  }


def initialise(model_config, batch, optim=None):
  """What Trainer.initial_state does: init, then the file named by model_config.pretrained."""
  model = build_model(model_config)
  tx = steps.make_optimizer(
    optim or common.base_config().optim, 10, bool(model_config.freeze_trunk)
  )
  init = functools.partial(steps.init_state, model, tx, dtype=jnp.float32)
  abstract = jax.eval_shape(init, jax.random.key(0), batch)
  weights = None
  if model_config.pretrained:
    variables = {"params": abstract.params, "batch_stats": abstract.batch_stats}
    weights = pw.load_for_model(model_config.pretrained, variables)
  return model, tx, jax.jit(init)(jax.random.key(0), batch, weights)


def test_reference_resnet18_has_torchvision_keys_and_shapes(torch_model):
  ours = {k: tuple(v.shape) for k, v in torch_model.state_dict().items()}
  assert ours == torchvision_table()
  assert len(ours) == 122
  norms = [m for m in torch_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  assert norms and all(m.eps == 1e-5 for m in norms)
  assert torch_model.conv1.padding == (3, 3) and torch_model.conv1.stride == (2, 2)
  assert torch_model.maxpool.padding == 1 and torch_model.maxpool.stride == 2
  assert torch_model.layer2[0].conv1.stride == (2, 2)
  assert torch_model.layer2[0].downsample[0].stride == (2, 2)


def test_pth_and_safetensors_hold_the_same_tensors(torch_model, weight_files):
  pth = pw.read_state_dict(weight_files / "resnet18.pth")
  safetensors = pw.read_state_dict(weight_files / "resnet18.safetensors")
  assert pth.keys() == safetensors.keys() == torch_model.state_dict().keys()
  for key, value in torch_model.state_dict().items():
    np.testing.assert_array_equal(pth[key], value.numpy())
    np.testing.assert_array_equal(safetensors[key], value.numpy())


def test_stage3_output_equals_torch_layer3(torch_model, weight_files):
  """Through a .pth (torch.load); the Trainer test of test_freeze.py reads .safetensors."""
  rng = np.random.default_rng(1)
  images = rng.uniform(0, 1, (3, 112, 112, 3)).astype(np.float32)
  config = paper_model_config(pretrained=str(weight_files / "resnet18.pth"))
  model, _, state = initialise(config, _batch(images))
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  def stage3(module, x):
    return module.trunk(normalize_pixels(x, module.config.pixel_norm), False)

  ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, method=stage3))(variables, images))
  with torch.no_grad():
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    theirs = torch_model.layer3_output((x - mean) / std).permute(0, 2, 3, 1).numpy()
  assert ours.shape == theirs.shape == (3, 7, 7, 256)
  # A real signal, not a map of zeros; at ImageNet-like magnitudes (max ~2 here) the two
  # float32 results differ by ~1e-6, each ~5e-7 from a float64 torch run.
  assert np.abs(theirs).max() > 0.5
  np.testing.assert_array_less(np.abs(ours - theirs).max(), 1e-4)
  # ResNet-18's layer4 fits the paper head (256 -> 512): loaded too, stride aside.
  np.testing.assert_array_equal(
    state.params["head"]["block1"]["conv1"]["kernel"],
    torch_model.layer4[0].conv1.weight.detach().numpy().transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(
    state.batch_stats["head"]["block1"]["proj_bn"]["var"],
    torch_model.layer4[0].downsample[1].running_var.numpy(),
  )


def test_imagenet_normalisation_is_torchvision_normalize():
  x = np.random.default_rng(0).uniform(0, 1, (2, 5, 5, 3)).astype(np.float32)
  expected = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
  ours = np.asarray(normalize_pixels(jnp.asarray(x), "imagenet"))
  np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(
    np.asarray(normalize_pixels(jnp.asarray(x), "fixed")), (x - 0.5) / 0.25
  )
  with pytest.raises(ValueError, match="pixel_norm"):
    build_model(paper_model_config(pixel_norm="caffe"))


def _abstract(model_config):
  model = build_model(model_config)
  images = np.zeros((1, 112, 112, 3), np.float32)
  batch = _batch(images)
  variables = jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.key(0)},
      batch["inputs"],
      batch["landmarks"],
      batch["frame_mask"],
    )
  )
  return variables


def _error(tensors, model_config) -> str:
  with pytest.raises(pw.PretrainedError) as error:
    pw.match_weights(tensors, _abstract(model_config), "w.safetensors")
  message = str(error.value)
  assert "\n" not in message
  return message


def test_missing_key_names_the_key_and_shape(torch_model):
  tensors = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  del tensors["layer2.1.bn2.running_var"]
  message = _error(tensors, paper_model_config())
  assert "missing layer2.1.bn2.running_var" in message
  assert "(128,)" in message and "w.safetensors" in message


def test_wrong_shape_names_the_key_and_both_shapes(torch_model):
  tensors = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  tensors["layer3.0.conv2.weight"] = np.zeros((256, 256, 1, 1), np.float32)
  message = _error(tensors, paper_model_config())
  assert (
    "layer3.0.conv2.weight has shape (256, 256, 1, 1) but the model needs (256, 256, 3, 3)"
    in (message)
  )
  # The demo's narrow trunk: the first tensor in key order that does not fit.
  tensors = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  message = _error(tensors, paper_model_config(stem_width=8, stage_widths=(8, 16, 32)))
  assert "bn1.bias has shape (64,) but the model needs (8,) for trunk/stem_bn/bias" in message


def test_surplus_trunk_block_is_an_error(torch_model):
  tensors = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  message = _error(tensors, paper_model_config(stage_blocks=(1, 2, 2)))
  assert "layer1.1." in message and "stage_blocks=(2, 2, 2)" in message


def test_head_of_another_width_stays_random_with_a_log_line(torch_model, caplog):
  tensors = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  config = paper_model_config(head_width=64)
  with caplog.at_level("WARNING", logger="absl"):
    weights = pw.match_weights(tensors, _abstract(config), "w.safetensors")
  assert not any(k.startswith(("params/head", "batch_stats/head")) for k in weights)
  assert "params/trunk/stage3_block2/conv2/kernel" in weights
  lines = [r.getMessage() for r in caplog.records if "head left at" in r.getMessage()]
  assert len(lines) == 1 and "layer4.0.bn1.bias" in lines[0] and "(64,)" in lines[0]


def test_unreadable_files_are_one_line_errors(tmp_path):
  with pytest.raises(pw.PretrainedError, match="no such file"):
    pw.read_state_dict(tmp_path / "absent.safetensors")
  bad = tmp_path / "bad.safetensors"
  bad.write_bytes(b"not a safetensors file")
  with pytest.raises(pw.PretrainedError, match="not a safetensors file"):
    pw.read_state_dict(bad)
  pickled = tmp_path / "object.pth"
  torch.save({"state_dict": {"x": torch.zeros(1)}, "fn": functools.partial(print)}, pickled)
  with pytest.raises(pw.PretrainedError, match="torch.load failed") as error:
    pw.read_state_dict(pickled)
  assert "\n" not in str(error.value)


def test_convert_cli_writes_the_same_tensors(weight_files, tmp_path):
  out = tmp_path / "converted.safetensors"
  pth = str(weight_files / "resnet18.pth")
  status, stdout, stderr = run_tool("stress_jax.models.pretrained", "convert", pth, str(out))
  assert status == 0, stderr
  assert "wrote 122 tensors" in stdout
  ours, theirs = pw.read_state_dict(out), pw.read_state_dict(weight_files / "resnet18.pth")
  assert ours.keys() == theirs.keys()
  for key in ours:
    np.testing.assert_array_equal(ours[key], theirs[key])
  line = in_process_error(
    "stress_jax.models.pretrained", "convert", str(tmp_path / "absent.pth"), str(out)
  )
  assert (
    line == f"models.pretrained: error: pretrained weights {tmp_path / 'absent.pth'}: no such file"
  )
