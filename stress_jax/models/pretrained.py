"""ResNet-18 weights in torchvision/timm layout -> StressNet's trunk (and head where it fits).

  python -m stress_jax.models.pretrained convert resnet18-f37072fd.pth resnet18.safetensors

Training reads the file given as `model.pretrained` once, at initialisation (steps.init_state
through trainer.Trainer.initial_state). Both torchvision's and timm's ResNet-18 name their
tensors the same way; the correspondence is

  conv1 / bn1                      trunk/stem_conv / trunk/stem_bn
  layer{s}.{b}.conv1|bn1|conv2|bn2 trunk/stage{s}_block{b+1}/conv1|bn1|conv2|bn2   (s = 1..3)
  layer{s}.{b}.downsample.0|1      trunk/stage{s}_block{b+1}/proj_conv|proj_bn
  layer4.{b}.*                     head/block{b+1}/*   (b = 0, 1; only if every shape fits)

Convolutions go from PyTorch's OIHW to flax's HWIO; BatchNorm weight, bias, running_mean and
running_var become scale, bias and the batch_stats mean and var (num_batches_tracked is not
used). The trunk's BatchNorm uses PyTorch's epsilon 1e-5 (resnet.BN_EPSILON), so inference
computes what PyTorch's eval mode computes. StressNet's head keeps the 7x7 map, so layer4's
first block runs at stride 1 here where ResNet-18 runs it at stride 2: the weights fit, the
receptive field differs. A head of another width (or a file without layer4) stays at its
random initialisation, said in one log line. Every trunk tensor must be in the file with
the model's shape (ResNet-18's widths 64/64/128/256 and two blocks per stage); anything
else is a one-line PretrainedError naming the tensor and both shapes.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Mapping, Sequence

import numpy as np
from absl import flags, logging
from flax import traverse_util

# Not imported by stress_jax.models itself, so the models still stand on the face
# primitives alone (tests/test_face_geometry.py); only loading weights reaches the CLI.
from stress_jax import cli

BN_NAMES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
TORCH_MODULES = {"proj_conv": "downsample.0", "proj_bn": "downsample.1"}
HEAD_LAYER = "layer4"


FLAGS = flags.FlagValues()  # `convert IN OUT` is positional; only absl's own flags


class PretrainedError(cli.UserError, ValueError):
  """A pretrained-weights file that cannot be read or does not fit the model (one line)."""


def torch_key(path: tuple[str, ...]) -> str | None:
  """flax variable path (collection, module, ..., leaf) -> its torchvision key, or None."""
  _, top, *modules, leaf = path
  if top == "trunk" and modules[0].startswith("stem_"):
    module = {"stem_conv": "conv1", "stem_bn": "bn1"}[modules[0]]
  elif top == "trunk":
    stage, block = re.fullmatch(r"stage(\d+)_block(\d+)", modules[0]).groups()
    module = f"layer{stage}.{int(block) - 1}.{TORCH_MODULES.get(modules[1], modules[1])}"
  elif top == "head":
    block = int(re.fullmatch(r"block(\d+)", modules[0]).group(1))
    module = f"{HEAD_LAYER}.{block - 1}.{TORCH_MODULES.get(modules[1], modules[1])}"
  else:
    return None
  return f"{module}.{'weight' if leaf == 'kernel' else BN_NAMES[leaf]}"


def to_flax(value: np.ndarray) -> np.ndarray:
  """A torch tensor as numpy -> flax layout (OIHW conv kernels become HWIO), float32."""
  value = np.asarray(value, np.float32)
  return np.transpose(value, (2, 3, 1, 0)) if value.ndim == 4 else value


def _torch_shape(flax_shape: tuple[int, ...]) -> tuple[int, ...]:
  if len(flax_shape) == 4:
    height, width, inputs, outputs = flax_shape
    return (outputs, inputs, height, width)
  return tuple(flax_shape)


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Tensors of a .safetensors file, or of a .pth/.pt state dict (torch, weights_only)."""
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise PretrainedError(f"pretrained weights {path}: no such file")
  if path.suffix == ".safetensors":
    from safetensors.numpy import load_file

    try:
      return dict(load_file(str(path)))
    except Exception as error:  # safetensors raises its own error types
      raise PretrainedError(
        f"pretrained weights {path}: not a safetensors file ({error})"
      ) from None
  if path.suffix not in (".pth", ".pt", ".bin"):
    raise PretrainedError(
      f"pretrained weights {path}: expected a .safetensors, .pth or .pt file, got {path.suffix!r}"
    )
  try:
    import torch
  except ImportError:
    raise PretrainedError(
      f"pretrained weights {path}: reading .pth needs torch (pip install torch); or convert "
      "it once elsewhere: python -m stress_jax.models.pretrained convert IN.pth OUT.safetensors"
    ) from None
  try:
    # weights_only: tensors and plain containers only, never arbitrary pickled objects.
    loaded = torch.load(str(path), map_location="cpu", weights_only=True)
  except Exception as error:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise PretrainedError(f"pretrained weights {path}: torch.load failed: {message}") from None
  if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
    loaded = loaded["state_dict"]  # timm / Lightning training checkpoints
  if not isinstance(loaded, Mapping):
    raise PretrainedError(f"pretrained weights {path}: not a state dict ({type(loaded).__name__})")
  tensors = {}
  for key, value in loaded.items():
    if isinstance(value, torch.Tensor):
      # DataParallel checkpoints prefix every key with "module.".
      name = key[len("module.") :] if key.startswith("module.") else key
      tensors[name] = value.detach().cpu().float().numpy()
  return tensors


