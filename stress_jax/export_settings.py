"""What an export carries from its training data, and where it may be written.

The face-pipeline settings go into the export so that predict cuts faces as the
training clips were cut; they come from the dataset the run trained on, not from
defaults (see `preprocess_settings`).
"""

from __future__ import annotations

from stress_jax import cli, storage


def preprocess_settings(workdir, config, num_frames: int) -> tuple[dict, str]:
  """The face-pipeline settings the training clips were made with, and where they came from.

  First the dataset's own metadata as the run recorded it (provenance.json), then
  the dataset's metadata if it is built here, then the training config's
  `preprocess`, and the defaults only for data that did not come through the face
  pipeline (synthetic or feature maps).
  """
  from stress_jax import provenance
  from stress_jax.preprocess import PreprocessConfig

  settings, source = None, "defaults"
  recorded = provenance.read(workdir) or {}
  metadata = recorded.get("dataset_metadata") or {}
  if metadata.get("preprocess"):
    settings, source = metadata["preprocess"], "dataset metadata (provenance.json)"
  if settings is None:
    settings = _built_dataset_preprocess(config)
    source = "dataset metadata" if settings else source
  if settings is None and "preprocess" in config:
    settings, source = config.preprocess.to_dict(), "training config"
  fields = PreprocessConfig.__dataclass_fields__
  chosen = PreprocessConfig.from_mapping({k: v for k, v in (settings or {}).items() if k in fields})
  if settings is None or "num_frames" not in settings:
    chosen = chosen.replace(num_frames=num_frames, stride=max(1, num_frames // 2))
  if chosen.num_frames != num_frames:
    raise cli.UserError(
      f"the dataset's face pipeline cut {chosen.num_frames}-frame clips but the model "
      f"takes {num_frames}"
    )
  return chosen.to_dict(), source


def training_data(workdir, config) -> dict:
  """The dataset the model learnt from: name, builder config, version, and whether its
  faces were simulated (stress_faces/synthetic*), from the run's provenance.json, else
  from the training config's data.name."""
  from stress_jax import provenance

  recorded = provenance.read(workdir) or {}
  dataset = recorded.get("dataset") or {}
  metadata = recorded.get("dataset_metadata") or {}
  name = str(config.data.get("name", "")) if "data" in config else ""
  if dataset.get("name"):
    full = "/".join(part for part in (dataset["name"], dataset.get("config")) if part)
    kind = metadata.get("kind")
    simulated = kind == "synthetic" if kind else is_simulated_name(full)
    return dict(
      name=dataset["name"],
      config=dataset.get("config"),
      version=dataset.get("version"),
      simulated=simulated,
      source="provenance.json",
    )
  dataset_name, _, builder_config = name.partition("/")
  return dict(
    name=dataset_name,
    config=builder_config or None,
    version=None,
    simulated=is_simulated_name(name),
    source="training config",
  )


def is_simulated_name(name: str) -> bool:
  """Whether a dataset name (data.name) is one of the simulated-face datasets."""
  return str(name).startswith("stress_faces/synthetic")


def simulated_training(exported_config: dict) -> bool:
  """Whether an export's model learnt from simulated faces (older exports: from the
  training config they carry)."""
  recorded = exported_config.get("training_data")
  if recorded is not None:
    return bool(recorded.get("simulated"))
  data = (exported_config.get("training_config") or {}).get("data") or {}
  return is_simulated_name(data.get("name", ""))


def _built_dataset_preprocess(config) -> dict | None:
  from stress_jax import input_pipeline

  data = config.data.copy_and_resolve_references()
  with data.unlocked():
    data.build_if_missing = False
  try:
    handle = input_pipeline.open_dataset(data)
  except (FileNotFoundError, cli.UserError, ValueError):
    return None
  return dict(handle.builder.info.metadata or {}).get("preprocess")


def check_output(output):
  """A new folder, an empty one, or an earlier export (which is replaced); local or gs://."""
  output = storage.as_path(output)
  if output.exists() and not output.is_dir():
    raise cli.UserError(f"--output={output} is a file; give a folder")
  if output.is_dir() and any(output.iterdir()) and not (output / "config.json").is_file():
    raise cli.UserError(
      f"--output={output} exists and is not an export folder; give a new or empty folder"
    )
  return output