def _head_weights(tensors, variables, name) -> dict[str, np.ndarray]:
  """layer4 -> head, all or nothing; why not is one log line."""
  flat = traverse_util.flatten_dict(variables)
  wanted = {path: torch_key(path) for path in flat if path[1] == "head"}
  if not wanted:
    return {}
  loaded, reason = {}, None
  for path, key in sorted(wanted.items(), key=lambda item: item[1]):
    block = int(key.split(".")[1])
    if block >= 2:
      continue  # ResNet-18's layer4 has two blocks; further head blocks stay random
    shape = tuple(flat[path].shape)
    if key not in tensors:
      reason = f"{name} has no {key}"
      break
    value = to_flax(tensors[key])
    if value.shape != shape:
      reason = f"{key} has shape {tuple(tensors[key].shape)}, the head needs {_torch_shape(shape)}"
      break
    loaded["/".join(path)] = value
  if reason:
    logging.warning("pretrained: head left at its random initialisation: %s", reason)
    return {}
  blocks = sorted({key.split(".")[1] for key in map(torch_key, map(_split, loaded))})
  logging.info("pretrained: head initialised from %s blocks %s", HEAD_LAYER, ", ".join(blocks))
  return loaded


def _split(name: str) -> tuple[str, ...]:
  return tuple(name.split("/"))


def match_weights(tensors: Mapping[str, np.ndarray], variables: Mapping, name: str = "file"):
  """torch tensors -> {"params/trunk/.../kernel": array} for `variables`' trunk and head.

  `variables` is {"params": ..., "batch_stats": ...} of the model (arrays or
  ShapeDtypeStructs). Raises PretrainedError naming the first trunk tensor that is missing
  or misshapen, or a trunk tensor of the file the model has no place for.
  """
  flat = traverse_util.flatten_dict(dict(variables))
  trunk = {path: torch_key(path) for path in flat if path[1] == "trunk"}
  out = {}
  for path, key in sorted(trunk.items(), key=lambda item: item[1]):
    shape = tuple(flat[path].shape)
    if key not in tensors:
      raise PretrainedError(
        f"pretrained weights {name}: missing {key} (the model's trunk needs shape "
        f"{_torch_shape(shape)} for {'/'.join(path[1:])})"
      )
    value = to_flax(tensors[key])
    if value.shape != shape:
      raise PretrainedError(
        f"pretrained weights {name}: {key} has shape {tuple(tensors[key].shape)} but the "
        f"model needs {_torch_shape(shape)} for {'/'.join(path[1:])}"
      )
    out["/".join(path)] = value
  if trunk:
    used = set(trunk.values())
    layers = {f"layer{stage}." for stage in range(1, 4)} | {"conv1.", "bn1."}
    for key in sorted(tensors):
      unused = key not in used and not key.endswith("num_batches_tracked")
      if unused and any(key.startswith(prefix) for prefix in layers):
        raise PretrainedError(
          f"pretrained weights {name}: {key} (shape {tuple(tensors[key].shape)}) has no place "
          "in the model's trunk; ResNet-18 needs stage_blocks=(2, 2, 2)"
        )
  out.update(_head_weights(tensors, variables, name))
  if not out:
    raise PretrainedError(f"pretrained weights {name}: the model has no trunk or head to load")
  return out


def load_for_model(path: str | pathlib.Path, variables: Mapping) -> dict[str, np.ndarray]:
  """Reads `path` and matches it to `variables` (see match_weights); host numpy arrays."""
  return match_weights(read_state_dict(path), variables, str(path))


def merge(variables: Mapping, weights: Mapping) -> dict:
  """`variables` with the leaves named in `weights` ("collection/module/.../leaf") replaced."""
  flat = traverse_util.flatten_dict(dict(variables), sep="/")
  for key, value in weights.items():
    if key not in flat:
      raise PretrainedError(f"pretrained weights: the model has no variable {key}")
    flat[key] = value
  return traverse_util.unflatten_dict(flat, sep="/")


def convert(source: str, destination: str) -> int:
  """A torch state dict (.pth) -> .safetensors with the same keys, float32. Returns the count."""
  from safetensors.numpy import save_file

  tensors = read_state_dict(source)
  if "conv1.weight" not in tensors or not any(k.startswith("layer3.") for k in tensors):
    raise PretrainedError(f"{source}: no conv1.weight / layer3.* keys; not a ResNet state dict")
  destination = pathlib.Path(destination)
  if destination.suffix != ".safetensors":
    raise PretrainedError(f"{destination}: the output name must end in .safetensors")
  destination.parent.mkdir(parents=True, exist_ok=True)
  save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(destination))
  return len(tensors)


def main(argv: Sequence[str]) -> None:
  if len(argv) != 4 or argv[1] != "convert":
    given = " ".join(argv[1:]) or "nothing"
    raise cli.UserError(f"expected the arguments convert IN.pth OUT.safetensors, got {given}")
  count = convert(argv[2], argv[3])
  print(f"wrote {count} tensors to {argv[3]}")


if __name__ == "__main__":
  cli.run(main, FLAGS, "models.pretrained")
